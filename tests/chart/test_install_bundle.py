"""manifests/install.yaml is the chart rendered with manifests/values-install.yaml, regenerated
byte for byte, with its own restricted Namespace first."""

from __future__ import annotations

import subprocess

import yaml

from .conftest import NAMESPACE, REPO


def test_install_bundle_equals_a_fresh_generation() -> None:
    fresh = subprocess.run(
        [str(REPO / "hack" / "generate-chart.sh"), "--bundle"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert (REPO / "manifests" / "install.yaml").read_text() == fresh, "run `make generate`"


def test_install_bundle_starts_with_a_restricted_namespace_and_uses_it() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    ns = docs[0]
    assert (ns["kind"], ns["metadata"]["name"]) == ("Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for d in docs[1:]:
        scoped = d["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
        assert d["metadata"].get("namespace") == (NAMESPACE if scoped else None), d["kind"]

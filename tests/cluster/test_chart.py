"""charts/ballast and manifests/install.yaml against a real API server, with the real
helm v4 and kubectl: `helm install` succeeds and its Deployments become Available
(on the fake kubelet: pods are created and marked Ready, no image is pulled);
`helm upgrade` with a changed CRD template changes the CRD in the server; `helm
uninstall` keeps the CRD (and the LLMServices) with crds.keep=true and removes it
with crds.keep=false; the install bundle applies server-side on an empty server,
its pods pass the restricted Pod Security level its namespace enforces, and
re-applying it changes nothing.

Each test has a control plane of its own: the shared plane's CRD was applied by
kubectl's field manager, and helm's server-side apply would conflict with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ._release import CHART, CRD_PATH, Release, helm_for, kubectl_for
from .binaries import REPO
from .controlplane import ControlPlane
from .kubeapi import JSON, ApiError, KubeApi, established
from .poll import wait_for
from .tools import Tool

RELEASE = Release("ballast", "ballast-system")
KEEP = "helm.sh/resource-policy"
# The spec field the upgrade test's copy of the chart adds to the CRD.
ADDED_FIELD = "canaryPercent"


def llmservice(name: str, namespace: str, **spec: object) -> JSON:
    backend = {"name": "primary", "engine": "vllm", "model": "org/model"}
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backends": [backend], **spec},
    }


def llmservices(namespace: str) -> str:
    return f"/apis/ballast.dev/v1alpha1/namespaces/{namespace}/llmservices"


def create_namespace(api: KubeApi, name: str) -> None:
    api.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )


def spec_properties(crd: JSON) -> JSON:
    (version,) = crd["spec"]["versions"]
    props: JSON = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return props


def chart_with_added_crd_field(workdir: Path) -> Path:
    """A copy of the chart, version bumped, whose CRD gains spec.<ADDED_FIELD> (an integer):
    what the next release's chart looks like to `helm upgrade`."""
    copy = workdir / "ballast"
    shutil.copytree(CHART, copy)
    template = copy / "templates" / "crd-llmservices.yaml"
    text = template.read_text()
    anchor = "            - backends\n            properties:\n"
    assert text.count(anchor) == 1, "the CRD template's spec.properties moved; update the anchor"
    added = (
        f"              {ADDED_FIELD}:\n"
        "                type: integer\n"
        "                description: Added by the chart upgrade test.\n"
        "                minimum: 0\n"
        "                maximum: 100\n"
    )
    template.write_text(text.replace(anchor, anchor + added))
    chart = yaml.safe_load((copy / "Chart.yaml").read_text())
    chart["version"] = "0.1.1-upgrade-test"
    (copy / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    return copy


def all_available(api: KubeApi, namespace: str) -> bool:
    items = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    return bool(items) and all(
        d.get("status", {}).get("availableReplicas", 0) == d["spec"]["replicas"] for d in items
    )


def deployments_available(api: KubeApi, namespace: str) -> dict[str, int]:
    """Name -> available replicas of every Deployment in `namespace` (asserts each is complete)."""
    items = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    out = {}
    for d in items:
        available = d.get("status", {}).get("availableReplicas", 0)
        assert available == d["spec"]["replicas"], (d["metadata"]["name"], d.get("status"))
        out[d["metadata"]["name"]] = available
    return out


@pytest.fixture
def plane_tools(
    fresh_control_plane: ControlPlane, k8s_tools: Path, tmp_path: Path
) -> tuple[ControlPlane, Tool, Tool]:
    """(plane, helm, kubectl) for a control plane of this test's own."""
    helm = helm_for(fresh_control_plane, k8s_tools, tmp_path / "helm-home")
    return fresh_control_plane, helm, kubectl_for(fresh_control_plane, k8s_tools)


def test_helm_install_then_upgrade_with_a_changed_crd(
    plane_tools: tuple[ControlPlane, Tool, Tool], tmp_path: Path
) -> None:
    plane, helm, _ = plane_tools
    api = plane.api
    with plane.fake_kubelet():
        helm(*RELEASE.install_args(), "--wait=watcher", "--timeout=120s")
        assert deployments_available(api, RELEASE.namespace) == {
            "ballast-gateway": 2,
            "ballast-operator": 1,
        }
        crd = api.get(CRD_PATH)
        assert established(crd)
        assert crd["metadata"]["annotations"][KEEP] == "keep"
        assert ADDED_FIELD not in spec_properties(crd)
        create_namespace(api, "ai")
        before = api.post(llmservices("ai"), llmservice("before", "ai"))

        upgraded = chart_with_added_crd_field(tmp_path)
        helm(
            "upgrade", RELEASE.name, str(upgraded), "--namespace", RELEASE.namespace,
            "--wait=watcher", "--timeout=120s",
        )  # fmt: skip

    crd = api.get(CRD_PATH)
    assert spec_properties(crd)[ADDED_FIELD]["type"] == "integer"
    assert established(crd)
    # The server now keeps the new field (an unknown one would have been pruned) and checks it.
    after = api.post(llmservices("ai"), llmservice("after", "ai", **{ADDED_FIELD: 10}))
    assert after["spec"][ADDED_FIELD] == 10
    with pytest.raises(ApiError) as too_big:
        api.post(llmservices("ai"), llmservice("too-big", "ai", **{ADDED_FIELD: 101}))
    assert too_big.value.status == 422
    assert f"spec.{ADDED_FIELD}" in str(too_big.value)
    # Objects stored under the old CRD are untouched by the upgrade.
    assert api.get(f"{llmservices('ai')}/before")["spec"] == before["spec"]
    history = yaml.safe_load(
        helm("history", RELEASE.name, "-n", RELEASE.namespace, "-o", "yaml").stdout
    )
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [
        (1, "superseded", "ballast-0.1.0"),
        (2, "deployed", "ballast-0.1.1-upgrade-test"),
    ]


def test_helm_uninstall_keeps_the_crd_only_when_crds_keep_is_set(
    plane_tools: tuple[ControlPlane, Tool, Tool],
) -> None:
    plane, helm, _ = plane_tools
    api = plane.api
    uninstall = ("uninstall", RELEASE.name, "--namespace", RELEASE.namespace, "--wait")
    helm(*RELEASE.install_args())  # crds.keep defaults to true
    wait_for(lambda: established(api.get(CRD_PATH)), timeout=30, what="CRD Established")
    create_namespace(api, "ai")
    api.post(llmservices("ai"), llmservice("kept", "ai"))

    helm(*uninstall)
    crd = api.get(CRD_PATH)
    assert "deletionTimestamp" not in crd["metadata"]
    assert api.get(f"{llmservices('ai')}/kept")["metadata"]["name"] == "kept"
    for path in (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/ballast-operator",
        f"/apis/apps/v1/namespaces/{RELEASE.namespace}/deployments/ballast-operator",
    ):
        assert not api.exists(path), f"{path} survived helm uninstall"

    # Installing again adopts the kept CRD; with crds.keep=false uninstall deletes it.
    helm(*RELEASE.install_args(CHART, "crds.keep=false"))
    assert KEEP not in api.get(CRD_PATH)["metadata"].get("annotations", {})
    helm(*uninstall)
    wait_for(lambda: not api.exists(CRD_PATH), timeout=60, what="the CRD to be deleted")
    assert not api.exists("/apis/ballast.dev/v1alpha1/llmservices")


def test_install_bundle_applies_server_side_on_a_fresh_server(
    plane_tools: tuple[ControlPlane, Tool, Tool],
) -> None:
    plane, _, kubectl = plane_tools
    bundle = str(REPO / "manifests" / "install.yaml")
    with plane.fake_kubelet():
        applied = kubectl("apply", "--server-side", "-f", bundle)
        assert "warning" not in applied.stderr.lower(), applied.stderr
        # Polled through the API: `kubectl wait` (1.33) fails at once when it reads an object
        # before its first status condition is set.
        wait_for(lambda: established(plane.api.get(CRD_PATH)), timeout=60, what="CRD Established")
        # The namespace enforces the restricted Pod Security level: the pods being created and
        # becoming Available shows they pass admission.
        wait_for(
            lambda: all_available(plane.api, "ballast-system"),
            timeout=120,
            what="the bundle's Deployments to be Available",
        )
        assert set(deployments_available(plane.api, "ballast-system")) == {
            "ballast-gateway",
            "ballast-operator",
        }
    namespace = plane.api.get("/api/v1/namespaces/ballast-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # Applying the same bundle again (as a GitOps tool does on every sync) changes nothing.
    diff = kubectl("diff", "--server-side", "-f", bundle, check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr

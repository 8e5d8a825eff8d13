"""CRD compatibility across an upgrade: LLMServices created under the previous
release's CRD are read back unchanged after the current CRD is applied over it,
are still valid for `ballast validate`, and would still be accepted if created
today.

Baseline: no release has been tagged yet, so the "previous release" is the CRD and
the examples as committed in 81a9083, the first commit that added crds/. Replace
BASELINE with the newest release tag once there is one. That CRD put a
`description` on `metadata`, which the API server refuses (fixed in 61009bb), so no
cluster can have run it verbatim: the test shows the server refuses it for exactly
that reason, then installs it with that one key removed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api import parse_llmservice

from ._release import CRD_PATH, kubectl_for
from .binaries import REPO
from .controlplane import ControlPlane
from .kubeapi import JSON, ApiError, KubeApi, established
from .poll import wait_for
from .tools import Tool

BASELINE = "81a9083"
CRD_FILE = "crds/llmservices.ballast.dev.yaml"
API = "/apis/ballast.dev/v1alpha1"


def git_show(path: str, commit: str = BASELINE) -> str:
    return subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def baseline_examples() -> list[JSON]:
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", BASELINE, "manifests/examples/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    docs = [d for name in names for d in yaml.safe_load_all(git_show(name)) if d]
    assert len(docs) >= 5, names
    return docs


def crd_ready(api: KubeApi, must_have: str = "") -> bool:
    """Established, serving lists, and (when given) holding `must_have` in its schema."""
    crd = api.get(CRD_PATH)
    if not established(crd) or must_have not in yaml.safe_dump(crd["spec"]):
        return False
    try:
        api.get(f"{API}/llmservices")
    except ApiError as err:
        if err.status == 429:  # storage still initializing
            return False
        raise
    return True


def readable(obj: JSON) -> JSON:
    """What a user wrote plus what the server keeps: spec, identity and version."""
    meta = obj["metadata"]
    return {
        "spec": obj["spec"],
        "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
        "generation": meta["generation"],
    }


def added_fields(after: JSON, before: JSON, path: str = "") -> dict[str, object]:
    """Fields ``after`` has and ``before`` lacks (dotted paths); every other value must match."""
    added: dict[str, object] = {}
    for key, value in after.items():
        where = f"{path}.{key}" if path else key
        if key not in before:
            added[where] = value
        elif isinstance(value, dict) and isinstance(before[key], dict):
            added |= added_fields(value, before[key], where)
        elif isinstance(value, list) and isinstance(before[key], list):
            # a list item (a backend) may gain a defaulted field too: items compared by index
            for i, (a, b) in enumerate(zip(value, before[key], strict=True)):
                if isinstance(a, dict) and isinstance(b, dict):
                    added |= added_fields(a, b, f"{where}.{i}")
    return added


def at(doc: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    return doc


def assert_kept(obj: JSON, before: JSON) -> None:
    """``obj`` is ``before`` (see :func:`readable`) plus, at most, fields the current API
    added, each with its default (the server defaults them on read)."""
    now = copy.deepcopy(readable(obj))
    added = added_fields(now, before)
    defaults = {"spec": parse_llmservice(obj).spec.to_json()}
    assert added == {k: at(defaults, k) for k in added}, obj["metadata"]["name"]
    for key in added:
        *parents, last = key.split(".")
        del at(now, ".".join(parents))[last]  # type: ignore[attr-defined]
    assert now == before, obj["metadata"]["name"]


@pytest.fixture
def kubectl(fresh_control_plane: ControlPlane, k8s_tools: Path) -> Tool:
    return kubectl_for(fresh_control_plane, k8s_tools)


def test_objects_from_the_baseline_crd_survive_the_current_crd(
    fresh_control_plane: ControlPlane, kubectl: Tool, tmp_path: Path
) -> None:
    api = fresh_control_plane.api
    old_crd = yaml.safe_load(git_show(CRD_FILE))
    refused = kubectl(
        "apply", "--server-side", "-f", "-", input=yaml.safe_dump(old_crd), check=False
    )
    assert refused.returncode != 0
    assert "properties[metadata]" in refused.stderr
    assert "must not specify anything other than name and generateName" in refused.stderr

    schema = old_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["metadata"]["description"]
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(old_crd))
    wait_for(lambda: crd_ready(api), timeout=60, what="the baseline CRD")

    api.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai"}}
    )
    examples = baseline_examples()
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(examples))
    paths = [f"{API}/namespaces/ai/llmservices/{d['metadata']['name']}" for d in examples]
    before = {p: readable(api.get(p)) for p in paths}

    current = (REPO / CRD_FILE).read_text()
    assert current != git_show(CRD_FILE), "the CRD has not changed since the baseline"
    upgraded = kubectl("apply", "--server-side", "-f", str(REPO / CRD_FILE))
    assert "warning" not in upgraded.stderr.lower(), upgraded.stderr
    # Wait until the server serves the new schema (a rule only the current CRD has).
    wait_for(
        lambda: crd_ready(api, "engine openai (an external API) runs no pods: remove image"),
        timeout=60,
        what="the current CRD",
    )

    after = {p: api.get(p) for p in paths}
    for p, obj in after.items():
        assert_kept(obj, before[p])
    stored = tmp_path / "stored.yaml"
    stored.write_text(yaml.safe_dump_all(list(after.values())))
    validate = subprocess.run(
        [sys.executable, "-m", "ballast.cli", "validate", "-f", str(stored)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr

    # Created today under the current CRD, each object is accepted with the same spec ...
    for path, obj in after.items():
        again = copy.deepcopy(obj)
        again["metadata"] = {"name": f"{obj['metadata']['name']}-again", "namespace": "ai"}
        created = api.post(f"{API}/namespaces/ai/llmservices", again)
        assert created["spec"] == obj["spec"], path
    # ... and re-applying the user's unchanged manifests (a GitOps sync) changes nothing.
    # The first apply after the upgrade may store the new fields' defaults once (a new
    # resourceVersion, the same generation: no spec change); from then on nothing changes.
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(examples))
    synced = {p: api.get(p) for p in paths}
    for p, obj in synced.items():
        moved = obj["metadata"]["resourceVersion"] != before[p]["resourceVersion"]
        if moved and added_fields(readable(obj), before[p]):
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = before[p]["resourceVersion"]
        assert_kept(obj, before[p])
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(examples))
    assert {p: readable(api.get(p)) for p in paths} == {p: readable(o) for p, o in synced.items()}

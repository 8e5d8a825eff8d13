"""An LLMService's children follow it: created with owner references and labels, updated,
pruned when a backend goes, and gone within seconds of the LLMService (no finalizer)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.controller.conftest import NS, Cluster, hosted, remote, service_obj
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
LLMS = f"/apis/ballast.dev/v1alpha1/namespaces/{NS}/llmservices"


async def test_create_makes_every_child_with_owner_reference_and_labels(cluster: Cluster) -> None:
    scaled = hosted(scaling={"minReplicas": 1, "maxReplicas": 3})
    svc = cluster.create(service_obj("alpha", scaled, remote(cluster.fleet, "alpha")))
    expected = {
        ("ConfigMap", "alpha-routes"),
        ("NetworkPolicy", "alpha-engines"),
        ("Service", "alpha-primary"),
        ("Deployment", "alpha-primary"),
        ("HorizontalPodAutoscaler", "alpha-primary"),
        ("PodDisruptionBudget", "alpha-primary"),
    }
    children = await eventually(
        lambda: c if set(c := cluster.children("alpha")) == expected else None, what="children"
    )
    for obj in children.values():
        meta = obj["metadata"]
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "LLMService",
            "alpha",
            svc["metadata"]["uid"],
        )
        assert owner["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "ballast"
        assert meta["labels"]["ballast.dev/service"] == "alpha"
        assert meta["annotations"]["ballast.dev/applied-hash"]
    assert "replicas" not in children[("Deployment", "alpha-primary")]["spec"]  # the HPA owns it
    status = await cluster.wait_phase("alpha", "Ready")
    assert status["backendsInRoute"] == "2/2"
    assert status["observedGeneration"] == 1
    assert status["endpoint"] == "http://ballast-gateway.ballast-system.svc/v1"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Available": "True",
        "Progressing": "False",
        "Degraded": "False",
    }
    assert "finalizers" not in cluster.get("llmservices", "alpha")["metadata"]


async def test_update_changes_children_and_drops_what_the_spec_no_longer_sets(
    cluster: Cluster,
) -> None:
    cluster.create(service_obj("beta", hosted(nodeSelector={"pool": "gpu"}, args=["--a"])))
    await cluster.wait_phase("beta", "Ready")
    dep = cluster.get("deployments", "beta-primary")
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    status, _ = await cluster.user(
        "PATCH",
        f"{LLMS}/beta",
        {"spec": {"backends": [hosted(args=["--b"], replicas=2)]}},
        merge=True,
    )
    assert status == 200

    def followed() -> bool:
        d = cluster.get("deployments", "beta-primary")
        container = d["spec"]["template"]["spec"]["containers"][0]
        return (
            "--b" in json.dumps(container)
            and "--a" not in json.dumps(container)
            and "nodeSelector" not in d["spec"]["template"]["spec"]
            and d["spec"].get("replicas") == 2
        )

    await eventually(followed, what="deployment follows the new spec")
    await eventually(
        lambda: cluster.get("poddisruptionbudgets", "beta-primary"), what="PDB for 2 replicas"
    )
    await eventually(
        lambda: cluster.status("beta").get("observedGeneration") == 2, what="observedGeneration"
    )


async def test_a_removed_backend_loses_its_children(cluster: Cluster) -> None:
    cluster.create(service_obj("gamma", hosted("one"), hosted("two", priority=1)))
    await cluster.wait_phase("gamma", "Ready")
    assert ("Deployment", "gamma-two") in cluster.children("gamma")
    await cluster.user(
        "PATCH", f"{LLMS}/gamma", {"spec": {"backends": [hosted("one")]}}, merge=True
    )
    await eventually(
        lambda: (
            set(cluster.children("gamma"))
            == {
                ("ConfigMap", "gamma-routes"),
                ("NetworkPolicy", "gamma-engines"),
                ("Service", "gamma-one"),
                ("Deployment", "gamma-one"),
            }
        ),
        what="gamma-two's Service and Deployment deleted",
    )
    await eventually(lambda: set(cluster.in_route("gamma")) == {"one"}, what="route without two")


async def test_deleting_the_llmservice_removes_it_and_its_children_within_seconds(
    cluster: Cluster,
) -> None:
    cluster.create(service_obj("delta", hosted(), remote(cluster.fleet, "delta")))
    await cluster.wait_phase("delta", "Ready")
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await cluster.user("DELETE", f"{LLMS}/delta")
    assert status == 200
    await eventually(
        lambda: cluster.get("llmservices", "delta") is None and not cluster.children("delta"),
        seconds=5,
        interval=0.02,
        what="LLMService and children gone",
    )
    assert loop.time() - started < 3
    await asyncio.sleep(2)  # and nothing comes back (no restore of children of a deleted owner)
    assert not cluster.children("delta")

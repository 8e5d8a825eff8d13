"""Drift: a child deleted or edited by hand is put back promptly; HPA-owned replicas are not."""

from __future__ import annotations

import asyncio

import pytest

from tests.controller.conftest import NS, Cluster, hosted, service_obj
from tests.controller.harness import by_operator
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def image(cluster: Cluster, name: str) -> str | None:
    dep = cluster.get("deployments", name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None


async def test_a_deleted_child_is_recreated(cluster: Cluster) -> None:
    cluster.create(service_obj("drift-del", hosted()))
    await cluster.wait_phase("drift-del", "Ready")
    old_uid = cluster.get("deployments", "drift-del-primary")["metadata"]["uid"]
    status, _ = await cluster.user("DELETE", f"{DEPLOYMENTS}/drift-del-primary")
    assert status == 200
    restored = await eventually(
        lambda: (
            (d := cluster.get("deployments", "drift-del-primary"))
            and d["metadata"]["uid"] != old_uid
        ),
        seconds=5,
        what="Deployment recreated",
    )
    assert restored
    await eventually(
        lambda: "ChildRestored" in cluster.reasons("drift-del"), what="ChildRestored event"
    )


async def test_a_child_edited_by_hand_is_put_back(cluster: Cluster) -> None:
    cluster.create(service_obj("drift-edit", hosted()))
    await cluster.wait_phase("drift-edit", "Ready")
    rendered = image(cluster, "drift-edit-primary")
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "evil:latest"}]}}}
    }
    status, edited = await cluster.user(
        "PATCH", f"{DEPLOYMENTS}/drift-edit-primary", patch, merge=True
    )
    assert status == 200
    assert edited["spec"]["template"]["spec"]["containers"][0]["image"] == "evil:latest"
    await eventually(
        lambda: image(cluster, "drift-edit-primary") == rendered, seconds=5, what="image restored"
    )
    await eventually(
        lambda: "ChildRestored" in cluster.reasons("drift-edit"), what="ChildRestored event"
    )


async def test_replicas_set_by_the_hpa_are_left_alone(cluster: Cluster) -> None:
    scaled = hosted(scaling={"minReplicas": 1, "maxReplicas": 5})
    cluster.create(service_obj("drift-hpa", scaled))
    await cluster.wait_phase("drift-hpa", "Ready")
    start = len(cluster.api.requests)
    # What the HPA controller does: set spec.replicas on the Deployment.
    status, _ = await cluster.user(
        "PATCH", f"{DEPLOYMENTS}/drift-hpa-primary", {"spec": {"replicas": 4}}, merge=True
    )
    assert status == 200
    # A reconcile of the LLMService (a label change triggers one) must not touch it either.
    llms = f"/apis/ballast.dev/v1alpha1/namespaces/{NS}/llmservices/drift-hpa"
    await cluster.user("PATCH", llms, {"metadata": {"labels": {"touched": "yes"}}}, merge=True)
    await asyncio.sleep(3)
    assert cluster.get("deployments", "drift-hpa-primary")["spec"]["replicas"] == 4
    touched = [
        r
        for r in cluster.api.writes(start, by_operator)
        if r.resource is not None and r.resource.plural == "deployments"
    ]
    assert touched == []
    await eventually(
        lambda: [b["replicas"] for b in cluster.status("drift-hpa").get("backends", [])] == [4],
        what="status shows the HPA's replica count",
    )

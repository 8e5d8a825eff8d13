"""A spec the operator rejects: Ready=False with the rule's reason, one Event, no retry storm;
fixing it recovers without a restart. (The CRD rejects these too; objects created before the
CRD had the rule, or by a client skipping validation, still reach the operator.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.controller.conftest import NS, Cluster, hosted, service_obj
from tests.controller.harness import by_operator
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_invalid_spec_is_reported_without_retries_and_a_fix_recovers(
    cluster: Cluster,
) -> None:
    bad = service_obj("broken", hosted("dup"), hosted("dup", priority=1))
    cluster.create(bad)
    await cluster.wait_phase("broken", "Failed")
    ready = cluster.condition("broken", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DuplicateBackendName")
    assert "spec.backends" in ready["message"]
    await eventually(lambda: "SpecRejected" in cluster.reasons("broken"), what="SpecRejected event")
    assert not cluster.children("broken")

    start = len(cluster.api.requests)
    await asyncio.sleep(4)
    about_it = [r for r in cluster.api.writes(start, by_operator) if "broken" in r.url.path]
    assert about_it == []  # no retry storm: nothing written while nothing changes

    path = f"/apis/ballast.dev/v1alpha1/namespaces/{NS}/llmservices/broken"
    status, _ = await cluster.user(
        "PATCH", path, {"spec": {"backends": [hosted("dup")]}}, merge=True
    )
    assert status == 200
    await cluster.wait_phase("broken", "Ready", seconds=15)
    assert cluster.condition("broken", "Ready")["reason"] == "AllBackendsInRoute"
    assert ("Deployment", "broken-dup") in cluster.children("broken")


async def test_a_child_the_api_refuses_is_reported_and_retried(cluster: Cluster) -> None:
    from tests.emulator.errors import ApiError

    def creates_hpa(request: Any) -> bool:
        return request.method.value == "POST" and request.url.path.endswith(
            "/horizontalpodautoscalers"
        )

    error = ApiError(
        403, "Forbidden", "horizontalpodautoscalers.autoscaling is forbidden: cannot create"
    )
    clear = cluster.api.fail(creates_hpa, error)
    try:
        cluster.create(service_obj("refused", hosted(scaling={"minReplicas": 1, "maxReplicas": 2})))
        await eventually(
            lambda: cluster.condition("refused", "Ready").get("reason") == "ApplyFailed",
            seconds=15,
            what="ApplyFailed",
        )
        assert "forbidden" in cluster.condition("refused", "Ready")["message"]
        await eventually(
            lambda: "ApplyFailed" in cluster.reasons("refused"), what="ApplyFailed event"
        )
    finally:
        clear()
    await cluster.wait_phase("refused", "Ready", seconds=20)
    assert ("HorizontalPodAutoscaler", "refused-primary") in cluster.children("refused")


async def test_a_refused_routes_configmap_is_reported_and_retried(cluster: Cluster) -> None:
    """A new service's routes come from its first health round; refused there, they are
    reported and retried like any child, not attempted every round in silence."""
    from tests.emulator.errors import ApiError

    def creates_routes(request: Any) -> bool:
        return request.method.value == "POST" and request.url.path.endswith("/configmaps")

    error = ApiError(403, "Forbidden", "configmaps is forbidden: exceeded quota: no-configmaps")
    clear = cluster.api.fail(creates_routes, error)
    try:
        cluster.create(service_obj("unrouted", hosted()))
        await eventually(
            lambda: cluster.condition("unrouted", "Ready").get("reason") == "ApplyFailed",
            seconds=15,
            what="ApplyFailed",
        )
        assert "exceeded quota" in cluster.condition("unrouted", "Ready")["message"]
        await eventually(
            lambda: "ApplyFailed" in cluster.reasons("unrouted"), what="ApplyFailed event"
        )
    finally:
        clear()
    await cluster.wait_phase("unrouted", "Ready", seconds=20)
    assert ("ConfigMap", "unrouted-routes") in cluster.children("unrouted")

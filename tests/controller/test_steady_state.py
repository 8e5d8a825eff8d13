"""Steady state: after convergence, at least 30 s with probes running and zero writes.

``quiet_cluster`` converged when the session started and nobody has touched it
since; its window elapsed while the other controller tests ran (this module is
collected last), so this test usually waits only for what is left of the 30 s.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.controller.conftest import NS, Cluster

pytestmark = pytest.mark.asyncio(loop_scope="session")
WINDOW = 30.0


async def test_a_converged_cluster_sees_no_writes_for_30_seconds(
    quiet_cluster: tuple[Cluster, int, float],
) -> None:
    cluster, start, started_at = quiet_cluster
    loop = asyncio.get_running_loop()
    hits = dict(cluster.fleet.hits)
    remaining = started_at + WINDOW - loop.time()
    await asyncio.sleep(max(remaining, 3.0))  # at least a few probe rounds seen from here too
    assert loop.time() - started_at >= WINDOW
    writes = cluster.api.writes(start)
    assert writes == [], [f"{r.method.value} {r.url.path}" for r in writes]
    # Probes kept running all along (1 s period), against every backend.
    for key in (f"{NS}/steady/primary", f"{NS}/steady/cloud", f"{NS}/plain/solo"):
        assert cluster.fleet.hits.get(key, 0) > hits.get(key, 0), key
    assert cluster.status("steady")["phase"] == "Ready"
    assert cluster.operator is not None
    text = await cluster.operator.metrics()
    assert 'ballast_backends_in_route{namespace="ai",service="steady"} 2.0' in text
    for backend in ("primary", "cloud"):
        series = f'ballast_backend_in_route{{backend="{backend}",namespace="ai",service="steady"}}'
        assert f"{series} 1.0" in text, text
    assert 'ballast_reconciles_total{result="success"}' in text
    assert await cluster.operator.health_check()

"""Scale to zero and cold standbys in the controller, against the emulator and a fake gateway.

The fake gateway serves a demand report (``/internal/demand``) the test sets, as the real
gateway's metrics listener does; the operator reads it through
``BALLAST_GATEWAY_DEMAND_URLS``. What is checked: who writes replicas and when (the pin
before the first ready pod, the HPA after), going back to 0 only after the idle time with
nothing in flight or held and never on a gateway that does not answer, status and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp.web
import pytest
import pytest_asyncio

from ballast.routing.demand import DEMAND_PATH
from tests.controller.conftest import NS, Cluster, emulated, hosted, remote, service_obj
from tests.controller.harness import by_operator
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
IDLE = 10


class FakeGateway:
    """A demand report the test writes: per backend held, in_flight and requests."""

    def __init__(self) -> None:
        self.started = time.time()
        self.backends: dict[tuple[str, str], dict[str, Any]] = {}
        self.failing = False
        self.url = ""

    def set(self, service: str, backend: str, **counts: Any) -> None:
        row = self.backends.setdefault((service, backend), {"requests": 0})
        row.update(counts)

    async def _report(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.failing:
            return aiohttp.web.Response(status=503)
        rows = [
            {"namespace": NS, "service": s, "backend": b, **row}
            for (s, b), row in self.backends.items()
        ]
        body = {"gateway": "fake-0", "started": self.started, "backends": rows}
        return aiohttp.web.Response(text=json.dumps(body), content_type="application/json")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeGateway]:
        app = aiohttp.web.Application()
        app.router.add_get(DEMAND_PATH, self._report)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{DEMAND_PATH}"
        try:
            yield self
        finally:
            await runner.cleanup()


def writes_since(cluster: Cluster, since: int) -> list[tuple[str, str]]:
    """(method, path) of the operator's writes from request ``since`` on."""
    return [(w.method.value, w.url.path) for w in cluster.api.writes(since, by_operator)]


def replicas(cluster: Cluster, name: str) -> int | None:
    dep = cluster.get("deployments", name) or {}
    return (dep.get("spec") or {}).get("replicas")


def backend_status(cluster: Cluster, service: str, backend: str) -> dict[str, Any]:
    return next(b for b in cluster.status(service).get("backends", []) if b["name"] == backend)


@pytest_asyncio.fixture(loop_scope="session")
async def gateway_and_cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeGateway, Cluster]]:
    gateway = FakeGateway()
    async with (
        gateway.serving() as gw,
        emulated(tmp_path, env={"BALLAST_GATEWAY_DEMAND_URLS": gateway.url}) as cluster,
    ):
        yield gw, cluster


async def test_a_backend_at_zero_wakes_on_demand_and_sleeps_after_the_idle_time(
    gateway_and_cluster: tuple[FakeGateway, Cluster],
) -> None:
    gw, cluster = gateway_and_cluster
    zero = {"minReplicas": 0, "maxReplicas": 3, "idleAfterSeconds": IDLE}
    cluster.create(service_obj("stz", hosted("gpu", scaling=zero)))
    name = "stz-gpu"
    # Nobody asked yet: the service is Ready at 0, with no HPA, and the route holds for it.
    status = await cluster.wait_phase("stz", "Ready", seconds=30)
    assert replicas(cluster, name) == 0
    assert cluster.get("horizontalpodautoscalers", name) is None
    gpu = backend_status(cluster, "stz", "gpu")
    assert gpu["scaledToZero"] is True
    assert gpu["scaledToZeroSince"]
    assert "scaled to zero" in gpu["message"]
    assert next(c for c in status["conditions"] if c["type"] == "Available")["status"] == "True"
    (route,) = cluster.routes("stz")["backends"]
    assert route["hold"] == {"maxPending": 100, "timeoutSeconds": 600}

    # A request is held in the gateway: one pod is asked for; once ready, the HPA takes over.
    mark = len(cluster.api.requests)
    gw.set("stz", "gpu", held=1, requests=1)
    await eventually(lambda: replicas(cluster, name) == 1 or None, seconds=10, what="woken")
    hpa = await eventually(
        lambda: cluster.get("horizontalpodautoscalers", name), seconds=10, what="HPA"
    )
    assert hpa["spec"]["minReplicas"] == 1
    await eventually(
        lambda: backend_status(cluster, "stz", "gpu").get("scaledToZero") is False or None,
        seconds=10,
        what="status up",
    )
    # One writer at a time: the operator's replicas write came before the HPA existed, and
    # it wrote no replicas after creating the HPA.
    writes = writes_since(cluster, mark)
    hpa_at = next(
        i for i, (m, p) in enumerate(writes) if m == "POST" and "horizontalpodautoscalers" in p
    )
    dep_patches = [
        i for i, (m, p) in enumerate(writes) if m == "PATCH" and p.endswith(f"deployments/{name}")
    ]
    assert dep_patches, writes
    assert all(i < hpa_at for i in dep_patches), writes
    assert {"ScalingFromZero", "ScaledFromZero"} <= set(cluster.reasons("stz"))

    # In flight for longer than the idle time: it stays up.
    gw.set("stz", "gpu", held=0, in_flight=1, requests=2)
    awake_since = time.monotonic()
    while time.monotonic() - awake_since < IDLE + 5:
        assert replicas(cluster, name) != 0
        await asyncio.sleep(0.5)
    # A gateway that does not answer: never taken to 0 on missing data.
    gw.set("stz", "gpu", in_flight=0)
    gw.failing = True
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < IDLE + 5:
        assert cluster.get("horizontalpodautoscalers", name) is not None
        await asyncio.sleep(0.5)
    # Every gateway answers and nothing moves: back to 0 after the idle time, confirmed.
    gw.failing = False
    quiet_since = time.monotonic()
    await eventually(lambda: replicas(cluster, name) == 0 or None, seconds=IDLE + 15, what="asleep")
    assert time.monotonic() - quiet_since >= IDLE
    await eventually(
        lambda: cluster.get("horizontalpodautoscalers", name) is None or None,
        seconds=10,
        what="HPA deleted",
    )
    await eventually(
        lambda: backend_status(cluster, "stz", "gpu").get("scaledToZero") or None,
        seconds=10,
        what="status at 0",
    )
    assert "ScaledToZero" in cluster.reasons("stz")
    assert "BackendLeftRoute" not in cluster.reasons("stz")  # on purpose, not a failover
    assert cluster.status("stz")["phase"] == "Ready"


async def test_a_cold_standby_comes_up_when_the_tier_above_fails_and_goes_back_after_cooldown(
    gateway_and_cluster: tuple[FakeGateway, Cluster],
) -> None:
    _, cluster = gateway_and_cluster
    standby = {"activateAfterSeconds": 2, "cooldownSeconds": 4}
    cluster.create(
        service_obj(
            "sb",
            remote(cluster.fleet, "sb", priority=0),
            hosted("local", priority=1, replicas=2, standby=standby),
        )
    )
    name = "sb-local"
    await cluster.wait_phase("sb", "Ready", seconds=30)
    assert replicas(cluster, name) == 0
    local = backend_status(cluster, "sb", "local")
    assert local["standby"]["state"] == "Cold"
    assert local["inRoute"] is False
    assert "hold" not in cluster.routes("sb")["backends"][1]  # a cold standby holds nothing

    cluster.fleet.set(f"{NS}/sb/cloud", False)  # the provider above fails
    await eventually(lambda: replicas(cluster, name) == 2 or None, seconds=20, what="warming")
    await eventually(
        lambda: backend_status(cluster, "sb", "local")["standby"]["state"] == "Active" or None,
        seconds=15,
        what="active",
    )
    await eventually(lambda: cluster.in_route("sb").get("local") or None, seconds=10, what="routed")
    assert cluster.routes("sb")["backends"][1]["hold"]["maxPending"] == 100
    assert {"StandbyWarming", "StandbyActive"} <= set(cluster.reasons("sb"))

    cluster.fleet.set(f"{NS}/sb/cloud", True)  # the provider is back
    await eventually(
        lambda: backend_status(cluster, "sb", "local")["standby"]["state"] == "Cooling" or None,
        seconds=15,
        what="cooling",
    )
    assert replicas(cluster, name) == 2  # still up while cooling
    await eventually(lambda: replicas(cluster, name) == 0 or None, seconds=20, what="cold again")
    state = await eventually(
        lambda: (
            backend_status(cluster, "sb", "local")["standby"]
            if backend_status(cluster, "sb", "local")["standby"]["state"] == "Cold"
            else None
        ),
        seconds=10,
        what="cold status",
    )
    assert "healthy" in state["reason"]
    assert state["since"]
    assert {"StandbyCooling", "StandbyCold"} <= set(cluster.reasons("sb"))

"""A burst of new LLMServices is reconciled a bounded number at a time: the rest wait with
nothing parsed or rendered (what held the operator's memory above 150 MiB at 1,000), and
every one still converges."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ballast.controller.settings import DEFAULT_RECONCILE_CONCURRENCY as RECONCILE_CONCURRENCY
from tests.controller.conftest import NS, emulated, hosted, service_obj
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
BURST = RECONCILE_CONCURRENCY + 14


def creates(plural: str) -> Any:
    def match(request: Any) -> bool:
        return (
            request.method.value == "POST"
            and request.resource is not None
            and request.resource.plural == plural
        )

    return match


async def test_a_burst_is_reconciled_a_bounded_number_at_a_time(tmp_path: Path) -> None:
    async with emulated(tmp_path) as cluster:
        hold = cluster.api.hold(creates("deployments"))  # every reconcile stops at its first
        names = [f"burst-{i}" for i in range(BURST)]
        for name in names:
            cluster.create(service_obj(name, hosted()))

        def started() -> int:  # services whose reconcile got as far as its engine's Service
            items = cluster.store.items(cluster.kind("services"), NS)
            return sum(1 for o in items if o["metadata"]["name"].startswith("burst-"))

        await eventually(lambda: started() == RECONCILE_CONCURRENCY, what="a full admission")
        await asyncio.sleep(1.0)  # the others stay out while those are held
        assert started() == RECONCILE_CONCURRENCY
        hold.release()
        for name in names:
            await cluster.wait_phase(name, "Ready", seconds=30)

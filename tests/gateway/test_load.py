"""Under concurrent load, killing the primary midway costs the clients nothing."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, table

TOTAL = 2000
CONCURRENCY = 32


@pytest.mark.slow
@pytest.mark.parametrize("client_kind", ["h1", "aiohttp"])
async def test_primary_killed_midway_no_client_request_fails(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary = await backend("primary")
    cloud = await backend("cloud")
    primary.behave(delay=0.002)  # keep requests in flight at the primary when it dies
    rows = [backend_row("primary", primary.url), backend_row("cloud", cloud.url, priority=1)]
    gw = await gateway([table("chat", rows)], upstream_client=client_kind)
    served: Counter[str] = Counter()
    after_kill: Counter[str] = Counter()
    failures: list[BaseException] = []
    started = 0
    killed = asyncio.Event()

    async with async_client(gw) as client:

        async def worker() -> None:
            nonlocal started
            while started < TOTAL:
                started += 1
                was_killed = killed.is_set()
                try:
                    raw = await client.embeddings.with_raw_response.create(model="chat", input="x")
                except Exception as e:  # counted, not raised: the assertion reports them all
                    failures.append(e)
                    continue
                served[raw.headers["x-ballast-backend"]] += 1
                if was_killed:
                    after_kill[raw.headers["x-ballast-backend"]] += 1
                if sum(served.values()) == TOTAL // 2:
                    primary.kill()
                    killed.set()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    assert failures == []
    assert sum(served.values()) == TOTAL
    assert served["primary"] >= TOTAL // 2 - CONCURRENCY
    assert set(after_kill) == {"cloud"}
    assert gw.sample("ballast_gateway_circuit_open", model="chat", backend="primary") == 1

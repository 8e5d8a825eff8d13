"""Starting a gateway under test: routing tables as a file, the app on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from ballast.gateway.app import GATEWAY, Gateway, create_app
from ballast.gateway.config import GatewayConfig
from ballast.gateway.endpoints import Endpoints
from ballast.gateway.keys import KeyRing
from ballast.gateway.server import Running, start
from ballast.gateway.sources import FileSource


def backend_row(
    name: str, url: str, priority: int = 0, weight: int = 100, **extra: Any
) -> dict[str, Any]:
    """One backend of a routing table, as the controller writes it."""
    row = {"name": name, "engine": "vllm", "url": url, "upstreamModel": f"{name}-upstream"}
    return row | {"priority": priority, "weight": weight} | extra


def table(model: str, backends: Sequence[dict[str, Any]], **fallback: Any) -> dict[str, Any]:
    """A routing table; ``fallback`` takes camelCase keys (maxAttempts=..., retryOn=[...])."""
    return {"model": model, "backends": list(backends), "fallback": fallback}


@dataclass
class GatewayUnderTest:
    url: str
    routes: Path
    runner: web.AppRunner
    state: Gateway
    running: Running | None = None

    @property
    def metrics_url(self) -> str:
        assert self.running is not None
        assert self.running.metrics_port is not None
        return f"http://127.0.0.1:{self.running.metrics_port}/metrics"

    @property
    def demand_url(self) -> str:
        return self.metrics_url.removesuffix("/metrics") + "/internal/demand"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def write(self, tables: Sequence[dict[str, Any]] | str) -> None:
        text = tables if isinstance(tables, str) else json.dumps({"tables": list(tables)})
        self.routes.write_text(text, encoding="utf-8")

    def sample(self, name: str, **labels: str) -> float:
        value = self.state.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()


async def start_gateway(
    tmp_path: Path,
    tables: Sequence[dict[str, Any]] | str,
    *,
    clock: Callable[[], float] = time.monotonic,
    keys: KeyRing | None = None,
    endpoints: Endpoints | None = None,
    name: str | None = None,
    **config: Any,
) -> GatewayUnderTest:
    """A gateway as ``ballast gateway`` serves it (same server settings), on ephemeral ports;
    with ``endpoints`` (fed by the test), pods are chosen from them."""
    routes = tmp_path / "routes.json"
    gw = GatewayUnderTest("", routes, None, None)  # type: ignore[arg-type]
    gw.write(tables)
    base = GatewayConfig(
        host="127.0.0.1", port=0, metrics_port=0, routes_file=routes, poll_interval=0.05
    )
    cfg = replace(base, **config)
    app = create_app(
        cfg,
        FileSource(routes, cfg.poll_interval),
        clock=clock,
        keys=keys,
        endpoints=endpoints,
        name=name,
    )
    running = await start(app, shutdown_timeout=2)
    gw.runner, gw.state, gw.running = running.api, app[GATEWAY], running
    gw.url = f"http://127.0.0.1:{running.port}"
    return gw


async def eventually(predicate: Callable[[], object], within: float = 3.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, f"condition not reached within {within}s"
        await asyncio.sleep(0.01)

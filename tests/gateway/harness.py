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
        await self.runner.cleanup()


async def start_gateway(
    tmp_path: Path,
    tables: Sequence[dict[str, Any]] | str,
    *,
    clock: Callable[[], float] = time.monotonic,
    **config: Any,
) -> GatewayUnderTest:
    routes = tmp_path / "routes.json"
    gw = GatewayUnderTest("", routes, None, None)  # type: ignore[arg-type]
    gw.write(tables)
    cfg = replace(
        GatewayConfig(host="127.0.0.1", port=0, routes_file=routes, poll_interval=0.05), **config
    )
    app = create_app(cfg, FileSource(routes, cfg.poll_interval), clock=clock)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.runner, gw.state = runner, app[GATEWAY]
    gw.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return gw


async def eventually(predicate: Callable[[], object], within: float = 3.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, f"condition not reached within {within}s"
        await asyncio.sleep(0.01)

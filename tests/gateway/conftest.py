"""Fixtures: fake backends and gateways (stopped after each test), openai clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.backends import FakeBackend
from tests.gateway.harness import GatewayUnderTest, start_gateway

BackendFactory = Callable[[str], Awaitable[FakeBackend]]
GatewayFactory = Callable[..., Awaitable[GatewayUnderTest]]


@pytest.fixture
async def backend() -> AsyncIterator[BackendFactory]:
    started: list[FakeBackend] = []

    async def make(name: str) -> FakeBackend:
        b = await FakeBackend(name).start()
        started.append(b)
        return b

    yield make
    for b in started:
        await b.stop()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    started: list[GatewayUnderTest] = []

    async def make(tables: Sequence[dict[str, Any]] | str, **kw: Any) -> GatewayUnderTest:
        gw = await start_gateway(tmp_path, tables, **kw)
        started.append(gw)
        for _ in range(100):
            if gw.state.store.current.loaded or isinstance(tables, str):
                break
            await asyncio.sleep(0.01)
        return gw

    yield make
    for gw in started:
        await gw.stop()


def async_client(gw: GatewayUnderTest, **kw: Any) -> openai.AsyncOpenAI:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 10} | kw
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key="client-key", **options)


def sync_client(gw: GatewayUnderTest) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="client-key", max_retries=0, timeout=10)

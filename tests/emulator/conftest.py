"""Fixtures for the emulator's own tests: a running emulator and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.emulator import KubeEmulator, running


@pytest.fixture
async def api() -> AsyncIterator[KubeEmulator]:
    async with running() as emulator:
        ns = emulator.store.kind("", "v1", "namespaces")
        emulator.store.create(ns, None, {"metadata": {"name": "ai"}})
        yield emulator


@pytest.fixture
async def http(api: KubeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(api.url_base) as session:
        yield session

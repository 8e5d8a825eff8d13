"""An in-process Kubernetes API for the controller tier: kmock 0.8 extended with real semantics.

``async with running() as api:`` starts :class:`KubeEmulator` on a loopback port;
``write_kubeconfig(api, path)`` points kopf (or ``ballast run``) at it;
``api.store`` is the object store (direct, unlogged access for test setup and
assertions) and ``api.writes()`` counts write requests from the request log.
See ``README.md`` here for what is emulated and what is not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import kmock
import yaml

from tests.emulator.resources import DEFAULT_KINDS, Kind
from tests.emulator.server import KubeEmulator
from tests.emulator.store import Store


@asynccontextmanager
async def running(kinds: tuple[Kind, ...] = DEFAULT_KINDS) -> AsyncIterator[KubeEmulator]:
    """A started emulator on 127.0.0.1 (random port); every watch is closed on exit."""
    api = KubeEmulator(store=Store(kinds))
    async with api, kmock.Server(api, user_agent="") as server:
        api.url_base = str(server.url).rstrip("/")
        try:
            yield api
        finally:
            api.close_watches()


def write_kubeconfig(api: KubeEmulator, path: Path, namespace: str = "default") -> Path:
    """A kubeconfig for ``api`` (plain HTTP on loopback, a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": api.url_base}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


__all__ = ["DEFAULT_KINDS", "Kind", "KubeEmulator", "Store", "running", "write_kubeconfig"]

"""kopf itself runs against the emulator: handlers complete, finalizers come and go.

This is the combination kmock 0.8 alone cannot serve (see README.md): the
finalizer JSON patch needs resourceVersion, deletion needs finalizer semantics,
and the handlers need a watch that loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import kopf

from tests.emulator import KubeEmulator, write_kubeconfig
from tests.emulator.poll import eventually
from tests.emulator.workloads import Deployments


def registry(seen: list[tuple[str, Any]]) -> kopf.OperatorRegistry:
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 5

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("ballast.dev", "v1alpha1", "llmservices", registry=reg)
    def created(name: str, **_: Any) -> None:
        seen.append(("create", name))

    @kopf.on.update("ballast.dev", "v1alpha1", "llmservices", registry=reg)
    def updated(name: str, new: Any, **_: Any) -> None:
        seen.append(("update", new["spec"]["a"]))

    @kopf.on.delete("ballast.dev", "v1alpha1", "llmservices", registry=reg)
    def deleted(name: str, **_: Any) -> None:
        seen.append(("delete", name))

    return reg


async def test_kopf_handlers_and_finalizers_complete(
    api: KubeEmulator, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(api, tmp_path / "kubeconfig")))
    seen: list[tuple[str, Any]] = []
    stop = threading.Event()
    reg = registry(seen)
    thread = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(registry=reg, standalone=True, namespaces=["ai"], stop_flag=stop)
        )
    )
    thread.start()
    kind = api.store.kind("ballast.dev", "v1alpha1", "llmservices")
    try:
        api.store.create(kind, "ai", {"metadata": {"name": "s"}, "spec": {"a": 1}})
        await eventually(lambda: ("create", "s") in seen)
        await eventually(lambda: bool(api.store.get(kind, "ai", "s")["metadata"].get("finalizers")))
        api.store.write(kind, "ai", "s", lambda o: {**o, "spec": {"a": 2}})
        await eventually(lambda: ("update", 2) in seen)
        api.store.delete(kind, "ai", "s")
        await eventually(lambda: api.store.find(kind, "ai", "s") is None)
        assert ("delete", "s") in seen
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)


async def test_deployments_get_a_status_and_can_be_made_unready(api: KubeEmulator) -> None:
    kind = api.store.kind("apps", "v1", "deployments")
    with Deployments(api.store) as deployments:
        api.store.create(kind, "ai", {"metadata": {"name": "d"}, "spec": {"replicas": 2}})
        await eventually(
            lambda: api.store.get(kind, "ai", "d").get("status", {}).get("readyReplicas") == 2
        )
        deployments.set_ready("ai", "d", False)
        assert api.store.get(kind, "ai", "d")["status"]["readyReplicas"] == 0

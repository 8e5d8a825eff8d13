"""The operator's own list+watch of managed children, against the emulator (no kopf)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf
import pytest

from ballast import render
from ballast.controller.kube import Kind, KubeClient
from ballast.controller.watch import ChildWatch, ChildWatches
from tests.emulator import KubeEmulator, running
from tests.emulator.poll import eventually
from tests.factories import llmservice_obj, make_llmservice, vllm

OWNER = ("ai", "chat")
CONFIGMAPS = Kind("v1", "ConfigMap", "configmaps")
SELECTOR = "app.kubernetes.io/managed-by=ballast"


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.status_only: list[bool] = []

    async def __call__(
        self, kind: str, event_type: str, body: Mapping[str, Any], status_only: bool
    ) -> None:
        self.events.append((kind, event_type, str(body["metadata"]["name"])))
        self.status_only.append(status_only)


@pytest.fixture
async def api() -> AsyncIterator[KubeEmulator]:
    async with running() as emulator:
        store = emulator.store
        store.create(store.kind("", "v1", "namespaces"), None, {"metadata": {"name": "ai"}})
        yield emulator


@pytest.fixture
async def kube(api: KubeEmulator) -> AsyncIterator[KubeClient]:
    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url_base, token="t")

    client = KubeClient(login)
    yield client
    await client.close()


def owned_configmap(api: KubeEmulator, name: str) -> dict[str, Any]:
    """A routes ConfigMap as the operator renders it, owned by LLMService ai/chat."""
    llms = api.store.kind("ballast.dev", "v1alpha1", "llmservices")
    owner = api.store.find(llms, "ai", "chat") or api.store.create(
        llms, "ai", llmservice_obj(vllm(), name="chat")
    )
    svc = make_llmservice(vllm(), name="chat", uid=owner["metadata"]["uid"])
    obj = render.objects(svc)[0]
    obj["metadata"]["name"] = name
    return obj


async def test_the_initial_list_fills_the_index_then_events_follow(
    api: KubeEmulator, kube: KubeClient
) -> None:
    cms = api.store.kind("", "v1", "configmaps")
    api.store.create(cms, "ai", owned_configmap(api, "a"))
    api.store.create(cms, "ai", {"metadata": {"name": "unmanaged"}})  # filtered by the selector
    seen = Seen()
    watch = ChildWatch(kube, CONFIGMAPS, SELECTOR, seen)
    watches = ChildWatches([watch])
    await watches.start()
    try:
        assert [c.name for c in watch.get(OWNER) or ()] == ["a"]
        assert seen.events == []  # the initial fill is not reported as events
        api.store.create(cms, "ai", owned_configmap(api, "b"))
        await eventually(lambda: sorted(c.name for c in watch.get(OWNER) or ()) == ["a", "b"])
        api.store.delete(cms, "ai", "a")
        await eventually(lambda: [c.name for c in watch.get(OWNER) or ()] == ["b"])
        assert ("ConfigMap", "ADDED", "b") in seen.events
        assert ("ConfigMap", "DELETED", "a") in seen.events
    finally:
        await watches.stop()


async def test_a_relist_replays_what_changed_while_the_watch_was_down(
    api: KubeEmulator, kube: KubeClient
) -> None:
    cms = api.store.kind("", "v1", "configmaps")
    api.store.create(cms, "ai", owned_configmap(api, "kept"))
    api.store.create(cms, "ai", owned_configmap(api, "gone"))
    seen = Seen()
    watch = ChildWatch(kube, CONFIGMAPS, SELECTOR, seen)
    await watch.sync()
    # while nothing watches: one child deleted, one added
    api.store.delete(cms, "ai", "gone")
    api.store.create(cms, "ai", owned_configmap(api, "new"))
    await watch._list(None, replay=True)
    assert sorted(c.name for c in watch.get(OWNER) or ()) == ["kept", "new"]
    assert sorted(seen.events) == [("ConfigMap", "ADDED", "new"), ("ConfigMap", "DELETED", "gone")]
    # the replayed deletion names its owner, so the controller can restore it
    assert watch.get(("ai", "nobody")) is None


async def test_a_failing_handler_does_not_stop_the_watch(
    api: KubeEmulator, kube: KubeClient
) -> None:
    cms = api.store.kind("", "v1", "configmaps")
    calls: list[str] = []

    async def flaky(kind: str, event_type: str, body: Mapping[str, Any], _: bool) -> None:
        calls.append(str(body["metadata"]["name"]))
        if len(calls) == 1:
            raise RuntimeError("a bug in a handler")

    watches = ChildWatches([ChildWatch(kube, CONFIGMAPS, SELECTOR, flaky)])
    await watches.start()
    try:
        api.store.create(cms, "ai", owned_configmap(api, "one"))
        await eventually(lambda: calls == ["one"])
        api.store.create(cms, "ai", owned_configmap(api, "two"))
        await eventually(lambda: calls == ["one", "two"])
    finally:
        await watches.stop()
    await asyncio.sleep(0)


async def test_status_only_changes_are_told_apart_from_edits(
    api: KubeEmulator, kube: KubeClient
) -> None:
    deployments = api.store.kind("apps", "v1", "deployments")
    owner = owned_configmap(api, "x")["metadata"]["ownerReferences"]
    svc = make_llmservice(vllm(), name="chat", uid=owner[0]["uid"])
    dep = next(o for o in render.objects(svc) if o["kind"] == "Deployment")
    api.store.create(deployments, "ai", dep)
    name = dep["metadata"]["name"]
    seen = Seen()
    watches = ChildWatches(
        [ChildWatch(kube, Kind("apps/v1", "Deployment", "deployments"), SELECTOR, seen)]
    )
    await watches.start()
    try:
        api.store.write(
            deployments, "ai", name, lambda o: o | {"status": {"readyReplicas": 1}}, "status"
        )
        await eventually(lambda: len(seen.events) == 1)

        def label(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["labels"]["edited"] = "by-hand"
            return obj

        api.store.write(deployments, "ai", name, label)
        await eventually(lambda: len(seen.events) == 2)
        api.store.write(
            deployments, "ai", name, lambda o: o | {"spec": {**o["spec"], "replicas": 5}}
        )
        await eventually(lambda: len(seen.events) == 3)
        assert seen.status_only == [True, False, False]
    finally:
        await watches.stop()

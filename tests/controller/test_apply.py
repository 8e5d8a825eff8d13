"""Executing plans against the emulator: each request the Applier makes is counted."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from ballast import render
from ballast.controller.apply import KINDS, Applied, Applier
from ballast.controller.children import Child, Children, child_of
from ballast.controller.kube import ApiError, KubeClient
from ballast.controller.plan import Create, plan, plan_restore
from ballast.controller.record import ServiceRecord
from tests.emulator import KubeEmulator, running
from tests.factories import llmservice_obj, make_llmservice, vllm

OWNER = ("ai", "chat")


class StoreIndex:
    """kopf's children index, computed from the emulator's store on every lookup."""

    def __init__(self, api: KubeEmulator) -> None:
        self.api = api

    def get(self, key: tuple[str, str], default: Any = None) -> list[Child]:
        out = []
        for kind in self.api.store.kinds.values():
            for obj in self.api.store.items(kind):
                out += [c for owner, c in child_of(obj).items() if owner == key]
        return out


@pytest.fixture
async def api() -> AsyncIterator[KubeEmulator]:
    async with running() as emulator:
        emulator.store.create(
            emulator.store.kind("", "v1", "namespaces"), None, {"metadata": {"name": "ai"}}
        )
        yield emulator


class Harness:
    """An Applier, the children index over the emulator's store, and one service's record."""

    def __init__(self, applier: Harness, children: Children) -> None:
        self.applier = applier
        self.kube = applier.kube
        self.children = children
        self.record = ServiceRecord(OWNER, None)

    async def apply(self, uid: str, desired: list[dict[str, Any]]) -> Applied:
        """Plan against what exists (plus our recent writes), then execute."""
        self.record.uid = uid
        observed = self.record.overlay(self.children.of(OWNER, uid))
        return await self.applier.execute(self.record, plan(desired, observed, uid))


@pytest.fixture
async def applier(api: KubeEmulator) -> AsyncIterator[Harness]:
    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url_base, token="t")

    kube = KubeClient(login)
    children = Children()
    children.indices = [StoreIndex(api)]
    yield Harness(Applier(kube), children)
    await kube.close()


async def _owner(api: KubeEmulator) -> str:
    obj = llmservice_obj(vllm(), name="chat")
    created = api.store.create(api.store.kind("ballast.dev", "v1alpha1", "llmservices"), "ai", obj)
    return str(created["metadata"]["uid"])


def methods(api: KubeEmulator, since: int) -> list[str]:
    return [
        f"{r.method.value} {r.resource.plural if r.resource else ''}" for r in api.requests[since:]
    ]


async def test_new_children_are_created_and_a_second_apply_sends_nothing(
    api: KubeEmulator, applier: Harness
) -> None:
    uid = await _owner(api)
    objs = render.objects(make_llmservice(vllm(), uid=uid), {})
    applied = await applier.apply(uid, objs)
    assert sorted(applied.created) == [
        "ConfigMap/chat-routes",
        "Deployment/chat-primary",
        "Service/chat-primary",
    ]
    start = len(api.requests)
    again = await applier.apply(uid, objs)
    assert not again.changed
    assert methods(api, start) == []


async def test_a_changed_child_is_patched_and_a_stale_one_deleted(
    api: KubeEmulator, applier: Harness
) -> None:
    uid = await _owner(api)
    first = render.objects(make_llmservice(vllm(replicas=3), uid=uid), {})
    await applier.apply(uid, first)
    applier.record.writes.clear()  # as if the watch had caught up
    second = render.objects(make_llmservice(vllm(replicas=1), uid=uid), {})
    start = len(api.requests)
    applied = await applier.apply(uid, second)
    assert applied.patched == ["Deployment/chat-primary"]  # the route is the same: no patch
    assert applied.deleted == ["PodDisruptionBudget/chat-primary"]  # one replica: no PDB
    assert sorted(methods(api, start)) == ["DELETE poddisruptionbudgets", "PATCH deployments"]


async def test_an_existing_child_unknown_to_the_index_is_adopted_not_duplicated(
    api: KubeEmulator, applier: Harness
) -> None:
    uid = await _owner(api)
    objs = render.objects(make_llmservice(vllm(), uid=uid), {})
    dep = next(o for o in objs if o["kind"] == "Deployment")
    api.store.create(api.store.kind("apps", "v1", "deployments"), "ai", dep)
    applier.children.indices = []  # the index has not seen it yet
    start = len(api.requests)
    outcome = await applier.applier.perform(applier.record, Create(dep))
    assert outcome == "unchanged"
    assert methods(api, start) == ["POST deployments", "GET deployments"]


@pytest.mark.parametrize("foreign_owner", [None, "someone-else"])
async def test_an_existing_child_of_another_owner_is_never_taken_over(
    api: KubeEmulator, applier: Harness, foreign_owner: str | None
) -> None:
    uid = await _owner(api)
    objs = render.objects(make_llmservice(vllm(), uid=uid), {})
    svc = next(o for o in objs if o["kind"] == "Service")
    theirs = copy.deepcopy(svc)
    theirs["metadata"].pop("ownerReferences")
    if (
        foreign_owner is not None
    ):  # e.g. LLMService chat-primary + backend "a" vs chat + "primary-a"
        other = api.store.create(
            api.store.kind("ballast.dev", "v1alpha1", "llmservices"),
            "ai",
            llmservice_obj(vllm(), name=foreign_owner),
        )
        theirs["metadata"]["ownerReferences"] = [
            {
                **svc["metadata"]["ownerReferences"][0],
                "uid": other["metadata"]["uid"],
                "name": foreign_owner,
            }
        ]
    theirs["spec"]["selector"] = {"app": "theirs"}
    api.store.create(api.store.kind("", "v1", "services"), "ai", theirs)
    applier.children.indices = []
    with pytest.raises(ApiError) as info:
        await applier.applier.perform(applier.record, Create(svc))
    assert info.value.reason == "NameConflict"
    stored = await applier.kube.get(KINDS["Service"], "ai", svc["metadata"]["name"])
    assert stored is not None
    assert stored["spec"]["selector"] == {"app": "theirs"}  # untouched


async def test_restore_repairs_a_hand_edit_that_kept_the_hash(
    api: KubeEmulator, applier: Harness
) -> None:
    uid = await _owner(api)
    objs = render.objects(make_llmservice(vllm(), uid=uid), {})
    dep = next(o for o in objs if o["kind"] == "Deployment")
    live = api.store.create(api.store.kind("apps", "v1", "deployments"), "ai", dep)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    action = plan_restore(("Deployment", "chat-primary"), dep, live)
    assert action is not None
    assert await applier.applier.perform(applier.record, action) == "patched"
    again = api.store.get(api.store.kind("apps", "v1", "deployments"), "ai", "chat-primary")
    assert plan_restore(("Deployment", "chat-primary"), dep, again) is None


async def test_a_child_that_vanished_under_a_patch_comes_back_only_while_its_owner_lives(
    api: KubeEmulator, applier: Harness
) -> None:
    """A patch answered 404: created again for a live LLMService (drift), never for a deleted
    one whose children garbage collection took while the operator's index lagged."""
    uid = await _owner(api)
    first = render.objects(make_llmservice(vllm(replicas=3), uid=uid), {})
    await applier.apply(uid, first)
    applier.record.writes.clear()
    second = render.objects(make_llmservice(vllm(replicas=2), uid=uid), {})
    deployments = api.store.kind("apps", "v1", "deployments")
    llmservices = api.store.kind("ballast.dev", "v1alpha1", "llmservices")

    async def alive(record: ServiceRecord) -> bool:
        return api.store.find(llmservices, "ai", "chat") is not None

    applier.applier.owner_alive = alive
    api.store.delete(deployments, "ai", "chat-primary")  # the index has not seen it go
    applied = await applier.apply(uid, second)
    assert applied.created == ["Deployment/chat-primary"]  # its owner lives: drift repaired
    applier.record.writes.clear()
    third = render.objects(make_llmservice(vllm(replicas=3), uid=uid), {})
    lagging = applier.record.overlay(applier.children.of(OWNER, uid))  # the index, before
    api.store.delete(llmservices, "ai", "chat")
    if api.store.find(deployments, "ai", "chat-primary") is not None:  # else the GC took it
        api.store.delete(deployments, "ai", "chat-primary")
    start = len(api.requests)
    applied = await applier.applier.execute(applier.record, plan(third, lagging, uid))
    assert applied.created == []
    assert api.store.find(deployments, "ai", "chat-primary") is None
    assert "POST deployments" not in methods(api, start)

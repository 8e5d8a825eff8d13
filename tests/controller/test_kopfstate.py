"""kopf's per-object state in memory: what tells kopf a create from an update, and what it
keeps while a handler fails, without a write to the LLMService."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from ballast.controller.app import kopf_settings
from ballast.controller.kopfstate import HandlerProgress, KopfState, SpecDigests, spec_digest
from ballast.controller.settings import Settings


def body(spec: dict[str, Any], uid: str = "u1", **meta: Any) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "ballast.dev/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": "chat", "namespace": "ai", "uid": uid, **meta},
            "spec": spec,
        }
    )


SPEC = {"backends": [{"name": "a", "engine": "vllm", "model": "m", "args": ["--x"]}]}


def test_the_digest_follows_the_spec_and_nothing_else() -> None:
    same = body(copy.deepcopy(SPEC), labels={"team": "x"}, annotations={"note": "y"})
    assert spec_digest(body(SPEC)) == spec_digest(same)
    reordered = {"backends": [{"model": "m", "engine": "vllm", "name": "a", "args": ["--x"]}]}
    assert spec_digest(body(SPEC)) == spec_digest(body(reordered))
    edited = copy.deepcopy(SPEC)
    edited["backends"][0]["args"] = ["--y"]
    assert spec_digest(body(SPEC)) != spec_digest(body(edited))


def test_digests_are_stored_in_memory_and_never_in_the_patch() -> None:
    digests = SpecDigests()
    first = body(SPEC)
    assert digests.fetch(body=first) is None  # never handled: kopf calls it a create
    patch = kopf.Patch()
    essence = digests.build(body=first)
    digests.store(body=first, patch=patch, essence=essence)
    assert not patch  # nothing to write to the object
    assert digests.fetch(body=first) == essence  # the same spec again: nothing to handle
    assert digests.fetch(body=body(SPEC, uid="u2")) is None  # another incarnation
    digests.forget("u1")
    assert digests.fetch(body=first) is None
    assert len(digests) == 0


def test_handler_progress_lives_in_memory_and_clears_what_older_versions_wrote() -> None:
    progress = HandlerProgress("ballast.dev")
    b = body(SPEC)
    patch = kopf.Patch()
    record: Any = {"started": "2026-12-07T00:00:00Z", "retries": 2, "success": False}
    progress.store(key="reconcile", record=record, body=b, patch=patch)
    assert not patch
    assert progress.fetch(key="reconcile", body=b) == record
    progress.purge(key="reconcile", body=b, patch=patch)
    assert progress.fetch(key="reconcile", body=b) is None
    assert not patch
    legacy = body(SPEC, annotations={"ballast.dev/reconcile": '{"retries":1}'})
    progress.purge(key="reconcile", body=legacy, patch=patch)
    assert patch == {"metadata": {"annotations": {"ballast.dev/reconcile": None}}}


def test_the_operator_uses_both_and_forgets_them_together() -> None:
    state = KopfState()
    ks = kopf_settings(Settings(), state)
    assert ks.persistence.diffbase_storage is state.digests
    assert ks.persistence.progress_storage is state.progress
    b = body(SPEC)
    state.digests.store(body=b, patch=kopf.Patch(), essence=state.digests.build(body=b))
    state.progress.store(key="reconcile", record={"retries": 1}, body=b, patch=kopf.Patch())  # type: ignore[typeddict-item]
    state.forget("u1")
    assert len(state.digests) == 0
    assert len(state.progress) == 0


def test_a_re_created_service_drops_the_state_of_the_one_before() -> None:
    from ballast.controller.core import Controller
    from ballast.controller.events import Events
    from ballast.controller.kube import KubeClient
    from ballast.controller.services import entry_from

    async def login() -> kopf.ConnectionInfo:
        raise AssertionError("no request is made")

    kube = KubeClient(login)
    state = KopfState()
    controller = Controller(Settings(), kube, Events(kube, "test"), state)
    first, second = body(SPEC, uid="u1"), body(SPEC, uid="u2")
    for b in (first, second):
        state.digests.store(body=b, patch=kopf.Patch(), essence=state.digests.build(body=b))
    for b in (first, second):
        entry = entry_from(b)
        assert entry is not None
        controller.record_of(entry)
    assert state.digests.fetch(body=first) is None  # deleted and re-created: the old uid goes
    assert state.digests.fetch(body=second) is not None

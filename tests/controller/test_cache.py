"""Model caches in the controller: which directory a backend serves, the plan, and status (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ballast import render
from ballast.api import CacheState, CacheStatus, LLMService
from ballast.controller import cache
from ballast.controller import status as status_model
from ballast.controller.children import Child, child_of
from ballast.controller.health import ServiceHealth
from ballast.controller.plan import Create, Delete, Patch, hash_of, key_of, plan
from ballast.naming import backend_name
from ballast.render.cache import target
from tests.factories import external, make_llmservice, vllm

UID = "uid-1"
Obj = dict[str, Any]
CACHE = {"size": "10Gi", "revision": "aaaa"}


def service(revision: str = "aaaa", **fields: Any) -> LLMService:
    return make_llmservice(
        vllm(cache={**CACHE, "revision": revision}, **fields), external(), uid=UID
    )


def observed(objs: list[Obj], **extra: dict[str, Any]) -> dict[tuple[str, str], Child]:
    """Index entries of ``objs`` as if they existed; ``extra[kind]`` sets Child fields."""
    out = {}
    for o in objs:
        child = Child(o["kind"], o["metadata"]["name"], hash_of(o), UID)
        if o["kind"] == "Deployment":
            served = (o["metadata"].get("annotations") or {}).get("ballast.dev/cache-served")
            child = replace(child, spec_replicas=o["spec"].get("replicas"), served=served)
        out[key_of(o)] = replace(child, **extra.get(o["kind"], {}))
    return out


def test_nothing_filled_yet_holds_the_backend_on_the_spec_directory() -> None:
    svc = service()
    uses = cache.uses(svc, {})
    assert uses == {"primary": target(svc.spec.backends[0])}
    assert not uses["primary"].ready


def test_a_complete_loader_fills_the_spec_directory() -> None:
    svc = service()
    objs = render.objects(svc)
    uses = cache.uses(svc, observed(objs, Job={"phase": "Complete"}))
    assert uses["primary"] == replace(target(svc.spec.backends[0]), ready=True)


def test_a_deployment_already_serving_the_directory_stays_served_without_its_job() -> None:
    svc = service()
    filled = render.objects(
        svc, caches=cache.uses(svc, observed(render.objects(svc), Job={"phase": "Complete"}))
    )
    without_job = [o for o in filled if o["kind"] != "Job"]
    assert cache.uses(svc, observed(without_job))["primary"].ready


def test_a_new_revision_keeps_the_old_directory_served_until_it_is_filled() -> None:
    old = service("aaaa")
    old_ready = {"primary": replace(target(old.spec.backends[0]), ready=True)}
    live = observed(render.objects(old, caches=old_ready), Job={"phase": "Complete"})
    new = service("bbbb")
    uses = cache.uses(new, live)
    assert uses["primary"] == old_ready["primary"]  # still the old bytes
    actions = plan(render.objects(new, caches=uses), live, UID)
    kept = cache.keep(new, uses)
    assert ("Job", old_ready["primary"].job) in kept
    remaining = [a for a in actions if not (isinstance(a, Delete) and a.key in kept)]
    kinds = sorted(f"{type(a).__name__} {a.key[0]}" for a in remaining)
    # the new claim and loader are created; the old ones are kept; the pods do not roll yet
    assert kinds == ["Create Job", "Create PersistentVolumeClaim"]
    # once the new loader completes, the Deployment rolls and the old ones are released
    live.update(
        observed(
            [o for o in render.objects(new) if o["kind"] in ("Job", "PersistentVolumeClaim")],
            Job={"phase": "Complete"},
        )
    )
    uses = cache.uses(new, live)
    assert uses["primary"] == replace(target(new.spec.backends[0]), ready=True)
    actions = plan(render.objects(new, caches=uses), live, UID)
    assert sorted(
        f"{type(a).__name__} {a.key[0]}"
        for a in actions
        if not (isinstance(a, Delete) and a.key in cache.keep(new, uses))
    ) == [
        "Delete Job",
        "Delete PersistentVolumeClaim",
        "Patch Deployment",
    ]


def test_shared_children_are_never_patched() -> None:
    svc = service()
    objs = render.objects(svc)
    live = observed(objs)
    for key, child in list(live.items()):
        if key[0] in ("Job", "PersistentVolumeClaim"):
            live[key] = replace(child, hash="someone-else")
    assert plan(objs, live, UID) == []


def test_a_held_deployment_handed_to_its_new_hpa_starts_at_min_replicas() -> None:
    svc = service(scaling={"minReplicas": 2, "maxReplicas": 4})
    held = render.objects(svc)
    live = observed(held)
    assert live[("Deployment", backend_name(svc.name, "primary"))].spec_replicas == 0
    filled = render.objects(
        svc, caches={"primary": replace(target(svc.spec.backends[0]), ready=True)}
    )
    actions = plan(filled, live, UID)
    patch = next(a for a in actions if isinstance(a, Patch) and a.key[0] == "Deployment")
    assert patch.body["spec"]["replicas"] == 2  # an HPA never scales a target at 0
    assert any(isinstance(a, Create) and a.key[0] == "HorizontalPodAutoscaler" for a in actions)


def test_a_shared_child_is_indexed_under_every_owner() -> None:
    job = render.objects(service())[-1]
    assert job["kind"] == "Job"
    other = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "name": "b",
        "uid": "u2",
        "controller": False,
    }
    job["metadata"]["ownerReferences"].append(other)
    job["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}],
        "completionTime": "2026-12-05T00:00:00Z",
    }
    entries = child_of(job)
    assert set(entries) == {("ai", "chat"), ("ai", "b")}
    assert {c.owner_uid for c in entries.values()} == {UID, "u2"}
    assert all(
        c.phase == "Complete" and c.completed == "2026-12-05T00:00:00Z" for c in entries.values()
    )


def pod(exit_code: int, message: str, finished: str = "2026-12-05T00:00:00Z") -> Obj:
    term = {"exitCode": exit_code, "message": message, "finishedAt": finished}
    return {"status": {"containerStatuses": [{"name": "fetch", "state": {"terminated": term}}]}}


@pytest.mark.parametrize(
    ("pods", "result"),
    [
        ([pod(0, '{"revision": "abc", "bytes": 42, "files": 3}')], cache.LoadResult("abc", 42)),
        (
            [pod(2, "repository org/m not found\n")],
            cache.LoadResult(message="repository org/m not found"),
        ),
        (
            [pod(1, "first", "2026-12-05T00:00:00Z"), pod(2, "second", "2026-12-05T00:01:00Z")],
            cache.LoadResult(message="second"),
        ),
        ([pod(0, "not json")], cache.LoadResult()),
        ([], cache.LoadResult()),
    ],
)
def test_the_loader_result_comes_from_its_termination_message(
    pods: list[Obj], result: cache.LoadResult
) -> None:
    assert cache.load_result(pods) == result


def states(
    svc: LLMService,
    live: dict[tuple[str, str], Child],
    results: dict[str, cache.LoadResult] | None = None,
) -> CacheStatus:
    b = svc.spec.backends[0]
    return cache.cache_status(svc, b, live, cache.uses(svc, live)[b.name], results or {})


def test_cache_status_follows_the_loader() -> None:
    svc = service()
    objs = render.objects(svc)
    job = target(svc.spec.backends[0]).job
    assert (
        states(svc, observed(objs, PersistentVolumeClaim={"phase": "Pending"})).state
        is CacheState.CLAIM_PENDING
    )
    assert (
        states(
            svc,
            observed(objs, Job={"phase": "Running"}, PersistentVolumeClaim={"phase": "Pending"}),
        ).state
        is CacheState.DOWNLOADING
    )
    failed = states(
        svc,
        observed(objs, Job={"phase": "Failed", "message": "BackoffLimitExceeded"}),
        {job: cache.LoadResult(message="401 unauthorized")},
    )
    assert (failed.state, failed.message) == (CacheState.DOWNLOAD_FAILED, "401 unauthorized")
    done = states(
        svc,
        observed(objs, Job={"phase": "Complete", "completed": "2026-12-05T00:00:00Z"}),
        {job: cache.LoadResult("c0ffee", 1234)},
    )
    assert (done.state, done.revision, done.bytes, done.ready_since) == (
        CacheState.READY,
        "c0ffee",
        1234,
        "2026-12-05T00:00:00Z",
    )


def test_cache_ready_condition_and_a_failed_download_degrades() -> None:
    svc = service()
    health = ServiceHealth.start(svc)
    b = svc.spec.backends[0]
    failed = CacheStatus(
        key="k", claim="c", state=CacheState.DOWNLOAD_FAILED, message="401 unauthorized"
    )
    st = status_model.observed(svc, health, 1, "http://gw/v1", caches={b.name: failed})
    cond = st.condition("CacheReady")
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "DownloadFailed")
    assert "401 unauthorized" in cond.message
    degraded = st.condition("Degraded")
    assert degraded is not None
    assert (degraded.status, degraded.reason) == ("True", "DownloadFailed")
    assert st.backends[0].cache == failed
    assert st.backends[0].message == "model cache DownloadFailed: 401 unauthorized"
    filled = failed.model_copy(update={"state": CacheState.READY, "message": "", "revision": "abc"})
    st = status_model.observed(svc, health, 1, "http://gw/v1", caches={b.name: filled})
    cond = st.condition("CacheReady")
    assert cond is not None
    assert (cond.status, cond.reason) == ("True", "Ready")
    plain = make_llmservice(vllm(), uid=UID)
    assert (
        status_model.observed(plain, ServiceHealth.start(plain), 1, "x").condition("CacheReady")
        is None
    )

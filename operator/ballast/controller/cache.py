"""Model caches as the controller sees them: which directory each backend serves, and status.

Pure functions over the observed children (the watched index): :func:`uses` decides,
per cached backend, which cache directory its pods mount and whether it is filled;
:func:`keep` names the shared children an older directory still in use needs;
:func:`cache_status` is the backend's ``status.backends[].cache``. The loader's
result (resolved revision, bytes, or its failure message) comes from its pod's
termination message, read once per finished Job (:func:`load_result`).

The rules:

* the directory the spec asks for is filled when its loader Job is Complete, or
  when the Deployment already serves it (``ballast.dev/cache-served``), so a
  deleted Job or an operator restart never takes serving pods away;
* while a changed revision (or model) fills a new directory, pods keep serving
  the old one, and its claim and Job are kept; once the new one is filled the
  Deployment rolls to it and the old ones are released;
* with nothing served yet, the backend is held at 0 replicas and no HPA.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ballast.api import Backend, CacheState, CacheStatus, LLMService
from ballast.controller.children import Child, ChildKey
from ballast.naming import backend_name
from ballast.render.cache import CacheUse, target

Obj = dict[str, Any]


@dataclass(frozen=True)
class LoadResult:
    """What a finished loader reported in its termination message."""

    revision: str | None = None
    bytes: int | None = None
    message: str = ""


def cached(svc: LLMService) -> list[Backend]:
    """The self-hosted backends of ``svc`` with a cache."""
    return [b for b in svc.spec.backends if b.cache is not None and not b.external]


def _served(observed: Mapping[ChildKey, Child], svc: LLMService, b: Backend) -> str | None:
    dep = observed.get(("Deployment", backend_name(svc.name, b.name)))
    return dep.served if dep is not None else None


def uses(svc: LLMService, observed: Mapping[ChildKey, Child]) -> dict[str, CacheUse]:
    """Backend name -> the cache directory its pods should mount now, for cached backends."""
    out: dict[str, CacheUse] = {}
    for b in cached(svc):
        want = target(b)
        served = _served(observed, svc, b)
        job = observed.get(("Job", want.job))
        if served == want.served or (job is not None and job.phase == "Complete"):
            out[b.name] = replace(want, ready=True)
        elif served is not None and "/" in served:
            claim, _, key = served.partition("/")
            out[b.name] = CacheUse(claim, key, ready=True)
        else:
            out[b.name] = want
    return out


def keep(svc: LLMService, current: Mapping[str, CacheUse]) -> set[ChildKey]:
    """Shared children that directories still served (not the spec's) need kept."""
    out: set[ChildKey] = set()
    for b in cached(svc):
        use = current.get(b.name)
        want = target(b)
        if use is None or (use.claim, use.key) == (want.claim, want.key):
            continue
        out.add(("Job", use.job))
        out.add(("PersistentVolumeClaim", use.claim))
    return out


def finished_jobs(svc: LLMService, observed: Mapping[ChildKey, Child]) -> list[Child]:
    """The loader Jobs of ``svc``'s caches that have finished (their result can be read)."""
    out = []
    for b in cached(svc):
        job = observed.get(("Job", target(b).job))
        if job is not None and job.phase in ("Complete", "Failed"):
            out.append(job)
    return out


def load_result(pods: Sequence[Obj]) -> LoadResult:
    """The loader's report from the termination message of its latest finished pod."""
    latest: tuple[str, Obj] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") != "fetch" or not term:
                continue
            at = str(term.get("finishedAt") or "")
            if latest is None or at >= latest[0]:
                latest = (at, term)
    if latest is None:
        return LoadResult()
    term = latest[1]
    text = str(term.get("message") or "").strip()
    if term.get("exitCode") != 0:
        return LoadResult(message=text.splitlines()[-1][:1024] if text else "")
    try:
        data = json.loads(text)
    except ValueError:
        return LoadResult()
    if not isinstance(data, dict):
        return LoadResult()
    revision = data.get("revision")
    size = data.get("bytes")
    return LoadResult(
        revision=str(revision) if isinstance(revision, str) else None,
        bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def cache_status(
    svc: LLMService,
    b: Backend,
    observed: Mapping[ChildKey, Child],
    use: CacheUse,
    results: Mapping[str, LoadResult],
    previous: CacheStatus | None = None,
) -> CacheStatus:
    """``status.backends[].cache`` of backend ``b``."""
    want = target(b)
    job = observed.get(("Job", want.job))
    result = results.get(want.job) or LoadResult()
    pinned = b.cache.revision if b.cache is not None else None
    base = CacheStatus(key=want.key, claim=want.claim, state=CacheState.DOWNLOADING)
    if use.ready and (use.claim, use.key) == (want.claim, want.key):
        same = previous is not None and previous.key == want.key
        return base.model_copy(
            update={
                "state": CacheState.READY,
                "revision": result.revision
                or (previous.revision if same and previous else None)
                or pinned,
                "bytes": result.bytes
                if result.bytes is not None
                else (previous.bytes if same and previous else None),
                "ready_since": (job.completed if job is not None else None)
                or (previous.ready_since if same and previous else None),
            }
        )
    if job is not None and job.phase == "Failed":
        message = result.message or job.message or "the loader Job failed"
        return base.model_copy(update={"state": CacheState.DOWNLOAD_FAILED, "message": message})
    claim = observed.get(("PersistentVolumeClaim", want.claim))
    if claim is not None and claim.phase == "Pending" and (job is None or job.phase != "Running"):
        return base.model_copy(
            update={
                "state": CacheState.CLAIM_PENDING,
                "message": f"PersistentVolumeClaim {want.claim} is not bound yet",
            }
        )
    if use.ready:
        message = f"serving the previous cache {use.key} until {want.key} is filled"
        return base.model_copy(update={"message": message})
    return base

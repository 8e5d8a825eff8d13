"""Pure functions from an LLMService to the exact Kubernetes objects that serve it.

One builder per kind, each returning a plain dict (``deployment``, ``service``,
``hpa``, ``pdb``, ``routes_configmap``), and :func:`objects`, every child in a
stable order: the routing ConfigMap first, the engines' NetworkPolicy (when the
operator is given its peers, see :mod:`.network`), then for each self-hosted backend in
spec order its Service, Deployment, HPA (with ``scaling``) and PDB (when it can
have more than one replica), then the backends' model caches (a claim when Ballast
creates it and a loader Job, each once per cache key; see :mod:`.cache`). External
backends (engine openai) get no objects,
only their entry in the routing table. Objects hold only the fields Ballast owns
(no status, no server-side defaults), so they suit create/patch and server-side
apply alike; each carries ``ballast.dev/applied-hash`` (see :mod:`.meta`).
Nothing here does I/O; the same input gives the same objects, and the same
bytes once serialized with sorted keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ballast.api import LLMService
from ballast.render.autoscaling import hpa, metric_spec, pdb
from ballast.render.cache import (
    DEFAULT_LOADER_IMAGE,
    CacheUse,
    cache_objects,
    claim,
    loader_job,
)
from ballast.render.meta import (
    APPLIED_HASH_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    Obj,
    object_hash,
    owner_reference,
)
from ballast.render.network import engine_policy
from ballast.render.pod import pod_template
from ballast.render.routes import routes_configmap
from ballast.render.scale import Scale
from ballast.render.workload import deployment, rollout_strategy, service, uses_accelerator
from ballast.routing import table_for


def objects(
    svc: LLMService,
    health: Mapping[str, bool] | None = None,
    caches: Mapping[str, CacheUse] | None = None,
    loader_image: str = DEFAULT_LOADER_IMAGE,
    engine_peers: Sequence[Mapping[str, Any]] = (),
    scale: Scale | None = None,
) -> list[Obj]:
    """Every child of ``svc``; ``health=None`` means no backend is healthy yet.

    ``caches``: backend name -> the cache directory its pods mount and whether it is
    filled; a cached backend missing from it is held at 0 replicas (its cache is filling).
    ``engine_peers``: who may call the engine pods; empty renders no NetworkPolicy.
    ``scale``: the replicas the controller pins (scale to zero, standby); None: the initial
    state, every such backend at 0.
    """
    caches = caches or {}
    scale = scale if scale is not None else Scale.initial(svc)
    out = [routes_configmap(svc, table_for(svc, health or {}, scale.standby_up))]
    policy = engine_policy(svc, engine_peers)
    if policy is not None:
        out.append(policy)  # before any pod exists: no window in which engines are open
    loaders: dict[str, Obj] = {}
    for backend in svc.spec.backends:
        if backend.external:
            continue
        use, pin = caches.get(backend.name), scale.pin(backend.name)
        out += [service(svc, backend), deployment(svc, backend, use, pin)]
        out += [o for o in (hpa(svc, backend, use, pin), pdb(svc, backend)) if o is not None]
        for obj in cache_objects(svc, backend, loader_image):
            loaders.setdefault(f"{obj['kind']}/{obj['metadata']['name']}", obj)
    return out + list(loaders.values())


__all__ = [
    "APPLIED_HASH_ANNOTATION",
    "DEFAULT_LOADER_IMAGE",
    "SPEC_HASH_ANNOTATION",
    "CacheUse",
    "Obj",
    "Scale",
    "cache_objects",
    "claim",
    "deployment",
    "engine_policy",
    "hpa",
    "loader_job",
    "metric_spec",
    "object_hash",
    "objects",
    "owner_reference",
    "pdb",
    "pod_template",
    "rollout_strategy",
    "routes_configmap",
    "service",
    "uses_accelerator",
]

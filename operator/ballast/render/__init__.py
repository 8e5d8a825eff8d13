"""Pure functions from an LLMService to the exact Kubernetes objects that serve it.

One builder per kind, each returning a plain dict (``deployment``, ``service``,
``hpa``, ``pdb``, ``routes_configmap``), and :func:`objects`, every child in a
stable order: the routing ConfigMap first, then for each self-hosted backend in
spec order its Service, Deployment, HPA (with ``scaling``) and PDB (when it can
have more than one replica). External backends (engine openai) get no objects,
only their entry in the routing table. Objects hold only the fields Ballast owns
(no status, no server-side defaults), so they suit create/patch and server-side
apply alike; each carries ``ballast.dev/applied-hash`` (see :mod:`.meta`).
Nothing here does I/O; the same input gives the same objects, and the same
bytes once serialized with sorted keys.
"""

from __future__ import annotations

from collections.abc import Mapping

from ballast.api import LLMService
from ballast.render.autoscaling import hpa, metric_spec, pdb
from ballast.render.meta import (
    APPLIED_HASH_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    Obj,
    object_hash,
    owner_reference,
)
from ballast.render.pod import pod_template
from ballast.render.routes import routes_configmap
from ballast.render.workload import deployment, rollout_strategy, service, uses_accelerator
from ballast.routing import table_for


def objects(svc: LLMService, health: Mapping[str, bool] | None = None) -> list[Obj]:
    """Every child of ``svc``; ``health=None`` means no backend is healthy yet."""
    out = [routes_configmap(svc, table_for(svc, health or {}))]
    for backend in svc.spec.backends:
        if backend.external:
            continue
        out += [service(svc, backend), deployment(svc, backend)]
        out += [o for o in (hpa(svc, backend), pdb(svc, backend)) if o is not None]
    return out


__all__ = [
    "APPLIED_HASH_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "Obj",
    "deployment",
    "hpa",
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

"""Deployment and Service of a self-hosted backend.

Deployment rollout strategy: a backend that asks for an accelerator (any
extended resource such as ``nvidia.com/gpu``; everything but cpu, memory,
ephemeral-storage and hugepages) rolls with ``maxSurge: 0, maxUnavailable: 1``:
accelerator pools rarely have a spare device, and a surge pod would sit Pending
and block the rollout forever. The gateway moves traffic to the next backend
meanwhile. CPU-only backends roll with ``maxSurge: 1, maxUnavailable: 0`` (no
capacity dip). ``progressDeadlineSeconds`` is the startup budget plus ten
minutes for the image pull, so a slow model load is not reported as a stalled
rollout. With ``scaling`` the Deployment carries no ``replicas`` (the HPA owns
it); otherwise ``replicas`` defaults to 1.

A backend with a model cache that is not filled yet (:class:`~.cache.CacheUse` not
ready) gets ``replicas: 0`` and no HPA (so does a backend at 0 by scale to zero or
standby, see :mod:`.scale`, which is pinned to the replicas the controller sets): no serving pod starts before its weights
are on the volume. Once filled, the Deployment carries
``ballast.dev/cache-served: <claim>/<key>`` and scales as its spec says.
"""

from __future__ import annotations

from typing import Final

from ballast.api import Backend, Health, LLMService, Resources
from ballast.engines import info
from ballast.naming import backend_name, selector_labels
from ballast.render.cache import SERVED_ANNOTATION, CacheUse, target
from ballast.render.meta import Obj, child, object_meta
from ballast.render.pod import PORT_NAME, pod_template, workload_labels

#: Extra seconds of progress deadline on top of the startup budget (image pull, scheduling).
PULL_ALLOWANCE_SECONDS: Final = 600
_PLAIN_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})


def uses_accelerator(resources: Resources | None) -> bool:
    """True when the backend requests an extended resource such as nvidia.com/gpu."""
    if resources is None:
        return False
    names = {*(resources.limits or {}), *(resources.requests or {})}
    return any(n not in _PLAIN_RESOURCES and not n.startswith("hugepages-") for n in names)


def rollout_strategy(backend: Backend) -> Obj:
    """RollingUpdate that never surges on accelerators and never dips on CPU."""
    surge, unavailable = (0, 1) if uses_accelerator(backend.resources) else (1, 0)
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }


def _require_pods(backend: Backend) -> None:
    if backend.external:
        raise ValueError(f"backend {backend.name} is external ({backend.engine.value}): no pods")


def cache_use(backend: Backend, use: CacheUse | None) -> CacheUse | None:
    """The cache directory ``backend``'s pods mount: ``use``, or the spec's (not filled yet)."""
    if backend.cache is None:
        return None
    return use if use is not None else target(backend)


def held(backend: Backend, use: CacheUse | None) -> bool:
    """True while the backend's cache is not filled: no pods, no HPA."""
    use = cache_use(backend, use)
    return use is not None and not use.ready


def deployment(
    svc: LLMService, backend: Backend, use: CacheUse | None = None, pin: int | None = None
) -> Obj:
    """The Deployment running ``backend``'s engine (``use``: its cache directory, if any;
    ``pin``: the replicas the controller sets while the backend is at or leaving 0)."""
    _require_pods(backend)
    health = backend.health if backend.health is not None else Health()
    use = cache_use(backend, use)
    cache = (use.claim, use.key) if use is not None else None
    spec: Obj = {
        "selector": {"matchLabels": selector_labels(svc.name, backend.name)},
        "strategy": rollout_strategy(backend),
        "progressDeadlineSeconds": health.startup_timeout_seconds + PULL_ALLOWANCE_SECONDS,
        "template": pod_template(svc, backend, cache),
    }
    if use is not None and not use.ready:
        spec["replicas"] = 0
    elif pin is not None:
        spec["replicas"] = pin
    elif backend.scaling is None:
        spec["replicas"] = 1 if backend.replicas is None else backend.replicas
    name = backend_name(svc.name, backend.name)
    meta = object_meta(svc, name, workload_labels(svc, backend))
    if use is not None and use.ready:
        meta["annotations"] = {SERVED_ANNOTATION: use.served}
    return child("apps/v1", "Deployment", meta, spec=spec)


def service(svc: LLMService, backend: Backend) -> Obj:
    """The ClusterIP Service the routing table points at, on the engine's port."""
    _require_pods(backend)
    port = info(backend.engine).port
    spec: Obj = {
        "selector": selector_labels(svc.name, backend.name),
        "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}],
    }
    name = backend_name(svc.name, backend.name)
    meta = object_meta(svc, name, workload_labels(svc, backend))
    return child("v1", "Service", meta, spec=spec)

"""What the operator wants to exist for an LLMService: every child, or just one of them.

:func:`desired_all` renders every child. :func:`desired_one` renders a single child
with its own builder, which is what a watch event of one child needs: at start-up
kopf lists every child of every service kind by kind, and rendering whole services
for each would cost ~7x more. A test keeps ``one`` equal to the matching item of
``all``. Nothing is cached: rendered objects are large and a reconcile renders once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ballast import render
from ballast.api import Backend, LLMService
from ballast.controller.plan import key_of
from ballast.naming import backend_name, routes_name
from ballast.render.cache import DEFAULT_LOADER_IMAGE, CacheUse
from ballast.render.network import engine_policy, policy_name
from ballast.render.scale import Scale
from ballast.routing import table_for

Obj = dict[str, Any]
Builder = Callable[[LLMService, Backend, CacheUse | None, int | None], Obj | None]
BUILDERS: Final[Mapping[str, Builder]] = {
    "Service": lambda svc, b, _, __: render.service(svc, b),
    "Deployment": render.deployment,
    "HorizontalPodAutoscaler": render.hpa,
    "PodDisruptionBudget": lambda svc, b, _, __: render.pdb(svc, b),
}


@dataclass(frozen=True)
class Rendering:
    """The operator's settings that shape children: the cache loader's image and who may
    call the engine pods (empty: no NetworkPolicy)."""

    loader_image: str = DEFAULT_LOADER_IMAGE
    engine_peers: Sequence[Mapping[str, Any]] = ()


DEFAULTS: Final = Rendering()


def desired_all(
    svc: LLMService,
    route: Mapping[str, bool],
    caches: Mapping[str, CacheUse] | None = None,
    rendering: Rendering = DEFAULTS,
    scale: Scale | None = None,
) -> list[Obj]:
    """Every child of ``svc`` given the route, the backends' cache directories and the
    replicas the controller pins (None: the initial state, see :mod:`ballast.render.scale`)."""
    return render.objects(svc, route, caches, rendering.loader_image, rendering.engine_peers, scale)


def desired_one(
    svc: LLMService,
    kind: str,
    name: str,
    route: Mapping[str, bool],
    caches: Mapping[str, CacheUse] | None = None,
    rendering: Rendering = DEFAULTS,
    scale: Scale | None = None,
) -> Obj | None:
    """The child ``kind``/``name`` as desired, or None when it should not exist."""
    scale = scale if scale is not None else Scale.initial(svc)
    if kind == "ConfigMap":
        if name != routes_name(svc.name):
            return None
        return render.routes_configmap(svc, table_for(svc, route, scale.standby_up))
    if kind == "NetworkPolicy":
        if name != policy_name(svc.name):
            return None
        return engine_policy(svc, rendering.engine_peers)
    builder = BUILDERS.get(kind)
    if builder is None:  # a kind without a builder here (the caches' shared ones): render all
        every = desired_all(svc, route, caches, rendering, scale)
        return next((o for o in every if key_of(o) == (kind, name)), None)
    caches = caches or {}
    for backend in svc.spec.backends:
        if not backend.external and backend_name(svc.name, backend.name) == name:
            return builder(svc, backend, caches.get(backend.name), scale.pin(backend.name))
    return None

"""What the operator wants to exist for an LLMService: every child, or just one of them.

:func:`desired_all` renders every child. :func:`desired_one` renders a single child
with its own builder, which is what a watch event of one child needs: at start-up
kopf lists every child of every service kind by kind, and rendering whole services
for each would cost ~7x more. A test keeps ``one`` equal to the matching item of
``all``. Nothing is cached: rendered objects are large and a reconcile renders once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ballast import render
from ballast.api import Backend, LLMService
from ballast.controller.plan import key_of
from ballast.naming import backend_name, routes_name
from ballast.routing import table_for

Obj = dict[str, Any]
Builder = Callable[[LLMService, Backend], Obj | None]
BUILDERS: Final[Mapping[str, Builder]] = {
    "Service": render.service,
    "Deployment": render.deployment,
    "HorizontalPodAutoscaler": render.hpa,
    "PodDisruptionBudget": render.pdb,
}


def desired_all(svc: LLMService, route: Mapping[str, bool]) -> list[Obj]:
    """Every child of ``svc`` given the route."""
    return render.objects(svc, route)


def desired_one(svc: LLMService, kind: str, name: str, route: Mapping[str, bool]) -> Obj | None:
    """The child ``kind``/``name`` as desired, or None when it should not exist."""
    if kind == "ConfigMap":
        if name != routes_name(svc.name):
            return None
        return render.routes_configmap(svc, table_for(svc, route))
    builder = BUILDERS.get(kind)
    if builder is None:  # a kind added to render without a builder here: render it all
        return next((o for o in desired_all(svc, route) if key_of(o) == (kind, name)), None)
    for backend in svc.spec.backends:
        if not backend.external and backend_name(svc.name, backend.name) == name:
            return builder(svc, backend)
    return None

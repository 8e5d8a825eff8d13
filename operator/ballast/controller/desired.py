"""What the operator wants to exist for an LLMService: every child, or just one of them.

:meth:`Desired.all` renders every child (cached per spec generation and route, a
few dozen services deep). :meth:`Desired.one` renders a single child with its own
builder, which is what a watch event of one child needs: at start-up kopf lists
every child of every service kind by kind, and rendering whole services for each
would cost ~7x more. A test keeps ``one`` equal to the matching item of ``all``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from ballast import render
from ballast.api import Backend, LLMService
from ballast.controller.apply import key_of
from ballast.controller.services import Entry
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


class Desired:
    """Rendered children with a small LRU cache."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._cache: OrderedDict[tuple[object, ...], list[Obj]] = OrderedDict()

    def all(self, entry: Entry, route: Mapping[str, bool], cache: bool = True) -> list[Obj]:
        """Every child of ``entry`` given the route (``cache=False`` for a spec not in the index)."""
        if entry.svc is None:
            return []
        if not cache:
            return render.objects(entry.svc, route)
        key = (entry.owner, entry.uid, entry.generation, tuple(sorted(route.items())))
        if key not in self._cache:
            self._cache[key] = render.objects(entry.svc, route)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def one(self, entry: Entry, kind: str, name: str, route: Mapping[str, bool]) -> Obj | None:
        """The child ``kind``/``name`` as desired, or None when it should not exist."""
        svc = entry.svc
        if svc is None:
            return None
        if kind == "ConfigMap":
            if name != routes_name(svc.name):
                return None
            return render.routes_configmap(svc, table_for(svc, route))
        builder = BUILDERS.get(kind)
        if builder is None:  # a kind added to render without a builder here: render it all
            return next((o for o in self.all(entry, route) if key_of(o) == (kind, name)), None)
        for backend in svc.spec.backends:
            if not backend.external and backend_name(svc.name, backend.name) == name:
                return builder(svc, backend)
        return None

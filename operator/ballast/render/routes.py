"""The routing ConfigMap ``<svc>-routes``: the routing table the gateway follows."""

from __future__ import annotations

from ballast.api import LLMService
from ballast.naming import ROUTES_KEY, ROUTES_LABEL, labels, routes_name
from ballast.render.meta import Obj, child, object_meta
from ballast.routing import RoutingTable


def routes_configmap(svc: LLMService, table: RoutingTable) -> Obj:
    """ConfigMap labelled ``ballast.dev/routes: "true"`` with ``routes.json`` = ``table.dumps()``."""
    meta = object_meta(
        svc, routes_name(svc.name), {**labels(svc.name, "routes"), ROUTES_LABEL: "true"}
    )
    return child("v1", "ConfigMap", meta, data={ROUTES_KEY: table.dumps()})

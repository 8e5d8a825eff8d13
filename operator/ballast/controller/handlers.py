"""The kopf handlers, registered on a registry for one :class:`~.app.App` (no global registry).

Handlers are thin: they pass kopf's body to the controller and return ``None``,
so kopf stores nothing under ``status``. They do not raise for an apply the API
refuses: the controller records it and retries with its own backoff (kopf would
write two progress annotations on the LLMService per retry). A rejected spec is
not an error either (status says why, and the next edit is handled as usual).
"""

from __future__ import annotations

from typing import Any

import kopf

from ballast.api import GROUP, PLURAL, VERSION
from ballast.controller.app import MANAGED_BY_LABEL, App
from ballast.controller.children import child_of
from ballast.controller.services import entry_of
from ballast.naming import MANAGED_BY
from ballast.permissions import MANAGED_KINDS, ManagedKind

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
LLMS = (GROUP, VERSION, PLURAL)


def register(registry: kopf.OperatorRegistry, app: App) -> None:
    """Register every handler of ``app`` on ``registry``."""

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> Any:
        return app.login(**kwargs)

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(**kwargs: Any) -> None:
        await app.start(kwargs)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        await app.stop()

    @kopf.index(*LLMS, id="llmservices", registry=registry)
    def llmservices(body: kopf.Body, **_: Any) -> Any:
        return entry_of(body)

    temporary = kopf.ErrorsMode.TEMPORARY

    @kopf.on.resume(*LLMS, id="reconcile", registry=registry, errors=temporary, backoff=5)
    @kopf.on.create(*LLMS, id="reconcile", registry=registry, errors=temporary, backoff=5)
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        await app.controller.reconcile(body, None)

    @kopf.on.update(*LLMS, id="reconcile", registry=registry, errors=temporary, backoff=5)
    async def update(body: kopf.Body, old: Any, **_: Any) -> None:
        previous = {"metadata": dict(body["metadata"]), "spec": (old or {}).get("spec")}
        await app.controller.reconcile(body, previous if previous["spec"] else None)

    for kind in MANAGED_KINDS:
        _register_child(registry, app, kind)


def _register_child(registry: kopf.OperatorRegistry, app: App, kind: ManagedKind) -> None:
    version = kind.api_version.rpartition("/")[2]
    where = (kind.group, version, kind.plural)

    def index(body: kopf.Body, **_: Any) -> Any:
        return child_of(body)

    async def changed(body: kopf.Body, type: str | None, **_: Any) -> None:
        await app.controller.child_changed(kind.kind, type, body)

    kopf.index(*where, id=f"children_{kind.plural}", labels=MANAGED, registry=registry)(index)
    kopf.on.event(*where, id=f"drift_{kind.plural}", labels=MANAGED, registry=registry)(changed)

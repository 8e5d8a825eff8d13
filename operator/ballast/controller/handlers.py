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
from ballast.controller.app import App
from ballast.controller.services import entry_of

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
    @kopf.on.update(*LLMS, id="reconcile", registry=registry, errors=temporary, backoff=5)
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        await app.controller.reconcile(body)

    # The managed children are not kopf resources: Ballast watches them itself
    # (:mod:`.watch`), without kopf's per-object workers.

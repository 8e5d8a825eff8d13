"""Immutable snapshots of the loaded routing tables, and the store that swaps them.

A request reads ``store.current`` once and uses that snapshot to the end, so a reload
never changes routes under a request in flight: the new snapshot is built completely
and swapped in with one assignment. Everything a request needs per model is computed
here once per load (tiers, upstream URLs, the ``/v1/models`` answer).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from yarl import URL

from ballast.gateway.strategy import Router
from ballast.routing import RouteBackend, RouteLoadBalancing, RoutingTable

log = logging.getLogger(__name__)

#: The OpenAI paths the gateway forwards, relative to a backend's base URL.
FORWARDED_PATHS = ("/chat/completions", "/completions", "/embeddings")


@dataclass(frozen=True)
class Route:
    """One model's table with what the proxy needs precomputed."""

    table: RoutingTable
    router: Router
    #: backend name -> forwarded path -> upstream URL
    urls: Mapping[str, Mapping[str, URL]]
    #: The table's pod choice, defaults filled in.
    balancing: RouteLoadBalancing

    @classmethod
    def build(cls, table: RoutingTable) -> Route:
        urls = {b.name: _urls(b) for b in table.backends}
        return cls(table, Router(table), MappingProxyType(urls), table.balancing)


def _urls(backend: RouteBackend) -> Mapping[str, URL]:
    base = backend.url.rstrip("/")
    return MappingProxyType({p: URL(base + p) for p in FORWARDED_PATHS})


@dataclass(frozen=True)
class Snapshot:
    """Every model's route at one moment."""

    routes: Mapping[str, Route] = field(default_factory=lambda: MappingProxyType({}))
    #: The ``GET /v1/models`` body.
    models_body: bytes = b'{"object":"list","data":[]}'
    created: int = 0

    @property
    def loaded(self) -> bool:
        """True when at least one model is served."""
        return bool(self.routes)

    @classmethod
    def build(cls, tables: Iterable[RoutingTable], created: int | None = None) -> Snapshot:
        routes = {t.model: Route.build(t) for t in tables}
        stamp = int(time.time()) if created is None else created
        return cls(MappingProxyType(routes), _models_body(sorted(routes), stamp), stamp)


def _models_body(models: list[str], created: int) -> bytes:
    data = [{"id": m, "object": "model", "created": created, "owned_by": "ballast"} for m in models]
    return json.dumps({"object": "list", "data": data}).encode()


class TableStore:
    """Holds the current snapshot; sources call :meth:`replace` (or :meth:`failed`).

    ``ready`` turns true with the source's first complete load, even of zero tables (a
    cluster with no LLMService yet): from then on an unknown model is a 404, not a sign of
    a gateway that has not started. It never turns false again.
    """

    def __init__(self) -> None:
        self.current = Snapshot()
        self.ready = False
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._error_listeners: list[Callable[[str], None]] = []

    def subscribe(
        self,
        listener: Callable[[Snapshot], None],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Hear of every swap (and, with ``on_error``, of every table that failed to load)."""
        self._listeners.append(listener)
        if on_error is not None:
            self._error_listeners.append(on_error)

    def failed(self, message: str) -> None:
        """A source could not load tables; the current snapshot stays."""
        for listener in self._error_listeners:
            listener(message)

    def replace(self, tables: Iterable[RoutingTable], *, complete: bool = True) -> Snapshot:
        """Swap in a snapshot of ``tables`` (unchanged tables keep their prebuilt route).

        ``complete=False``: only part of the source has been read yet (not ready on its own).
        """
        old = self.current.routes
        routes: dict[str, Route] = {}
        for t in tables:
            prev = old.get(t.model)
            routes[t.model] = prev if prev is not None and prev.table == t else Route.build(t)
        stamp = self.current.created or int(time.time())
        snap = Snapshot(MappingProxyType(routes), _models_body(sorted(routes), stamp), stamp)
        self.current = snap
        self.ready = self.ready or complete
        for listener in self._listeners:
            listener(snap)
        log.info("routing tables loaded: %d model(s)", len(routes))
        return snap

"""In-cluster routing tables: follow ConfigMaps labelled ``ballast.dev/routes=true``.

One list+watch loop per namespace (or one cluster-wide): every event is applied at once,
so a change reaches requests within the watch latency. Each ConfigMap's ``routes.json``
is parsed on its own; a broken one is logged and its last good tables stay. When two
ConfigMaps serve the same model, the first by (namespace, name) wins and the conflict is
logged. On "410 Gone" the loop relists; on other errors it backs off (0.5 s doubling to
10 s) and relists. Only ``list`` and ``watch`` on ConfigMaps are used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ballast.gateway.kube import KubeApi, KubeError
from ballast.gateway.snapshot import TableStore
from ballast.naming import ROUTES_KEY, ROUTES_LABEL
from ballast.routing import RoutesError, RoutingTable, parse_tables

log = logging.getLogger(__name__)

MapKey = tuple[str, str]


class ConfigMapSource:
    """Keeps the store equal to the union of the routing ConfigMaps' tables."""

    def __init__(
        self,
        api: KubeApi,
        namespaces: Sequence[str] = (),
        *,
        max_backoff: float = 10.0,
    ) -> None:
        self.api = api
        self.scopes: list[str | None] = list(namespaces) or [None]
        self.selector = f"{ROUTES_LABEL}=true"
        self._store: TableStore | None = None
        self._max_backoff = max_backoff
        self._maps: dict[MapKey, list[RoutingTable]] = {}
        self._conflicts: list[str] = []

    async def run(self, store: TableStore) -> None:
        self._store = store
        await asyncio.gather(*(self._follow(scope, store) for scope in self.scopes))

    async def _follow(self, scope: str | None, store: TableStore) -> None:
        delay = 0.5
        while True:
            try:
                items, version = await self.api.list_configmaps(scope, self.selector)
                self._reset(scope, items)
                self._publish(store)
                delay = 0.5
                while True:
                    version = await self._watch(scope, version, store)
            except KubeError as e:
                if e.status == 410:
                    log.info("routing ConfigMaps: watch expired, relisting")
                    continue
                self._report(f"routing ConfigMaps ({scope or 'all namespaces'}): {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def _watch(self, scope: str | None, version: str, store: TableStore) -> str:
        async for event in self.api.watch_configmaps(scope, self.selector, version):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise KubeError(f"watch error: {obj.get('message', obj)}", int(obj.get("code", 0)))
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self._maps.pop(_key(obj), None)
            else:
                self._upsert(obj)
            self._publish(store)
        return version

    def _reset(self, scope: str | None, items: list[dict[str, Any]]) -> None:
        seen = {_key(obj) for obj in items}
        for key in list(self._maps):
            if (scope is None or key[0] == scope) and key not in seen:
                del self._maps[key]
        for obj in items:
            self._upsert(obj)

    def _upsert(self, obj: dict[str, Any]) -> None:
        key = _key(obj)
        text = (obj.get("data") or {}).get(ROUTES_KEY)
        source = f"configmap {key[0]}/{key[1]}"
        if text is None:
            self._report(f"{source}: no {ROUTES_KEY} key")
            self._maps.pop(key, None)
            return
        try:
            self._maps[key] = parse_tables(text, source)
        except RoutesError as e:
            kept = "keeping its last good tables" if key in self._maps else "ignored"
            self._report(f"{e}; {kept}")

    def _publish(self, store: TableStore) -> None:
        tables: dict[str, RoutingTable] = {}
        owners: dict[str, MapKey] = {}
        conflicts = []
        for key in sorted(self._maps):
            for table in self._maps[key]:
                if table.model in tables:
                    owner = "/".join(owners[table.model])
                    conflicts.append(
                        f"model {table.model}: {key[0]}/{key[1]} ignored, {owner} wins"
                    )
                    continue
                tables[table.model], owners[table.model] = table, key
        if conflicts != self._conflicts:
            for c in conflicts:
                self._report(f"routing ConfigMaps conflict: {c}")
            self._conflicts = conflicts
        store.replace(tables.values())

    def _report(self, message: str) -> None:
        log.error("%s", message)
        if self._store is not None:
            self._store.failed(message)


def _key(obj: dict[str, Any]) -> MapKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))

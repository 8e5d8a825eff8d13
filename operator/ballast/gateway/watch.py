"""In-cluster routing tables: follow ConfigMaps labelled ``ballast.dev/routes=true``.

One list+watch loop per namespace (or one cluster-wide): every event is applied at once,
so a change reaches requests within the watch latency. Each ConfigMap's ``routes.json``
is parsed on its own; a broken one is logged and its last good tables stay. On "410 Gone"
the loop relists; on any other error (API errors, malformed events, bugs) it logs, backs
off (0.5 s doubling to 10 s) and relists, so the loop never ends by itself. Only ``list``
and ``watch`` on ConfigMaps are used.

Trust: whoever can create a labelled ConfigMap in a watched namespace can serve models
there (restrict it with ``--namespace`` and RBAC), but not reach beyond that namespace.
A ConfigMap whose tables name another namespace (``source.namespace`` or a credential's
``secret.namespace``), or take a key from the gateway's own environment or files
(``env``/``file`` credentials are for local routes files only), is rejected like a broken
one. When two ConfigMaps serve the same model, the one already serving it keeps it;
otherwise the oldest (``creationTimestamp``, then namespace/name) wins. A newcomer never
takes a model over; the conflict is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ballast.gateway.kube import KubeApi, KubeError
from ballast.gateway.snapshot import TableStore
from ballast.naming import ROUTES_KEY, ROUTES_LABEL
from ballast.routing import RoutesError, RoutingTable, parse_tables

log = logging.getLogger(__name__)

MapKey = tuple[str, str]
#: Sorts after every RFC 3339 timestamp: a ConfigMap without one counts as the newest.
_NO_TIMESTAMP = "~"


@dataclass(frozen=True)
class _Map:
    """One routing ConfigMap's accepted tables."""

    tables: list[RoutingTable]
    created: str


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
        self._maps: dict[MapKey, _Map] = {}
        #: model -> the ConfigMap serving it (kept while that ConfigMap still serves it)
        self._owners: dict[str, MapKey] = {}
        self._conflicts: list[str] = []
        self._listed: set[str | None] = set()

    async def run(self, store: TableStore) -> None:
        self._store = store
        await asyncio.gather(*(self._follow(scope, store) for scope in self.scopes))

    async def _follow(self, scope: str | None, store: TableStore) -> None:
        delay = 0.5
        where = scope or "all namespaces"
        while True:
            try:
                items, version = await self.api.list_configmaps(scope, self.selector)
                self._reset(scope, items)
                self._listed.add(scope)
                self._publish(store)
                delay = 0.5
                while True:
                    version = await self._watch(scope, version, store)
            except asyncio.CancelledError:
                raise
            except KubeError as e:
                if e.status == 410:
                    log.info("routing ConfigMaps: watch expired, relisting")
                    continue
                self._report(f"routing ConfigMaps ({where}): {e}")
            except Exception as e:  # malformed data or a bug: never stop following
                log.exception("routing ConfigMaps (%s): unexpected error, relisting", where)
                self._report(f"routing ConfigMaps ({where}): unexpected {type(e).__name__}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _watch(self, scope: str | None, version: str, store: TableStore) -> str:
        async for event in self.api.watch_configmaps(scope, self.selector, version):
            if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                raise KubeError(f"malformed watch event: {str(event)[:200]}")
            kind, obj = event.get("type"), event["object"]
            if kind == "ERROR":
                raise KubeError(f"watch error: {obj.get('message', obj)}", _int(obj.get("code")))
            version = str((obj.get("metadata") or {}).get("resourceVersion", version))
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
        if not isinstance(text, str):
            self._report(f"{source}: no {ROUTES_KEY} key")
            self._maps.pop(key, None)
            return
        try:
            tables = parse_tables(text, source)
            for table in tables:
                _check_scope(table, key[0], source)
        except RoutesError as e:
            kept = "keeping its last good tables" if key in self._maps else "ignored"
            self._report(f"{e}; {kept}")
            return
        created = str((obj.get("metadata") or {}).get("creationTimestamp") or _NO_TIMESTAMP)
        self._maps[key] = _Map(tables, created)

    def _publish(self, store: TableStore) -> None:
        claims: dict[str, list[MapKey]] = {}
        for key, m in self._maps.items():
            for table in m.tables:
                claims.setdefault(table.model, []).append(key)
        tables: dict[str, RoutingTable] = {}
        owners: dict[str, MapKey] = {}
        conflicts = []
        for model, keys in sorted(claims.items()):
            keys.sort(key=lambda k: (self._maps[k].created, k))
            owner = self._owners.get(model)
            if owner not in keys:
                owner = keys[0]
            owners[model] = owner
            tables[model] = next(t for t in self._maps[owner].tables if t.model == model)
            for other in keys:
                if other != owner:
                    conflicts.append(
                        f"model {model} is served by configmap {'/'.join(owner)}; "
                        f"configmap {'/'.join(other)} also names it and is ignored for it"
                    )
        self._owners = owners
        if conflicts != self._conflicts:
            for c in conflicts:
                if c not in self._conflicts:
                    self._report(f"routing ConfigMaps conflict: {c}")
            self._conflicts = conflicts
        store.replace(tables.values(), complete=self._listed >= set(self.scopes))

    def _report(self, message: str) -> None:
        log.error("%s", message)
        if self._store is not None:
            self._store.failed(message)


def _check_scope(table: RoutingTable, namespace: str, source: str) -> None:
    """RoutesError unless ``table`` stays inside the ConfigMap's own ``namespace``."""
    where = f"{source}: table {table.model}"
    if table.source is not None and table.source.namespace != namespace:
        raise RoutesError(
            f"{where}: source namespace {table.source.namespace} is not the ConfigMap's"
        )
    for b in table.backends:
        creds = b.credentials
        if creds is None:
            continue
        if creds.secret is None:
            raise RoutesError(
                f"{where}: backend {b.name}: only Secret credentials are allowed in a ConfigMap"
            )
        if creds.secret.namespace != namespace:
            raise RoutesError(
                f"{where}: backend {b.name}: credentials Secret in namespace "
                f"{creds.secret.namespace}, not the ConfigMap's namespace {namespace}"
            )


def _key(obj: dict[str, Any]) -> MapKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0

"""The pods behind each backend Service, from its EndpointSlices (``discovery.k8s.io/v1``).

:class:`Endpoints` holds what the slices say; :meth:`Endpoints.pods` answers, for a
table's :class:`~ballast.routing.ServiceRef`, the ready pods to choose from, or None when
the gateway must use the Service URL instead: slices could not be read in that namespace
(no permission, API down before the first list) or the Service has no ready endpoint.
A ready endpoint (``conditions.ready`` true or unset, not ``terminating``) takes new
requests; a not-ready or terminating one takes none, while requests already sent to it
finish on their own connections. An endpoint listed in several slices counts once.
Listeners (:meth:`Endpoints.subscribe`) hear of every change as it is applied, with the
Service it touched (None: any Service), so requests held for a backend at zero
(:mod:`~ballast.gateway.hold`) are sent the moment a pod is ready, without polling.
:class:`Pod` objects are kept per address while the address stays listed, so their
in-flight counts and ejections survive slice updates.

:class:`SliceWatcher` keeps it current: one list+watch loop per namespace scope (the
gateway's ``--namespace`` list, or cluster-wide), for slices of Services Ballast made
(``kubernetes.io/service-name`` set and ``ballast.dev/backend``, which the EndpointSlice
controller copies from the Service's labels). It never stops by itself: errors back off
0.5 s doubling to 10 s, then relist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ballast.gateway.kube import KubeApi, KubeError
from ballast.gateway.pods import Pod, Ring
from ballast.naming import BACKEND_LABEL
from ballast.routing import ServiceRef

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SELECTOR = f"{SERVICE_NAME_LABEL},{BACKEND_LABEL}"

ServiceKey = tuple[str, str]
#: Called after a change with the (namespace, Service) it touched; None: possibly any.
Listener = Callable[[ServiceKey | None], None]


@dataclass(frozen=True)
class Endpoint:
    """One address of a slice, with the fields the choice needs."""

    address: str
    pod: str
    ready: bool


@dataclass(frozen=True)
class Slice:
    service: ServiceKey
    endpoints: tuple[Endpoint, ...]
    ports: dict[str, int]


class PodSet:
    """The ready pods of one Service port, and their ring (built on first use)."""

    def __init__(self, pods: Sequence[Pod]) -> None:
        self.pods = tuple(sorted(pods, key=lambda p: p.address))
        self._ring: Ring | None = None

    @property
    def ring(self) -> Ring:
        if self._ring is None:
            self._ring = Ring(self.pods)
        return self._ring


def parse_slice(obj: dict[str, Any]) -> Slice | None:
    """The parts of an EndpointSlice the gateway uses; None for one it cannot use (FQDN)."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    ports = {}
    for p in obj.get("ports") or []:
        if isinstance(p, dict) and isinstance(p.get("port"), int):
            ports[str(p.get("name") or "")] = p["port"]
    endpoints = []
    for e in obj.get("endpoints") or []:
        addresses = e.get("addresses") or []
        if not addresses:
            continue
        cond = e.get("conditions") or {}
        ready = cond.get("ready") is not False and cond.get("terminating") is not True
        pod = ((e.get("targetRef") or {}).get("name")) or addresses[0]
        endpoints.append(Endpoint(str(addresses[0]), str(pod), ready))
    return Slice((str(meta.get("namespace", "")), str(service)), tuple(endpoints), ports)


class Endpoints:
    """Every watched Service's slices, and the pod sets derived from them."""

    def __init__(self) -> None:
        #: namespace scope (None: cluster-wide) -> slices readable there
        self._readable: dict[str | None, bool] = {}
        self._slices: dict[ServiceKey, dict[str, Slice]] = {}
        self._sets: dict[tuple[str, str, str], PodSet | None] = {}
        self._known: dict[tuple[str, str, str], dict[str, Pod]] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Hear of every change of the slices (or of their readability), once applied."""
        self._listeners.append(listener)

    def _changed(self, service: ServiceKey | None) -> None:
        for listener in self._listeners:
            listener(service)

    def readable(self, namespace: str) -> bool:
        return bool(self._readable.get(namespace) or self._readable.get(None))

    def set_readable(self, scope: str | None, readable: bool) -> None:
        if self._readable.get(scope) != readable:
            self._readable[scope] = readable
            self._sets.clear()
            self._changed(None)

    def reset(self, scope: str | None, items: Sequence[dict[str, Any]]) -> None:
        """Replace every slice in ``scope`` with ``items`` (a fresh list)."""
        for service in [s for s in self._slices if scope is None or s[0] == scope]:
            del self._slices[service]
        for obj in items:
            self._store("ADDED", obj)
        self._sets.clear()
        self._changed(None)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) of a slice."""
        service = self._store(kind, obj)
        if service is not None:
            self._changed(service)

    def _store(self, kind: str, obj: dict[str, Any]) -> ServiceKey | None:
        parsed = parse_slice(obj)
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        if parsed is None:
            return None
        slices = self._slices.setdefault(parsed.service, {})
        if kind == "DELETED":
            slices.pop(name, None)
        else:
            slices[name] = parsed
        for key in [k for k in self._sets if (k[0], k[1]) == parsed.service]:
            del self._sets[key]
        return parsed.service

    def rows(self) -> Iterator[tuple[str, str, str, int, int]]:
        """(namespace, service, pod, requests, in flight) of every pod listed now (pod sets
        whose slices changed since the last request are brought up to date first)."""
        for key in list(self._known):
            self.pods(ServiceRef(namespace=key[0], name=key[1], port_name=key[2]))
            if not self._known[key]:
                del self._known[key]
        for (namespace, service, _), pods in self._known.items():
            if not self.readable(namespace):
                continue
            for p in pods.values():
                yield namespace, service, p.name, p.requests, p.in_flight

    def pods(self, ref: ServiceRef) -> PodSet | None:
        """The ready pods of ``ref``, or None: use the Service URL."""
        key = (ref.namespace, ref.name, ref.port_name)
        if key in self._sets:
            return self._sets[key]
        out = self._build(key) if self.readable(ref.namespace) else None
        self._sets[key] = out
        return out

    def _build(self, key: tuple[str, str, str]) -> PodSet | None:
        known = self._known.get(key, {})
        current: dict[str, Pod] = {}
        for sl in self._slices.get((key[0], key[1]), {}).values():
            port = sl.ports.get(key[2])
            if port is None and len(sl.ports) == 1:
                port = next(iter(sl.ports.values()))
            if port is None:
                continue
            for e in sl.endpoints:
                if not e.ready:
                    continue
                pod = Pod(e.pod, e.address, port)
                pod = known.get(pod.address, pod)
                current[pod.address] = pod
        self._known[key] = current
        return PodSet(list(current.values())) if current else None


class SliceWatcher:
    """Keeps an :class:`Endpoints` equal to the EndpointSlices of Ballast's Services."""

    def __init__(
        self,
        api: KubeApi,
        endpoints: Endpoints,
        namespaces: Sequence[str] = (),
        *,
        max_backoff: float = 10.0,
    ) -> None:
        self.api, self.endpoints = api, endpoints
        self.scopes: list[str | None] = list(namespaces) or [None]
        self._max_backoff = max_backoff
        self._said: dict[str | None, str] = {}

    async def run(self) -> None:
        await asyncio.gather(*(self._follow(scope) for scope in self.scopes))

    async def _follow(self, scope: str | None) -> None:
        delay = 0.5
        path = self.api.endpointslices_path(scope)
        while True:
            try:
                items, version = await self.api.list_objects(path, SELECTOR)
                self.endpoints.reset(scope, items)
                self.endpoints.set_readable(scope, True)
                self._say(scope, "", "EndpointSlices (%s): reading them again")
                delay = 0.5
                while True:
                    version = await self._watch(path, version)
            except asyncio.CancelledError:
                raise
            except KubeError as e:
                if e.status == 410:
                    continue
                self._failed(scope, str(e), f"HTTP {e.status}" if e.status else "no answer")
            except Exception as e:  # malformed data or a bug: never stop following
                log.exception("EndpointSlices (%s): unexpected error", scope or "all namespaces")
                self._failed(scope, f"unexpected {type(e).__name__}", type(e).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _watch(self, path: str, version: str) -> str:
        async for event in self.api.watch_objects(path, SELECTOR, version):
            if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                raise KubeError(f"malformed watch event: {str(event)[:200]}")
            kind, obj = event.get("type"), event["object"]
            if kind == "ERROR":
                code = obj.get("code")
                status = code if isinstance(code, int) else 0
                raise KubeError(f"watch error: {obj.get('message', obj)}", status)
            version = str((obj.get("metadata") or {}).get("resourceVersion", version))
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.endpoints.apply(str(kind), obj)
        return version

    def _failed(self, scope: str | None, message: str, cause: str) -> None:
        """A list failed (or a watch broke and the relist will tell): log once per cause."""
        if message.startswith("watch "):
            return  # the data stays; the relist decides whether slices are readable
        self.endpoints.set_readable(scope, False)
        text = "EndpointSlices (%s) cannot be read, using Service URLs until they can: "
        self._say(scope, cause, text + message.replace("%", "%%"))

    def _say(self, scope: str | None, state: str, text: str) -> None:
        if self._said.get(scope, "") != state:
            self._said[scope] = state
            (log.warning if state else log.info)(text, scope or "all namespaces")

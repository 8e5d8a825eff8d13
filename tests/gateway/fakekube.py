"""A tiny Kubernetes API server for the gateway's calls: list/watch ConfigMaps,
EndpointSlices and (labelled, in one namespace) Secrets, get Secrets.

Real HTTP on 127.0.0.1, bearer-token checked, with resourceVersions, label selectors,
namespace scoping, watch streams and "410 Gone" on demand. Every request is recorded so
tests can prove the gateway used nothing but what ``ballast.permissions.GATEWAY`` grants.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "gateway-sa-token"


@dataclass
class FakeKube:
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    slices: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: EndpointSlice lists and watches answer this status when it is not 200 (403: no RBAC).
    slices_status: int = 200
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: Whole Secret objects served to list/watch (client key Secrets).
    key_secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    version: int = 100
    expire_watches: bool = False
    #: Secret reads wait this long, then answer with ``secret_status`` when it is not 200.
    secret_delay: float = 0.0
    secret_status: int = 200
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> FakeKube:
        app = web.Application()
        app.router.add_get("/api/v1/configmaps", self._configmaps)
        app.router.add_get("/api/v1/namespaces/{ns}/configmaps", self._configmaps)
        app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", self._secret)
        app.router.add_get("/api/v1/namespaces/{ns}/secrets", self._secrets)
        root = "/apis/discovery.k8s.io/v1"
        app.router.add_get(root + "/endpointslices", self._slices)
        app.router.add_get(root + "/namespaces/{ns}/endpointslices", self._slices)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def put_configmap(
        self, ns: str, name: str, data: dict[str, str], labels: dict[str, str]
    ) -> None:
        old = self.configmaps.get((ns, name))
        kind = "MODIFIED" if old is not None else "ADDED"
        self.version += 1
        created = (
            old["metadata"]["creationTimestamp"] if old is not None else _timestamp(self.version)
        )
        obj = {"metadata": {"namespace": ns, "name": name, "labels": labels,
                            "resourceVersion": str(self.version),
                            "creationTimestamp": created}, "data": data}  # fmt: skip
        self.configmaps[(ns, name)] = obj
        await self._emit(kind, obj)

    async def put_slice(
        self, ns: str, name: str, service: str, port: int, endpoints: list[dict[str, Any]]
    ) -> None:
        """An EndpointSlice of ``service`` with one port ``http``; ``endpoints`` as in the API."""
        kind = "MODIFIED" if (ns, name) in self.slices else "ADDED"
        self.version += 1
        labels = {"kubernetes.io/service-name": service, "ballast.dev/backend": service}
        obj = {"kind": "EndpointSlice", "addressType": "IPv4", "endpoints": endpoints,
               "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
               "metadata": {"namespace": ns, "name": name, "labels": labels,
                            "resourceVersion": str(self.version)}}  # fmt: skip
        self.slices[(ns, name)] = obj
        await self._emit(kind, obj)

    async def put_key_secret(
        self, ns: str, name: str, data: dict[str, str], labels: dict[str, str]
    ) -> None:
        """A Secret (``data`` in clear, stored base64) seen by list and watch."""
        kind = "MODIFIED" if (ns, name) in self.key_secrets else "ADDED"
        self.version += 1
        obj = {"kind": "Secret", "type": "Opaque",
               "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
               "metadata": {"namespace": ns, "name": name, "labels": labels,
                            "resourceVersion": str(self.version)}}  # fmt: skip
        self.key_secrets[(ns, name)] = obj
        await self._emit(kind, obj)

    async def delete_key_secret(self, ns: str, name: str) -> None:
        obj = self.key_secrets.pop((ns, name))
        self.version += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        await self._emit("DELETED", obj)

    async def delete_configmap(self, ns: str, name: str) -> None:
        obj = self.configmaps.pop((ns, name))
        self.version += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        await self._emit("DELETED", obj)

    async def emit_raw(self, line: bytes) -> None:
        """Send ``line`` as-is to every watch (a malformed event)."""
        self.version += 1
        await self._emit("RAW", {"raw": line.decode()})

    def put_secret(self, ns: str, name: str, data: dict[str, str]) -> None:
        self.secrets[(ns, name)] = {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()
        }

    async def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((self.version, kind, obj))
        async with self._changed:
            self._changed.notify_all()

    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.method, request.path, dict(request.query)))
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    @staticmethod
    def _matches(obj: dict[str, Any], ns: str | None, selector: str) -> bool:
        labels = obj["metadata"].get("labels") or {}
        for term in selector.split(","):
            key, eq, value = term.partition("=")
            if (labels.get(key) != value) if eq else (key not in labels):
                return False
        return ns is None or obj["metadata"]["namespace"] == ns

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"code": 401}, status=401)
        return await self._collection(request, self.configmaps, "ConfigMap")

    async def _secrets(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"code": 401}, status=401)
        return await self._collection(request, self.key_secrets, "Secret")

    async def _slices(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"code": 401}, status=401)
        if self.slices_status != 200:
            return web.json_response({"code": self.slices_status}, status=self.slices_status)
        return await self._collection(request, self.slices, "EndpointSlice")

    async def _collection(
        self, request: web.Request, objects: dict[tuple[str, str], dict[str, Any]], kind: str
    ) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        selector = request.query.get("labelSelector", "")
        if request.query.get("watch") in ("1", "true"):
            since = int(request.query["resourceVersion"])
            return await self._watch(request, ns, selector, since, kind)
        items = [o for o in objects.values() if self._matches(o, ns, selector)]
        return web.json_response(
            {"items": items, "metadata": {"resourceVersion": str(self.version)}}
        )

    async def _watch(
        self, request: web.Request, ns: str | None, selector: str, since: int, resource: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        if self.expire_watches:
            gone = {
                "type": "ERROR",
                "object": {"kind": "Status", "code": 410, "message": "too old"},
            }
            await resp.write(json.dumps(gone).encode() + b"\n")
            return resp
        while True:
            for version, kind, obj in list(self.events):
                if version > since and kind == "RAW":
                    await resp.write(obj["raw"].encode() + b"\n")
                elif (
                    version > since
                    and obj.get("kind", "ConfigMap") == resource
                    and self._matches(obj, ns, selector)
                ):
                    await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                since = max(since, version)
            async with self._changed:
                await self._changed.wait()

    async def _secret(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": 401}, status=401)
        if self.secret_delay:
            await asyncio.sleep(self.secret_delay)
        if self.secret_status != 200:
            return web.json_response({"code": self.secret_status}, status=self.secret_status)
        data = self.secrets.get((request.match_info["ns"], request.match_info["name"]))
        if data is None:
            return web.json_response({"code": 404}, status=404)
        return web.json_response({"kind": "Secret", "data": data})


def _timestamp(seconds: int) -> str:
    """An RFC 3339 creationTimestamp ``seconds`` after a fixed epoch (ordered like versions)."""
    stamp = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")

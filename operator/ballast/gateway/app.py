"""The gateway application: built by :func:`create_app` from a config and a table source.

All state (table store, breakers, credentials, metrics, the upstream client) is made
here and hung on the app; there are no module-level singletons, so tests and benchmarks
can run several gateways in one process. One upstream client is shared by all requests:
pooled keep-alive connections, bodies passed through byte for byte (no decompression),
see :mod:`ballast.gateway.h1`. Lifecycle (client, Kubernetes client, table source task)
runs in a cleanup context, so shutdown first drains in-flight requests, then closes
them. ``/metrics`` and the demand report (``/internal/demand``, read by the operator) are
served by a separate app (:func:`metrics_app`) on a port of its own, never on the API port. With client authentication, ``/v1/*`` needs a key (see
:mod:`~ballast.gateway.keys`); ``/healthz`` and ``/readyz`` never do. Every answer's
``Server`` header is ``ballast``, without versions, and every answer carries the request's
``X-Request-Id`` (see :mod:`~ballast.gateway.access`). Start apps with
:mod:`~ballast.gateway.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from yarl import URL

from ballast.gateway import errors
from ballast.gateway.access import REQUEST_ID_HEADER, AccessLog, request_id
from ballast.gateway.balancer import Balancer
from ballast.gateway.breaker import BreakerBoard, Clock
from ballast.gateway.coldstart import COLD_START
from ballast.gateway.config import GatewayConfig
from ballast.gateway.credentials import Credentials
from ballast.gateway.demand import DemandBoard
from ballast.gateway.endpoints import Endpoints, SliceWatcher
from ballast.gateway.h1 import Pool
from ballast.gateway.hold import Holds
from ballast.gateway.keys import ClientKey, Denial, KeyRing, KeyWatcher
from ballast.gateway.kube import KubeApi
from ballast.gateway.metrics import Metrics
from ballast.gateway.proxy import REQUEST_ID, Proxy
from ballast.gateway.snapshot import FORWARDED_PATHS, Snapshot, TableStore
from ballast.gateway.sources import TableSource
from ballast.gateway.upstream import UpstreamClient, UpstreamResponse
from ballast.routing.demand import DEMAND_PATH

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything one gateway app holds."""

    config: GatewayConfig
    store: TableStore
    board: BreakerBoard
    metrics: Metrics
    credentials: Credentials
    client: UpstreamClient | None = None
    #: The pods behind each backend Service (None: every backend through its table URL).
    endpoints: Endpoints | None = None
    #: Client keys; None when client authentication is off.
    keys: KeyRing | None = None
    #: Demand per backend for the operator's report (held, in flight, requests).
    demand: DemandBoard = field(default_factory=DemandBoard)
    #: Requests held for backends at zero.
    holds: Holds | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def upstream(self) -> UpstreamClient:
        if self.client is None:
            raise RuntimeError("the gateway's upstream client is not open (app not started)")
        return self.client


GATEWAY = web.AppKey("ballast_gateway", Gateway)


def create_app(
    config: GatewayConfig,
    tables: TableSource,
    *,
    kube: KubeApi | None = None,
    credentials: Credentials | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    registry: CollectorRegistry | None = None,
    endpoints: Endpoints | None = None,
    slices: SliceWatcher | None = None,
    keys: KeyRing | None = None,
    name: str | None = None,
) -> web.Application:
    """A gateway app serving the tables ``tables`` provides (nothing runs until started).

    Pods are chosen from ``endpoints`` (kept current by ``slices`` when given, which then
    runs with the app); without it every backend is reached through its table URL. With
    ``config.auth_namespace`` set, clients need a key: from ``keys`` when given (tests),
    else from that namespace's key Secrets, watched through ``kube``. ``name`` is the
    gateway's name in its demand report (default: ``$POD_NAME``, ``$HOSTNAME``, the host
    name). Requests wait for backends at zero only with ``endpoints`` (the slice events
    release them); ``config.hold_keepalive_seconds`` paces a held stream's keep-alives.
    """
    if config.auth_namespace is not None and keys is None:
        if kube is None:
            raise ValueError("client authentication needs the Kubernetes API (key Secrets)")
        keys = KeyRing()
    metrics = Metrics(registry)
    if endpoints is not None:
        metrics.watch_pods(endpoints.rows)
    store = TableStore()
    board = BreakerBoard(clock, metrics.breaker_changed)
    store.subscribe(
        lambda snap: _tables_changed(snap, board, metrics),
        on_error=lambda _message: metrics.reload_errors.inc(),
    )
    creds = credentials or Credentials(kube, ttl=config.secret_ttl)
    demand = DemandBoard(name)
    holds = Holds(endpoints, metrics)
    gw = Gateway(
        config, store, board, metrics, creds, endpoints=endpoints, keys=keys, demand=demand,
        holds=holds,
    )  # fmt: skip
    if keys is not None:
        ring = keys
        metrics.client_keys.set_function(lambda: len(ring))
    proxy = Proxy(
        store=store,
        board=board,
        credentials=creds,
        metrics=metrics,
        client=gw.upstream,
        balancer=Balancer(endpoints, metrics, rng or random.Random(), clock),
        rng=rng or random.Random(),
        buffer_limit=config.buffer_response_bytes,
        max_body_bytes=config.max_body_bytes,
        body_timeout=config.body_timeout,
        keys=keys,
        access=AccessLog(config.access_log, config.access_log_sample),
        holds=holds,
        demand=demand,
        hold_keepalive=config.hold_keepalive_seconds,
    )
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_openai_errors])
    app[GATEWAY] = gw
    for path in FORWARDED_PATHS:
        app.router.add_post("/v1" + path, proxy.handle)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model:.+}", _model)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.on_response_prepare.append(_default_headers)
    watcher = None
    if keys is not None and kube is not None and config.auth_namespace is not None:
        watcher = KeyWatcher(kube, keys, config.auth_namespace)
    app.cleanup_ctx.append(_lifecycle(gw, tables, kube, slices, watcher))
    access = proxy.access

    async def _flush_access(_: web.Application) -> None:
        if access.sink is not None:
            access.sink.flush()  # the last access lines, drained requests' included

    app.on_cleanup.append(_flush_access)
    return app


def metrics_app(gw: Gateway) -> web.Application:
    """The metrics listener's app: ``GET /metrics`` and the demand report."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics_of(gw))
    app.router.add_get(DEMAND_PATH, _demand_of(gw))
    app.on_response_prepare.append(_server_header)
    return app


def _tables_changed(snap: Snapshot, board: BreakerBoard, metrics: Metrics) -> None:
    board.sync(
        (model, b.name, r.table.fallback.circuit_breaker.consecutive_failures,
         r.table.fallback.circuit_breaker.open_seconds)
        for model, r in snap.routes.items()
        for b in r.table.backends
    )  # fmt: skip
    metrics.models.set(len(snap.routes))


class SchemeClient:
    """``auto``: the lean h1 client for plain-HTTP backends (in-cluster engines, the hot path)
    and aiohttp's for HTTPS ones (external APIs: proxies from the environment, mature TLS)."""

    def __init__(self, plain: UpstreamClient, tls: UpstreamClient) -> None:
        self.plain, self.tls = plain, tls

    async def post(
        self,
        url: URL,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        connect_timeout: float | None = None,
    ) -> UpstreamResponse:
        client = self.tls if url.scheme == "https" else self.plain
        return await client.post(url, body, headers, connect_timeout)

    async def close(self) -> None:
        await self.plain.close()
        await self.tls.close()


def upstream_client(config: GatewayConfig) -> UpstreamClient:
    """The shared, pooled upstream client the config names (h1, aiohttp or auto)."""
    if config.upstream_client not in ("auto", "h1", "aiohttp"):
        raise ValueError(
            f"unknown upstream client {config.upstream_client!r} (auto, h1 or aiohttp)"
        )
    if config.upstream_client == "h1":
        return Pool(keepalive=config.upstream_keepalive)
    from ballast.gateway.aioclient import AiohttpClient

    tls = AiohttpClient(keepalive=config.upstream_keepalive)
    if config.upstream_client == "aiohttp":
        return tls
    return SchemeClient(Pool(keepalive=config.upstream_keepalive), tls)


def _lifecycle(
    gw: Gateway,
    tables: TableSource,
    kube: KubeApi | None,
    slices: SliceWatcher | None,
    watcher: KeyWatcher | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        gw.client = upstream_client(gw.config)
        if kube is not None:
            await kube.start()
        task = asyncio.create_task(_run_source(tables, gw.store), name="ballast-tables")
        gw.tasks.append(task)
        if slices is not None:
            gw.tasks.append(asyncio.create_task(slices.run(), name="ballast-endpointslices"))
        if watcher is not None:
            gw.tasks.append(asyncio.create_task(watcher.run(), name="ballast-client-keys"))
        try:
            yield
        finally:
            for t in gw.tasks:
                t.cancel()
            for t in gw.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):  # logged if it died
                    await t
            await gw.client.close()
            await gw.credentials.close()
            if kube is not None:
                await kube.close()

    return lifecycle


async def _run_source(tables: TableSource, store: TableStore) -> None:
    try:
        await tables.run(store)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the routing table source stopped")
        raise


@web.middleware
async def _openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own 404/405/... as OpenAI error bodies."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return errors.error_response(e.status, e.reason, code=e.reason.lower().replace(" ", "_"))


async def _default_headers(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID)
    if rid is None:  # not a forwarded path (models, health, 404): an id all the same
        rid = request[REQUEST_ID] = request_id(request.headers.get(REQUEST_ID_HEADER))
    response.headers[REQUEST_ID_HEADER] = rid
    if errors.BACKEND_HEADER not in response.headers:
        response.headers[errors.BACKEND_HEADER] = errors.NO_BACKEND
        response.headers[errors.ATTEMPTS_HEADER] = "0"
    if request.get(COLD_START):
        response.headers[errors.COLD_START_HEADER] = "true"
    response.headers["Server"] = "ballast"


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "ballast"


def _client(request: web.Request) -> ClientKey | web.Response | None:
    """The request's client key (None without authentication), or its 401 answer."""
    gw = request.app[GATEWAY]
    if gw.keys is None:
        return None
    found = gw.keys.authenticate(request.headers.get("Authorization"))
    if isinstance(found, Denial):
        gw.metrics.auth_denied(found.reason)
        response = errors.error_response(found.status, found.message, code=found.code)
        response.headers["WWW-Authenticate"] = 'Bearer realm="ballast"'
        return response
    return found


async def _models(request: web.Request) -> web.Response:
    client = _client(request)
    if isinstance(client, web.Response):
        return client
    gw = request.app[GATEWAY]
    snap = gw.store.current
    if client is None or client.models is None or gw.keys is None:
        return web.Response(body=snap.models_body, content_type="application/json")
    data = [
        {"id": m, "object": "model", "created": snap.created, "owned_by": "ballast"}
        for m in gw.keys.allowed_models(client, sorted(snap.routes))
    ]
    return web.json_response({"object": "list", "data": data})


async def _model(request: web.Request) -> web.Response:
    client = _client(request)
    if isinstance(client, web.Response):
        return client
    snap = request.app[GATEWAY].store.current
    model = request.match_info["model"]
    if model not in snap.routes or (client is not None and client.models is not None
                                    and model not in client.models):  # fmt: skip
        return errors.error_response(
            404, f"The model `{model}` does not exist", code="model_not_found", param="model"
        )
    body = {"id": model, "object": "model", "created": snap.created, "owned_by": "ballast"}
    return web.json_response(body)


async def _healthz(request: web.Request) -> web.Response:
    """200 while the gateway works; 503 once its table source died (the kubelet restarts it)."""
    for task in request.app[GATEWAY].tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return web.json_response(
                {"status": f"{task.get_name()} stopped: {type(task.exception()).__name__}"},
                status=503,
            )
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """200 once the table source loaded for the first time (zero tables included) and, with
    client authentication, the key Secrets were listed (until then every key is refused)."""
    gw = request.app[GATEWAY]
    store = gw.store
    if gw.keys is not None and not gw.keys.ready:
        return web.json_response({"status": "client keys not read yet"}, status=503)
    if store.ready:
        return web.json_response({"status": "ready", "models": len(store.current.routes)})
    return web.json_response({"status": "routing tables not read yet"}, status=503)


def _metrics_of(gw: Gateway) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        body = gw.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def _demand_of(gw: Gateway) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def demand(request: web.Request) -> web.Response:
        report = gw.demand.report(gw.store.current.routes, gw.board)
        return web.json_response(report.to_json())

    return demand

"""The gateway application: built by :func:`create_app` from a config and a table source.

All state (table store, breakers, credentials, metrics, the upstream client) is made
here and hung on the app; there are no module-level singletons, so tests and benchmarks
can run several gateways in one process. One upstream client is shared by all requests:
pooled keep-alive connections, bodies passed through byte for byte (no decompression),
see :mod:`ballast.gateway.h1`. Lifecycle (client, Kubernetes client, table source task)
runs in a cleanup context, so ``GracefulExit`` first drains in-flight requests, then
closes them.
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
from ballast.gateway.balancer import Balancer
from ballast.gateway.breaker import BreakerBoard, Clock
from ballast.gateway.config import GatewayConfig
from ballast.gateway.credentials import Credentials
from ballast.gateway.endpoints import Endpoints, SliceWatcher
from ballast.gateway.h1 import Pool
from ballast.gateway.kube import KubeApi
from ballast.gateway.metrics import Metrics
from ballast.gateway.proxy import Proxy
from ballast.gateway.snapshot import FORWARDED_PATHS, Snapshot, TableStore
from ballast.gateway.sources import TableSource
from ballast.gateway.upstream import UpstreamClient, UpstreamResponse

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
) -> web.Application:
    """A gateway app serving the tables ``tables`` provides (nothing runs until started).

    Pods are chosen from ``endpoints`` (kept current by ``slices`` when given, which then
    runs with the app); without it every backend is reached through its table URL.
    """
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
    gw = Gateway(config, store, board, metrics, creds, endpoints=endpoints)
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
    )
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_openai_errors])
    app[GATEWAY] = gw
    for path in FORWARDED_PATHS:
        app.router.add_post("/v1" + path, proxy.handle)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model:.+}", _model)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_response_prepare.append(_default_headers)
    app.cleanup_ctx.append(_lifecycle(gw, tables, kube, slices))
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
        self, url: URL, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> UpstreamResponse:
        client = self.tls if url.scheme == "https" else self.plain
        return await client.post(url, body, headers)

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
    gw: Gateway, tables: TableSource, kube: KubeApi | None, slices: SliceWatcher | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        gw.client = upstream_client(gw.config)
        if kube is not None:
            await kube.start()
        task = asyncio.create_task(_run_source(tables, gw.store), name="ballast-tables")
        gw.tasks.append(task)
        if slices is not None:
            gw.tasks.append(asyncio.create_task(slices.run(), name="ballast-endpointslices"))
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
    if errors.BACKEND_HEADER not in response.headers:
        response.headers[errors.BACKEND_HEADER] = errors.NO_BACKEND
        response.headers[errors.ATTEMPTS_HEADER] = "0"


async def _models(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].store.current.models_body
    return web.Response(body=body, content_type="application/json")


async def _model(request: web.Request) -> web.Response:
    snap = request.app[GATEWAY].store.current
    model = request.match_info["model"]
    if model not in snap.routes:
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
    """200 once the table source loaded for the first time (zero tables included)."""
    store = request.app[GATEWAY].store
    if store.ready:
        return web.json_response({"status": "ready", "models": len(store.current.routes)})
    return web.json_response({"status": "routing tables not read yet"}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

"""Serving a gateway app: listeners, the connection bound, the server's own log, shutdown.

:func:`start` runs the API app on its port and the metrics app (``/metrics`` only) on a
port of its own, with the server settings the gateway relies on:

- ``handler_cancellation``: a client that disconnects cancels its request's handler, so the
  upstream request is closed at once and no further attempt is made;
- ``auto_decompress=False``: request bodies are inflated by :mod:`~ballast.gateway.intake`,
  incrementally and within the body limit, never by aiohttp as a whole;
- a bound on client connections per process (:class:`BoundedSite`): past it a new
  connection gets ``503`` with an OpenAI error body and is closed;
- the server's log (:class:`ServerLog`): a malformed request (bad request line, smuggling
  headers, oversized fields) is logged as at most one line per second, with the peer and the
  error class but never the raw bytes (they may hold a client's ``Authorization``), and
  counted in ``ballast_gateway_malformed_requests_total``.

``ballast gateway`` and the tests both start gateways through here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ballast.gateway import errors
from ballast.gateway.app import GATEWAY, metrics_app
from ballast.gateway.metrics import Metrics

log = logging.getLogger("ballast.gateway.server")

_REFUSAL_BODY = errors.error_body(
    "the gateway has too many open connections; retry shortly",
    errors.SERVER_ERROR,
    "too_many_connections",
)
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nServer: ballast\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n\r\n".encode()
    + _REFUSAL_BODY
)


class _Refuse(asyncio.Protocol):
    """A connection over the bound: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(_REFUSAL)
        transport.close()


class _Handler(RequestHandler):
    """aiohttp's connection handler, answering what never reached the app (malformed HTTP,
    a crash) in OpenAI shape with ``Server: ballast`` instead of versioned plain text."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent; cannot send the error")
        if isinstance(exc, HttpProcessingError):
            body = errors.error_body(
                f"malformed HTTP request ({type(exc).__name__})",
                errors.INVALID_REQUEST,
                "malformed_request",
            )
        else:
            body = errors.error_body("internal error", errors.SERVER_ERROR, "internal_error")
        response = web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers={"Server": "ballast", errors.BACKEND_HEADER: errors.NO_BACKEND},
        )
        response.force_close()
        return response


def _handler(server: web.Server) -> RequestHandler:
    """A connection handler as ``server()`` makes one, of the gateway's class. (aiohttp has
    no public hook for the class; ``_loop`` and ``_kwargs`` are what ``Server.__call__``
    passes. tests/gateway/test_limits.py fails should that change.)"""
    return _Handler(server, loop=server._loop, **server._kwargs)


class BoundedSite(web.TCPSite):
    """A TCP listener that serves at most ``limit`` client connections at a time."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limit: int) -> None:
        super().__init__(runner, host, port)
        self.limit = limit
        self.refused = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= self.limit:
                self.refused += 1
                return _Refuse()
            return _handler(server)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


class ServerLog:
    """The logger aiohttp's server writes to: malformed requests in one line, no raw bytes."""

    def __init__(self, metrics: Metrics, interval: float = 1.0) -> None:
        self.metrics, self.interval = metrics, interval
        self._last = -interval
        self._quiet = 0

    def _malformed(self, peer: object, exc: HttpProcessingError) -> None:
        self.metrics.malformed.inc()
        now = time.monotonic()
        if now - self._last < self.interval:
            self._quiet += 1
            return
        self._last, quiet = now, self._quiet
        self._quiet = 0
        more = f" ({quiet} more since the last line)" if quiet else ""
        log.warning(
            "malformed HTTP request from %s refused: %s (HTTP %s)%s",
            peer, type(exc).__name__, exc.code, more,
        )  # fmt: skip

    def _report(self, level: int, msg: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._malformed(args[0] if args else "?", exc)
            return
        log.log(level, msg, *args, **kw)

    def exception(self, msg: str, *args: Any, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._report(logging.ERROR, msg, args, kw)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        self._report(logging.ERROR, msg, args, kw)

    def warning(self, msg: str, *args: Any, **kw: Any) -> None:
        self._report(logging.WARNING, msg, args, kw)

    def info(self, msg: str, *args: Any, **kw: Any) -> None:
        self._report(logging.INFO, msg, args, kw)

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        self._report(logging.DEBUG, msg, args, kw)

    def isEnabledFor(self, level: int) -> bool:
        return log.isEnabledFor(level)


@dataclass
class Running:
    """A started gateway: its runners and the addresses they listen on."""

    api: web.AppRunner
    site: BoundedSite
    metrics: web.AppRunner | None

    @property
    def port(self) -> int:
        return int(self.api.addresses[0][1])

    @property
    def metrics_port(self) -> int | None:
        return int(self.metrics.addresses[0][1]) if self.metrics is not None else None

    async def stop(self) -> None:
        if self.metrics is not None:
            await self.metrics.cleanup()
        await self.api.cleanup()


async def start(app: web.Application, shutdown_timeout: float = 30.0) -> Running:
    """Start ``app`` (and its metrics listener) as its config says; stop with ``stop()``."""
    gw = app[GATEWAY]
    config = gw.config
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=True,
        auto_decompress=False,
        logger=ServerLog(gw.metrics),
    )
    await runner.setup()
    site = BoundedSite(runner, config.host, config.port, config.max_connections)
    await site.start()
    metrics_runner = None
    if config.metrics_port is not None:
        metrics_runner = web.AppRunner(metrics_app(gw), access_log=None, shutdown_timeout=1)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, config.host, config.metrics_port).start()
    return Running(runner, site, metrics_runner)


async def serve(app: web.Application, shutdown_timeout: float) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight requests (``shutdown_timeout``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(app, shutdown_timeout)
    gw = app[GATEWAY]
    log.info(
        "gateway listening on %s:%d (metrics on %s, at most %d connections, %s loop)",
        gw.config.host, running.port, running.metrics_port or "no port",
        gw.config.max_connections, type(loop).__module__,
    )  # fmt: skip
    try:
        await stop.wait()
        log.info("stopping: draining in-flight requests (at most %gs)", shutdown_timeout)
    finally:
        await running.stop()

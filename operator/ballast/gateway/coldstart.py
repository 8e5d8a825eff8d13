"""The proxy's side of holding a request for a backend at zero.

:class:`ColdStart` puts a request in its backend's hold queue (:mod:`~ballast.gateway.hold`)
and answers it when the hold ends without a pod: ``503 hold_queue_full`` with
``Retry-After`` when the queue is full, ``504 cold_start_timeout`` past
``hold.timeoutSeconds``. A streaming request that waits longer than the keep-alive
interval is committed as a ``200`` event stream with ``: keep-alive`` comments, and from
then on every end of it is written into that stream (:func:`answer_error`). A request
that waited is marked (:data:`COLD_START`) so its answer carries ``x-ballast-cold-start``.
It also keeps the demand counts' request counter: once per request and backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ballast.gateway import errors
from ballast.gateway.delivery import end_stream, error_event
from ballast.gateway.demand import Counts, DemandBoard
from ballast.gateway.hold import Holds, Wait
from ballast.gateway.record import Context, Record
from ballast.routing import RouteBackend

#: Set on a request that waited for a backend at zero (its answer says so in a header).
COLD_START = web.RequestKey("ballast_cold_start", bool)
KEEP_ALIVE = b": keep-alive\n\n"
#: ``Retry-After`` (seconds) of a request refused because its backend's hold queue is full.
HOLD_RETRY_AFTER = 5

#: How a request's end is recorded (:meth:`~ballast.gateway.proxy.Proxy.end`).
End = Callable[[Record, int, str], None]


class ColdStart:
    """Holding for one proxy."""

    def __init__(self, holds: Holds, demand: DemandBoard, end: End, keepalive: float) -> None:
        self.holds, self.demand, self.end, self.keepalive = holds, demand, end, keepalive

    async def hold(self, ctx: Context, backend: RouteBackend) -> web.StreamResponse | None:
        """Hold the request for ``backend``'s first ready pod: None once one is there, else
        the answer given (queue full, timed out, or the client left during a keep-alive)."""
        table, record = ctx.route.table, ctx.record
        record.backend = backend.name
        counts = self.demand.counts(table.source, backend.name)
        tick = self._keep_alive(ctx, backend) if record.stream else None
        began = time.perf_counter()
        try:
            ended, waited = await self.holds.wait(
                table.model, backend, counts, joined=lambda: self.count(ctx, backend),
                tick=tick, interval=self.keepalive,
            )  # fmt: skip
        except asyncio.CancelledError:  # the client left: its access line says how long
            record.held = time.perf_counter() - began
            raise
        except ConnectionError:  # a keep-alive found the client gone
            record.held = time.perf_counter() - began
            self.end(record, 499, "client_closed")
            return ctx.early
        if ended is Wait.RELEASED:
            record.held = waited
            ctx.request[COLD_START] = True
            return None
        hold = backend.hold
        limit = hold.max_pending if hold is not None else 0
        if ended is Wait.FULL:
            response = errors.error_response(
                503,
                f"model {table.model}: backend {backend.name} is starting and {limit} "
                "request(s) already wait for it; retry shortly",
                type_=errors.SERVER_ERROR, code="hold_queue_full", backend=backend.name,
            )  # fmt: skip
            response.headers["Retry-After"] = str(HOLD_RETRY_AFTER)
            return await answer_error(ctx, response, self.end, "unavailable")
        record.held = waited
        ctx.request[COLD_START] = True
        response = errors.error_response(
            504,
            f"model {table.model}: backend {backend.name} had no ready pod within "
            f"{hold.timeout_seconds if hold is not None else 0}s",
            type_=errors.SERVER_ERROR, code="cold_start_timeout", backend=backend.name,
        )  # fmt: skip
        return await answer_error(ctx, response, self.end, "timeout")

    def _keep_alive(self, ctx: Context, backend: RouteBackend) -> Callable[[], Awaitable[None]]:
        """A held stream's keep-alive: the first commits a 200 event stream to the client."""

        async def tick() -> None:
            if ctx.early is None:
                ctx.request[COLD_START] = True
                out = web.StreamResponse(status=200, headers={
                    "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                    errors.BACKEND_HEADER: backend.name, errors.ATTEMPTS_HEADER: "0",
                })  # fmt: skip
                await out.prepare(ctx.request)
                ctx.early = out
            await ctx.early.write(KEEP_ALIVE)

        return tick

    def count(self, ctx: Context, backend: RouteBackend) -> Counts:
        """The backend's demand counts, its request counter moved once per request."""
        counts = self.demand.counts(ctx.route.table.source, backend.name)
        if backend.name not in ctx.counted:
            ctx.counted.add(backend.name)
            counts.requests += 1
        return counts


async def answer_error(
    ctx: Context, response: web.Response, end: End, outcome: str
) -> web.StreamResponse:
    """End the request with the gateway's error answer ``response``: as it is, or as an
    SSE error event when a held stream's answer was committed already."""
    end(ctx.record, response.status, outcome)
    early = ctx.early
    if early is None:
        return response
    body = response.body if isinstance(response.body, bytes) else None
    await end_stream(ctx.request, early, error_event(response.status, body))
    return early

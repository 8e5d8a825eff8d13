"""Passing a committed upstream answer to the client, chunk by chunk.

A buffered answer goes out in one response. A streaming one is prepared with the
upstream's status and headers, then every chunk is written as it arrives (``write``
waits for the client to drain, so a slow client slows the upstream read instead of
filling memory). If the upstream breaks off, a server-sent-event stream gets a final
``data: {"error": ...}`` event (the OpenAI SDK raises ``APIError`` on it) and any other
body has its connection aborted, so the client sees an incomplete response rather than a
short one that looks whole. A client that goes away closes the upstream request at once,
even while the upstream is quiet (the server cancels the handler on disconnect).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from ballast.gateway import errors
from ballast.gateway.h1 import UpstreamError
from ballast.gateway.upstream import Answer, UpstreamResponse, response_headers


class Finish(Protocol):
    backend: str
    attempts: int

    def first_byte(self) -> None: ...

    def done(self, outcome: str) -> None: ...


def outcome_of(status: int) -> str:
    """The ``outcome`` label of an answer passed through with ``status``."""
    return "ok" if status < 400 else "client_error"


async def deliver(request: web.Request, answer: Answer, finish: Finish) -> web.StreamResponse:
    """Send ``answer`` to the client; report the first byte and the outcome to ``finish``."""
    upstream = answer.response
    headers = response_headers(upstream.headers)
    headers[errors.BACKEND_HEADER] = finish.backend
    headers[errors.ATTEMPTS_HEADER] = str(finish.attempts)
    if answer.body is not None:
        finish.first_byte()
        finish.done(outcome_of(upstream.status))
        return web.Response(status=upstream.status, body=answer.body, headers=headers)
    out = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    outcome = "client_closed"
    try:
        await out.prepare(request)
        await out.write(answer.first)
        finish.first_byte()
        outcome = await _pump(upstream, out)
    except ConnectionError:
        pass  # the client went away; outcome stays client_closed
    except asyncio.CancelledError:  # the client went away while the upstream was quiet
        upstream.close()
        finish.done("client_closed")
        raise
    finally:
        if outcome == "ok":
            upstream.release()
        else:
            upstream.close()
    if outcome == "broken":
        await _end_broken(request, out, answer.is_sse)
    finish.done(outcome if outcome != "ok" else outcome_of(upstream.status))
    return out


async def _pump(upstream: UpstreamResponse, out: web.StreamResponse) -> str:
    """Copy the rest of the body; "ok", or "broken" when the upstream broke off."""
    while True:
        try:
            chunk = await upstream.read_chunk()
        except UpstreamError:
            return "broken"
        if not chunk:
            await out.write_eof()
            return "ok"
        await out.write(chunk)


async def _end_broken(request: web.Request, out: web.StreamResponse, sse: bool) -> None:
    if sse:
        event = errors.sse_error_event(
            "the backend's stream broke off before it was complete", "stream_broken"
        )
        try:
            await out.write(b"\n\n" + event)
            await out.write_eof()
            return
        except ConnectionError:
            pass
    if request.transport is not None:
        request.transport.abort()

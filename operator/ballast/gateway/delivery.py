"""Passing a committed upstream answer to the client, chunk by chunk.

A buffered answer goes out in one response. A streaming one is prepared with the
upstream's status and headers, then every chunk is written as it arrives (``write``
waits for the client to drain, so a slow client slows the upstream read instead of
filling memory). If the upstream breaks off, a server-sent-event stream gets a final
``data: {"error": ...}`` event (the OpenAI SDK raises ``APIError`` on it) and any other
body has its connection aborted, so the client sees an incomplete response rather than a
short one that looks whole. A client that goes away closes the upstream request at once,
even while the upstream is quiet (the server cancels the handler on disconnect).

On the way every successful JSON answer and every event of a stream is read by
:mod:`~ballast.gateway.answers`: ``model`` becomes the served name the client asked for
(the upstream's own name goes in ``x-ballast-upstream-model``), and usage and the first
token are noted in ``finish.reading``.

A held streaming request may have had its answer committed already (a ``200``
``text/event-stream`` carrying keep-alive comments while it waited): :func:`deliver_into`
then writes the upstream's events into that response, and an upstream error answer
becomes one SSE error event (its own ``{"error": ...}`` body when it has one).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiohttp import web

from ballast.gateway import errors
from ballast.gateway.answers import EventStream, Reading
from ballast.gateway.h1 import UpstreamError
from ballast.gateway.upstream import Answer, UpstreamResponse, is_json, response_headers

UPSTREAM_MODEL_HEADER = "x-ballast-upstream-model"
#: An upstream's own request id is passed on under this name (X-Request-Id is the gateway's).
UPSTREAM_REQUEST_ID_HEADER = "x-upstream-request-id"


class Finish(Protocol):
    backend: str
    attempts: int
    reading: Reading

    def done(self, status: int, outcome: str) -> None: ...


def outcome_of(status: int) -> str:
    """The ``outcome`` label of an answer passed through with ``status``."""
    return "ok" if status < 400 else "client_error"


async def deliver(request: web.Request, answer: Answer, finish: Finish) -> web.StreamResponse:
    """Send ``answer`` to the client; report how it ended to ``finish``."""
    upstream = answer.response
    status = upstream.status
    headers = response_headers(upstream.headers)
    theirs = headers.popall("X-Request-Id", ())
    if theirs:
        headers[UPSTREAM_REQUEST_ID_HEADER] = theirs[0]
    headers[errors.BACKEND_HEADER] = finish.backend
    headers[errors.ATTEMPTS_HEADER] = str(finish.attempts)
    reading = finish.reading
    if answer.body is not None:
        body = answer.body
        if status < 300 and is_json(upstream.content_type):
            body = reading.document(body)
            if reading.upstream_model is not None:
                headers[UPSTREAM_MODEL_HEADER] = reading.upstream_model
        finish.done(status, outcome_of(status))
        return web.Response(status=status, body=body, headers=headers)
    events = EventStream(reading, time.perf_counter) if answer.is_sse and status < 300 else None
    first = events.feed(answer.first) if events is not None else answer.first
    if reading.upstream_model is not None:
        headers[UPSTREAM_MODEL_HEADER] = reading.upstream_model
    out = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
    return await _relay(request, out, answer, events, first, finish, prepare=True)


async def _relay(
    request: web.Request,
    out: web.StreamResponse,
    answer: Answer,
    events: EventStream | None,
    first: bytes | None,
    finish: Finish,
    *,
    prepare: bool,
) -> web.StreamResponse:
    """Pump the rest of ``answer`` into ``out`` (sent to the client first when ``prepare``);
    a stream that breaks ends with an error event; ``finish`` hears how it ended."""
    upstream = answer.response
    status = upstream.status
    outcome = "client_closed"
    try:
        if prepare:
            await out.prepare(request)
        if first:
            await out.write(first)
        outcome = await _pump(upstream, out, events)
    except ConnectionError:
        pass  # the client went away; outcome stays client_closed
    except asyncio.CancelledError:  # the client went away while the upstream was quiet
        upstream.close()
        finish.done(status, "client_closed")
        raise
    finally:
        if outcome == "ok":
            upstream.release()
        else:
            upstream.close()
    if outcome == "broken":
        await _end_broken(request, out, answer.is_sse)
    finish.done(status, outcome if outcome != "ok" else outcome_of(status))
    return out


async def deliver_into(
    request: web.Request, out: web.StreamResponse, answer: Answer, finish: Finish
) -> web.StreamResponse:
    """Send ``answer`` into ``out``, an event stream already sent to the client."""
    upstream = answer.response
    status = upstream.status
    if not (answer.is_sse and status < 300 and answer.body is None):
        upstream.close()  # nothing more of it is read
        event = error_event(status, answer.body)
        outcome = outcome_of(status) if status >= 300 else "bad_gateway"
        await end_stream(request, out, event)
        finish.done(status, outcome)
        return out
    events = EventStream(finish.reading, time.perf_counter)
    return await _relay(
        request, out, answer, events, events.feed(answer.first), finish, prepare=False
    )


def error_event(status: int, body: bytes | None) -> bytes:
    """An upstream answer that is no event stream, as an SSE error event."""
    if body is not None and body.lstrip().startswith(b"{") and b'"error"' in body:
        return b"data: " + b" ".join(body.splitlines()) + b"\n\n"
    if status >= 300:
        return errors.sse_error_event(f"the backend answered HTTP {status}", "upstream_error")
    return errors.sse_error_event("the backend's answer was not an event stream", "bad_gateway")


async def end_stream(request: web.Request, out: web.StreamResponse, event: bytes) -> None:
    """End an event stream the client already has with ``event`` (an SSE error event)."""
    try:
        await out.write(event)
        await out.write_eof()
    except ConnectionError:
        if request.transport is not None:
            request.transport.abort()


async def _pump(
    upstream: UpstreamResponse, out: web.StreamResponse, events: EventStream | None
) -> str:
    """Copy the rest of the body (through ``events`` for a stream to read); "ok", or
    "broken" when the upstream broke off."""
    while True:
        try:
            chunk = await upstream.read_chunk()
        except UpstreamError:
            return "broken"
        if not chunk:
            if events is not None and (rest := events.flush()):
                await out.write(rest)
            await out.write_eof()
            return "ok"
        if events is not None:
            chunk = events.feed(chunk)
            if not chunk:
                continue
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

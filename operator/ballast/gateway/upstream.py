"""One attempt against one backend: send, wait for the answer's start, classify.

:func:`attempt` returns an :class:`Answer` (the client can be served from it) or a
:class:`Failure` with its :class:`~ballast.gateway.failures.FailureKind`.
``perTryTimeoutSeconds`` bounds the time to the response headers and the first body
chunk (or the whole body when it is small enough to buffer). A non-streaming answer up
to ``buffer_limit`` bytes is read whole before the client sees anything, so even a body
that breaks off can still be retried: one with a ``Content-Length`` up to the limit, and a
JSON one without (chunked, as Ollama sends answers above ~2 KB) until it ends or passes
the limit, from where it streams. Server-sent events and larger bodies stream. The
HTTP client is either :mod:`~ballast.gateway.h1` (default) or
:mod:`~ballast.gateway.aioclient`; both raise the :mod:`h1` exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict, MultiMapping
from yarl import URL

from ballast.gateway.failures import FailureKind, kind_of_status
from ballast.gateway.h1 import ConnectError, Disconnected, UpstreamError

#: Upstream error bodies kept to pass through when every attempt fails (larger: dropped).
ERROR_BODY_LIMIT = 64 * 1024
SSE = "text/event-stream"

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection"}
    | {"te", "trailer", "transfer-encoding", "upgrade"}
)
#: aiohttp decompresses request bodies, so the body sent on is never encoded.
_REQUEST_DROP = _HOP_BY_HOP | {
    "host", "content-length", "content-encoding", "authorization", "cookie", "expect",
}  # fmt: skip
_RESPONSE_DROP = _HOP_BY_HOP | {"content-length", "date", "server"}


class UpstreamResponse(Protocol):
    status: int
    reason: str
    content_length: int | None

    @property
    def headers(self) -> MultiMapping[str]: ...
    @property
    def content_type(self) -> str: ...
    async def read(self) -> bytes: ...
    async def read_chunk(self) -> bytes: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class UpstreamClient(Protocol):
    async def post(
        self, url: URL, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> UpstreamResponse: ...
    async def close(self) -> None: ...


@dataclass
class Answer:
    """An upstream response the client will get (success, or a 4xx that is the client's)."""

    response: UpstreamResponse
    #: The whole body when it was buffered; None when it streams.
    body: bytes | None
    #: The first chunk of a streaming body.
    first: bytes = b""

    @property
    def is_sse(self) -> bool:
        return self.response.content_type == SSE


@dataclass
class Failure:
    """An attempt that produced nothing for the client."""

    kind: FailureKind
    detail: str
    status: int = 0
    #: The upstream's complete error body, when it had one small enough to keep.
    body: bytes | None = None
    content_type: str = "application/json"


def request_headers(
    incoming: MultiMapping[str], authorization: str | None
) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop, auth and gateway ones, plus the backend's key."""
    out = []
    content_type = False
    for name, value in incoming.items():
        low = name.lower()
        if low not in _REQUEST_DROP and not low.startswith("x-ballast-"):
            out.append((name, value))
            content_type = content_type or low == "content-type"
    if not content_type:
        out.append(("Content-Type", "application/json"))
    if authorization is not None:
        out.append(("Authorization", authorization))
    return out


def response_headers(incoming: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's response headers to pass to the client."""
    return CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in _RESPONSE_DROP)


async def attempt(
    client: UpstreamClient,
    url: URL,
    body: bytes,
    headers: list[tuple[str, str]],
    per_try: float,
    buffer_limit: int,
) -> Answer | Failure:
    """Send ``body`` to ``url`` and wait (at most ``per_try`` seconds) for the answer to start."""
    resp: UpstreamResponse | None = None
    try:
        async with asyncio.timeout(per_try):
            resp = await client.post(url, body, headers)
            kind = kind_of_status(resp.status)
            if kind is not None and kind is not FailureKind.CLIENT_ERROR:
                return await _status_failure(resp, kind)
            length = resp.content_length
            if length is not None:
                if length <= buffer_limit and resp.content_type != SSE:
                    return Answer(resp, await resp.read())
            elif _is_json(resp.content_type):
                return await _buffered(resp, buffer_limit)
            return Answer(resp, None, await resp.read_chunk())
    except TimeoutError:
        _close(resp)
        return Failure(FailureKind.TIMEOUT, f"no answer within {per_try:g}s")
    except UpstreamError as e:
        _close(resp)
        return Failure(_kind_of_error(e, answered=resp is not None), str(e))
    except BaseException:
        _close(resp)
        raise


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


async def _buffered(resp: UpstreamResponse, limit: int) -> Answer:
    """A body without a length: whole when it ends within ``limit``, else streamed on."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.read_chunk():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return Answer(resp, None, b"".join(chunks))
    return Answer(resp, b"".join(chunks))


def _kind_of_error(error: UpstreamError, answered: bool) -> FailureKind:
    if not answered and isinstance(error, ConnectError | Disconnected):
        return FailureKind.CONNECT_FAILURE
    return FailureKind.STREAM_BROKEN  # the answer broke off, or was not valid HTTP


async def _status_failure(resp: UpstreamResponse, kind: FailureKind) -> Failure:
    """A 5xx/429 answer: keep its body (if small) to pass on should it be the last."""
    body: bytes | None = None
    if resp.content_length is None or resp.content_length <= ERROR_BODY_LIMIT:
        body = await _read_capped(resp, ERROR_BODY_LIMIT)
    if body is None:
        resp.close()
    else:
        resp.release()
    content_type = resp.headers.get("Content-Type", "application/json")
    return Failure(kind, f"HTTP {resp.status}", resp.status, body, content_type)


async def _read_capped(resp: UpstreamResponse, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.read_chunk():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _close(resp: UpstreamResponse | None) -> None:
    if resp is not None:
        resp.close()

"""One attempt against one backend: send, wait for the answer's start, classify.

:func:`attempt` returns an :class:`Answer` (the client can be served from it) or a
:class:`Failure` with its :class:`~ballast.gateway.failures.FailureKind`. Two budgets
(:class:`Budget`): ``perTryTimeoutSeconds`` bounds the time a backend may take to *accept*
the request (to connect; for a streamed request also to send its first byte), and
``generationTimeoutSeconds`` the time a non-streamed answer may take to arrive whole
(engines send its headers only once the generation is done, so a long answer is not a
sign of a broken backend). A non-streaming answer up to ``buffer_limit`` bytes is read
whole before the client sees anything, so even a body that breaks off can still be
retried: one with a ``Content-Length`` up to the limit, and a JSON one without (chunked, as
Ollama sends answers above ~2 KB) until it ends or passes the limit, from where it
streams. Server-sent events and larger bodies stream. The HTTP client is either
:mod:`~ballast.gateway.h1` (default) or :mod:`~ballast.gateway.aioclient`; both raise the
:mod:`h1` exceptions.

Headers toward the backend: hop-by-hop headers and those named in ``Connection`` are
dropped, so are the client's credentials (``Authorization``, ``x-api-key``, ``api-key``,
cookies) and, when the gateway adds a provider key, the client's billing selectors
(``OpenAI-Organization``, ``OpenAI-Project``); ``X-Forwarded-For`` is the gateway's own
(the client's peer address), never the client's claim.
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
#: The gateway inflates request bodies, so the body sent on is never encoded. Client
#: credentials never go upstream; the gateway sets X-Forwarded-* itself.
_REQUEST_DROP = _HOP_BY_HOP | {
    "host", "content-length", "content-encoding", "authorization", "cookie", "expect",
    "x-api-key", "api-key", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "forwarded", "x-real-ip", "x-request-id",
}  # fmt: skip
#: Dropped too when the gateway sends its own provider key: they would pick the billing
#: account (organization, project) the gateway's key is charged to.
_BILLING = frozenset({"openai-organization", "openai-project"})
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
        self,
        url: URL,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        connect_timeout: float | None = None,
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
    #: Headers of that error answer worth passing on (Retry-After, rate-limit headers).
    headers: tuple[tuple[str, str], ...] = ()


def request_headers(
    incoming: MultiMapping[str],
    authorization: str | None,
    client_address: str | None = None,
    request_id: str | None = None,
) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop, credential and gateway ones, plus the backend's
    key, ``X-Forwarded-For`` (the client's peer address as the gateway saw it) and the
    request's id (the gateway's choice: the client's only when valid)."""
    out = []
    content_type = False
    named = _connection_named(incoming)
    for name, value in incoming.items():
        low = name.lower()
        if (
            low in _REQUEST_DROP
            or low.startswith("x-ballast-")
            or (named and low in named)
            or (authorization is not None and low in _BILLING)
        ):
            continue
        out.append((name, value))
        content_type = content_type or low == "content-type"
    if not content_type:
        out.append(("Content-Type", "application/json"))
    if client_address:
        out.append(("X-Forwarded-For", client_address))
    if request_id is not None:
        out.append(("X-Request-Id", request_id))
    if authorization is not None:
        out.append(("Authorization", authorization))
    return out


def _connection_named(incoming: MultiMapping[str]) -> frozenset[str]:
    """Header names the client listed in ``Connection`` (hop-by-hop by declaration)."""
    values = incoming.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def response_headers(incoming: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's response headers to pass to the client."""
    return CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in _RESPONSE_DROP)


@dataclass(frozen=True)
class Budget:
    """The time limits of one attempt (see the module docstring)."""

    #: To connect, and for a streamed request to get the first byte (perTryTimeoutSeconds).
    accept: float
    #: For a non-streamed request, the whole buffered answer (generationTimeoutSeconds).
    generation: float
    #: The client asked for a stream ("stream": true).
    streamed: bool


async def attempt(
    client: UpstreamClient,
    url: URL,
    body: bytes,
    headers: list[tuple[str, str]],
    budget: Budget,
    buffer_limit: int,
) -> Answer | Failure:
    """Send ``body`` to ``url`` and wait, within ``budget``, for the answer to start."""
    resp: UpstreamResponse | None = None
    seconds = budget.accept if budget.streamed else budget.generation
    try:
        async with asyncio.timeout(seconds):
            resp = await client.post(url, body, headers, connect_timeout=budget.accept)
            kind = kind_of_status(resp.status)
            if kind is not None and kind is not FailureKind.CLIENT_ERROR:
                return await _status_failure(resp, kind)
            length = resp.content_length
            if length is not None:
                if length <= buffer_limit and resp.content_type != SSE:
                    return Answer(resp, await resp.read())
            elif is_json(resp.content_type):
                return await _buffered(resp, buffer_limit)
            return Answer(resp, None, await resp.read_chunk())
    except TimeoutError:
        _close(resp)
        if budget.streamed:
            return Failure(FailureKind.TIMEOUT, f"no first byte within {seconds:g}s")
        return Failure(FailureKind.GENERATION_TIMEOUT, f"no complete answer within {seconds:g}s")
    except UpstreamError as e:
        _close(resp)
        return Failure(_kind_of_error(e, answered=resp is not None), str(e))
    except BaseException:
        _close(resp)
        raise


def is_json(content_type: str) -> bool:
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
    kept = tuple((k, v) for k, v in resp.headers.items() if _passed_on_error(k.lower()))
    return Failure(kind, f"HTTP {resp.status}", resp.status, body, content_type, kept)


def _passed_on_error(name: str) -> bool:
    """Upstream error-answer headers a client needs to back off correctly."""
    return (
        name in ("retry-after", "retry-after-ms")
        or name.startswith("x-ratelimit-")
        or name.startswith("ratelimit")
    )


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

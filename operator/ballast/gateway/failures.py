"""What went wrong with one upstream attempt, as a typed kind, and whether a table retries it.

The proxy classifies every failed attempt into a :class:`FailureKind`; the retry decision
keys on that kind and the table's ``fallback.retryOn`` and nothing else. The mapping
follows Envoy's retry policy: a connection that broke before the client saw a byte counts
as ``5xx`` (Envoy's ``reset`` is part of its ``5xx`` class).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from ballast.api import RetryOn


class FailureKind(StrEnum):
    """Why an attempt did not produce an answer for the client."""

    #: No connection: refused, unreachable, DNS, TLS, or a pooled connection found dead
    #: before any response byte (the request never got an answer).
    CONNECT_FAILURE = "connect-failure"
    #: Not accepted within ``perTryTimeoutSeconds``: a streamed request's first byte did not
    #: come in time (a connection that cannot be opened in time is a ``connect-failure``).
    TIMEOUT = "timeout"
    #: A non-streamed answer still not complete after ``generationTimeoutSeconds``: a long
    #: generation, not a broken backend. Never retried, never held against the backend.
    GENERATION_TIMEOUT = "generation-timeout"
    SERVER_ERROR = "5xx"
    TOO_MANY_REQUESTS = "429"
    #: Any other 4xx: the client's fault, never retried, not held against the backend.
    CLIENT_ERROR = "client-4xx"
    #: The upstream answered, then its body broke off.
    STREAM_BROKEN = "stream-broken"


_RETRY_KEY: dict[FailureKind, RetryOn | None] = {
    FailureKind.CONNECT_FAILURE: RetryOn.CONNECT_FAILURE,
    FailureKind.TIMEOUT: RetryOn.TIMEOUT,
    FailureKind.SERVER_ERROR: RetryOn.SERVER_ERROR,
    FailureKind.TOO_MANY_REQUESTS: RetryOn.TOO_MANY_REQUESTS,
    FailureKind.CLIENT_ERROR: None,
    FailureKind.GENERATION_TIMEOUT: None,
    FailureKind.STREAM_BROKEN: RetryOn.SERVER_ERROR,
}


def retryable(kind: FailureKind, retry_on: Collection[RetryOn]) -> bool:
    """True when a failure of ``kind`` moves the request to the next candidate."""
    key = _RETRY_KEY[kind]
    return key is not None and key in retry_on


def kind_of_status(status: int) -> FailureKind | None:
    """The failure an HTTP status means, or None for a success (1xx-3xx)."""
    if status == 429:
        return FailureKind.TOO_MANY_REQUESTS
    if status >= 500:
        return FailureKind.SERVER_ERROR
    if status >= 400:
        return FailureKind.CLIENT_ERROR
    return None


def counts_against_backend(kind: FailureKind) -> bool:
    """True when a failure of ``kind`` is the backend's (feeds its circuit breaker)."""
    return kind not in (FailureKind.CLIENT_ERROR, FailureKind.GENERATION_TIMEOUT)

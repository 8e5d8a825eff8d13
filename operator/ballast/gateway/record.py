"""One client request on its way through the proxy: what is known of it, what is logged.

:class:`Record` is what the access line and the request metrics say when the request ends
(:meth:`~ballast.gateway.proxy.Proxy.end`); :class:`Context` is what the proxy carries from
backend to backend while it serves the request (the parsed body, the route, an event
stream committed early for a held request, the backends it was counted for as demand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from ballast.gateway import errors
from ballast.gateway.answers import Reading
from ballast.gateway.bodies import ParsedBody
from ballast.gateway.metrics import UNKNOWN_MODEL
from ballast.gateway.snapshot import Route


@dataclass
class Record:
    """What the access log and the request metrics say about one client request."""

    request_id: str
    path: str
    start: float
    #: The model asked for, as the log shows it (cut to 128 characters).
    asked: str = "-"
    #: The served model for metrics: one of the tables', or ``-``.
    model: str = UNKNOWN_MODEL
    backend: str = errors.NO_BACKEND
    pod: str | None = None
    attempts: int = 0
    stream: bool = False
    #: The client key's id (its Secret), for the log; None without authentication.
    client: str | None = None
    reading: Reading | None = None
    #: Seconds the request was held for a backend at zero (None: never held).
    held: float | None = None


@dataclass
class Context:
    """One client request on its way through the proxy."""

    request: web.Request
    body: ParsedBody
    route: Route
    path: str
    record: Record
    #: The request's affinity key (prompt prefix or session), None for least loaded.
    key: str | None = None
    #: An answer was handed to delivery (which then records how the request ended).
    committed: bool = False
    #: A held stream's response, sent to the client while it waited (keep-alives).
    early: web.StreamResponse | None = None
    #: Backends this request was counted for in the demand report.
    counted: set[str] = field(default_factory=set)

    @property
    def start(self) -> float:
        return self.record.start

    @property
    def attempts(self) -> int:
        return self.record.attempts

    @property
    def client(self) -> str | None:
        return self.record.client

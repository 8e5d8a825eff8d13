"""Request ids, the gateway's log format, and its access log.

**Request ids.** A client's ``X-Request-Id`` is kept when it is 1 to 128 characters from
``A-Z a-z 0-9 . _ : / + = @ -`` (a UUID, a W3C trace id, most tracers' ids); anything else
(too long, spaces, quotes, control characters) is replaced by a new random id, so a
client cannot write into the gateway's logs through it. The id is echoed on every answer,
sent upstream, and carried by every log line written while the request is served (a
:class:`contextvars.ContextVar`, so lines from deep inside the proxy carry it too).

**Log format.** ``json`` (the default, like the operator's): one object per line with
``time`` (UTC, RFC 3339 with milliseconds), ``level``, ``logger``, ``message``, the
``request_id`` when there is one, and for an access line its fields. ``text``: the same
as ``key=value`` after a readable prefix, for local use.

**The access log.** One line per client request on the ``ballast.access`` logger, written
when the request ends: ``request_id``, ``path``, ``model``, ``backend``,
``pod``, ``attempts``, ``status``, ``outcome``, ``latency_ms``, ``stream``, ``ttft_ms``
(streams), ``prompt_tokens`` and ``completion_tokens`` (when the answer carried
``usage``), ``upstream_model``, ``client_key`` (the key's Secret name, never the key),
``held_ms`` (requests that waited for a backend at zero: how long). No
body and no header value is ever logged. ``--access-log`` picks ``all``, ``errors``
(status ≥ 400 and requests that did not end ``ok``) or ``off``; ``--access-log-sample``
keeps that fraction of the successful lines (errors are always written).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, BinaryIO, Final

REQUEST_ID_HEADER: Final = "X-Request-Id"
#: The request id of the request being served in this task (None outside a request).
current_request_id: ContextVar[str | None] = ContextVar("ballast_request_id", default=None)
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}\Z")
ACCESS_LOGGER: Final = "ballast.access"
MODES: Final = ("all", "errors", "off")


def request_id(given: str | None) -> str:
    """The client's id when it is valid, else a new random one (32 hex digits)."""
    if given is not None and _VALID_ID.match(given):
        return given
    return os.urandom(16).hex()


class _RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (handlers' filters see every logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


_second: list[Any] = [-1, ""]  # the last second formatted, and its text


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    if _second[0] != seconds:
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{millis:03d}Z"


def json_line(
    created: float, level: str, logger: str, message: str, fields: Mapping[str, Any]
) -> str:
    """One log line in the JSON format: the fixed keys, then ``fields``."""
    out = {"time": _timestamp(created), "level": level, "logger": logger, "message": message}
    out.update(fields)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)


def _pairs(fields: Mapping[str, Any]) -> str:
    """``key=value`` for each field that has a value (the text format's tail)."""
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    """A record's request id and fields, in the order both formats print them."""
    return {"request_id": getattr(record, "request_id", None),
            **(getattr(record, "fields", None) or {})}  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = _extra(record)
        if extra["request_id"] is None:
            del extra["request_id"]
        if record.exc_info:
            extra["exception"] = self.formatException(record.exc_info)
        level = record.levelname.lower()
        return json_line(record.created, level, record.name, record.getMessage(), extra)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = _pairs(_extra(record))
        return f"{line} {pairs}" if pairs else line


class LineSink:
    """Whole log lines to a binary stream in batches: written when ``limit`` bytes wait or
    ``interval`` seconds after the first waiting line (at once outside an event loop). An
    access line per request through the logging module's handler costs a lock, a format and
    a write system call each; batched, the write is shared by every line of the interval."""

    def __init__(self, stream: BinaryIO, fmt: str, interval: float = 0.1, limit: int = 1 << 16):
        self.stream, self.fmt, self.interval, self.limit = stream, fmt, interval, limit
        self._parts: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def line(self, created: float, fields: Mapping[str, Any]) -> None:
        """One access line (``fields`` of one request) in this sink's format."""
        if self.fmt == "json":
            text = json_line(created, "info", ACCESS_LOGGER, "request", fields)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            text = (f"{stamp},{int(created % 1 * 1000):03d} INFO {ACCESS_LOGGER}: request "
                    f"{_pairs(fields)}")  # fmt: skip
        self.write(text.encode() + b"\n")

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self.limit:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._parts:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: nothing to tell anyone
            pass


#: The access-line sink :func:`configure` set up for this process (None: through logging).
_sink: list[LineSink | None] = [None]


def flush() -> None:
    """Write the access lines that wait (at shutdown)."""
    sink = _sink[0]
    if sink is not None:
        sink.flush()


def configure(level: str, fmt: str) -> None:
    """The gateway process's logging: ``fmt`` json or text, on stderr; access lines through
    a batching :class:`LineSink` on the same stream."""
    if fmt not in ("json", "text"):
        raise ValueError(f"--log-format: json or text, not {fmt!r}")
    _sink[0] = LineSink(sys.stderr.buffer, fmt)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class AccessLog:
    """Writes one line per finished request (``mode``: all, errors, off)."""

    def __init__(
        self,
        mode: str = "all",
        sample: float = 1.0,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
        sink: LineSink | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"access log mode: one of {', '.join(MODES)}, not {mode!r}")
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"access log sample: a fraction from 0 to 1, not {sample!r}")
        self.mode, self.sample = mode, sample
        self.rng = rng or random.Random()
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        #: Lines go here when the process's logging was configured (else through logging).
        self.sink = sink if sink is not None else _sink[0]

    def wants(self, failed: bool) -> bool:
        """Whether the line of a request that ``failed`` (or not) is written: ask before
        building it."""
        if self.mode == "off" or (not failed and self.mode == "errors"):
            return False
        if not failed and self.sample < 1.0 and self.rng.random() >= self.sample:
            return False
        return self.logger.isEnabledFor(logging.INFO)

    def emit(self, fields: Mapping[str, Any]) -> None:
        """Write the line ``fields`` (the caller asked :meth:`wants`)."""
        if self.sink is not None:
            self.sink.line(time.time(), fields)
            return
        logger = self.logger
        # Straight to the handlers: the call-site lookup of Logger._log is a large part of
        # a line's cost and an access line does not need it.
        record = logger.makeRecord(logger.name, logging.INFO, "", 0, "request", (), None)
        record.request_id = fields.get("request_id")
        record.fields = {k: v for k, v in fields.items() if k != "request_id"}
        logger.handle(record)

"""Incremental HTTP/1.1 response parsing for :mod:`ballast.gateway.h1`.

A push parser: bytes are fed as they arrive and the parser calls back into the response
(``started``, ``body``, ``complete``, ``fail``). It understands what upstream engines
send: a status line, headers, then a body framed by ``Content-Length``, by chunked
transfer coding (chunk extensions and trailers skipped), or by the connection's close;
1xx interim responses are skipped. Numbers are ASCII digits only (``int()`` alone would
take ``+3``, ``0x3``, ``1_0`` or non-ASCII digits); differing ``Content-Length`` values are
refused; a response framed by both ``Transfer-Encoding`` and ``Content-Length`` is read
as chunked and its connection not reused (RFC 9112 §6.3). Anything else is a
:class:`ProtocolError`.
"""

from __future__ import annotations

import re
from typing import Protocol

from multidict import CIMultiDict

MAX_HEAD = 64 * 1024
MAX_LINE = 4096
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, UNTIL_CLOSE, DONE = range(8)
_LENGTH = re.compile(r"[0-9]{1,18}")
#: A chunk size (at most 16 hex digits) and optional extensions after ";".
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_STATUS = re.compile(r"[0-9]{3}")


class ProtocolError(Exception):
    """Bytes that are not a valid HTTP/1.x response."""


class Sink(Protocol):
    """What the parser reports to (implemented by ``h1.Response``)."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    keep_alive: bool
    content_length: int | None

    def started(self) -> None: ...
    def body(self, data: bytes) -> None: ...
    def complete(self) -> None: ...
    def fail(self, error: Exception) -> None: ...


class Parser:
    """Parses one response at a time; :meth:`reset` before the next on the same connection."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state = HEAD
        self.buf = bytearray()
        self.remaining = 0
        self.seen_bytes = False

    def feed(self, data: bytes, sink: Sink) -> None:
        self.seen_bytes = True
        self.buf += data
        while self.buf and self.state != DONE:
            if not self._step(sink):
                return
        if self.state == DONE and self.buf:
            sink.keep_alive = False  # bytes beyond the response: do not reuse

    def eof(
        self, sink: Sink, exc: Exception | None, errors: tuple[type[Exception], type[Exception]]
    ) -> None:
        """The connection ended; ``errors`` is (before-any-byte, mid-response) exception types."""
        if self.state == UNTIL_CLOSE:
            self.state = DONE
            sink.complete()
        elif self.state != DONE:
            before, during = errors
            reason = f": {exc}" if exc else ""
            if self.state == HEAD and not self.seen_bytes:
                sink.fail(before(f"connection closed before the response{reason}"))
            else:
                sink.fail(during(f"connection closed mid-response{reason}"))

    def _step(self, sink: Sink) -> bool:
        """Advance one state; False when more bytes are needed."""
        if self.state == HEAD:
            return self._head(sink)
        if self.state in (LENGTH, CHUNK_DATA):
            take = min(self.remaining, len(self.buf))
            sink.body(bytes(self.buf[:take]))
            del self.buf[:take]
            self.remaining -= take
            if self.remaining == 0 and self.state == LENGTH:
                self._finish(sink)
            elif self.remaining == 0:
                self.state = CHUNK_END
            return True
        if self.state == UNTIL_CLOSE:
            sink.body(bytes(self.buf))
            self.buf.clear()
            return True
        line = self._line()
        if line is None:
            return False
        if self.state == CHUNK_SIZE:
            self._chunk_size(line, sink)
        elif self.state == CHUNK_END:
            if line:
                raise ProtocolError("chunk data longer than its size")
            self.state = CHUNK_SIZE
        elif not line:  # TRAILER: an empty line ends the trailers
            self._finish(sink)
        return True

    def _finish(self, sink: Sink) -> None:
        self.state = DONE
        sink.complete()

    def _line(self) -> bytes | None:
        at = self.buf.find(b"\r\n")
        if at < 0:
            if len(self.buf) > MAX_LINE:
                raise ProtocolError("line too long")
            return None
        line = bytes(self.buf[:at])
        del self.buf[: at + 2]
        return line

    def _chunk_size(self, line: bytes, sink: Sink) -> None:
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"bad chunk size {line[:20]!r}")
        size = int(match.group(1), 16)
        self.state, self.remaining = (CHUNK_DATA, size) if size else (TRAILER, 0)

    def _head(self, sink: Sink) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("response head too large")
            return False
        # one decode for the whole head; "replace" keeps it re-encodable when passed on
        lines = self.buf[:end].decode("utf-8", "replace").split("\r\n")
        del self.buf[: end + 4]
        version, status, reason = _status_line(lines[0])
        if 100 <= status < 200:
            return True  # interim response: the real one follows
        pairs = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                raise ProtocolError(f"bad header line {line[:40]!r}")
            pairs.append((name, value.strip()))
        headers: CIMultiDict[str] = CIMultiDict(pairs)
        sink.status, sink.reason, sink.headers = status, reason, headers
        self._framing(sink, version, status, headers)
        sink.started()
        if self.state == DONE:
            sink.complete()
        return True

    def _framing(self, sink: Sink, version: str, status: int, headers: CIMultiDict[str]) -> None:
        connection = headers.get("Connection", "").lower()
        sink.keep_alive = version == "HTTP/1.1" and "close" not in connection
        lengths = headers.getall("Content-Length", [])
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self.state = CHUNK_SIZE
            if lengths:
                sink.keep_alive = False  # framed twice: a smuggling vector, do not reuse
        elif lengths:
            sink.content_length = self.remaining = _content_length(lengths)
            self.state = LENGTH if self.remaining else DONE
        elif status in (204, 304):
            self.state = DONE
        else:
            self.state = UNTIL_CLOSE
            sink.keep_alive = False


def _content_length(values: list[str]) -> int:
    """The one length all ``Content-Length`` values (each maybe a comma list) agree on."""
    found = {v.strip() for value in values for v in value.split(",")}
    if len(found) != 1 or not _LENGTH.fullmatch(length := found.pop()):
        raise ProtocolError(f"bad Content-Length {', '.join(values)[:40]!r}")
    return int(length)


def _status_line(line: str) -> tuple[str, int, str]:
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _STATUS.fullmatch(parts[1]):
        raise ProtocolError(f"bad status line {line[:40]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else ""

"""Reading a client's request body within bounds: size, time and compression.

- A declared ``Content-Length`` over the limit is refused (413) before a byte of the body
  is read.
- The whole body must arrive within the body timeout; a body that trickles or stalls is
  cut (408), so a slow client cannot hold a connection and a buffer for ever.
- ``Content-Encoding: gzip`` or ``deflate`` is inflated here, chunk by chunk, each step
  bounded to what is left of the limit: the body is refused (413) the moment its inflated
  size passes the limit, so a small compressed body that expands to gigabytes costs at
  most the limit. (aiohttp's own decompression is turned off for the gateway's server.)
  Other encodings get 415.

Every refusal is an :class:`IntakeError` carrying the status and the OpenAI error code.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Protocol

#: zlib wbits: gzip (with header) and zlib-wrapped deflate, and raw deflate.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class IntakeError(Exception):
    """The body was refused: ``status`` and ``code`` for the OpenAI error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Stream(Protocol):
    async def readany(self) -> bytes: ...
    def is_eof(self) -> bool: ...
    def read_nowait(self, n: int = -1) -> bytes: ...


def check_declared(length: int | None, encoding: str, limit: int) -> None:
    """Refuse at once what the headers already show is unacceptable."""
    if length is not None and length > limit:
        raise IntakeError(
            413, "request_too_large", f"request body exceeds the limit of {limit} bytes"
        )
    if encoding not in ("", "identity") and encoding not in _WBITS:
        raise IntakeError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding} is not supported (gzip, deflate or none)",
        )


async def read_body(stream: Stream, encoding: str, limit: int, seconds: float) -> bytes:
    """The (inflated) body, or :class:`IntakeError` (408, 413, 400)."""
    if stream.is_eof() and encoding in ("", "identity"):
        # The usual small request arrived whole with its head: no wait, no timer.
        body = stream.read_nowait(-1)
        if len(body) > limit:
            raise _too_large(limit)
        return body
    try:
        async with asyncio.timeout(seconds):
            if encoding in ("", "identity"):
                return await _read_plain(stream, limit)
            return await _read_inflated(stream, zlib.decompressobj(_WBITS[encoding]), limit)
    except TimeoutError:
        raise IntakeError(
            408, "request_timeout", f"request body not received within {seconds:g}s"
        ) from None


def _too_large(limit: int) -> IntakeError:
    return IntakeError(413, "request_too_large", f"request body exceeds the limit of {limit} bytes")


async def _read_plain(stream: Stream, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


async def _read_inflated(stream: Stream, inflater: zlib._Decompress, limit: int) -> bytes:
    parts: list[bytes] = []
    size = received = 0
    while chunk := await stream.readany():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, limit - size + 1)  # never more than the room left
            except zlib.error as e:
                raise IntakeError(
                    400, "invalid_request", f"compressed request body is not valid: {e}"
                ) from None
            size += len(out)
            if size > limit:
                raise _too_large(limit)
            parts.append(out)
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
    if not inflater.eof:
        raise IntakeError(400, "invalid_request", "compressed request body is incomplete")
    return b"".join(parts)

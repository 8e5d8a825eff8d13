"""OpenAI-shaped error bodies and the gateway's own error answers.

Every error the gateway itself produces has the body
``{"error": {"message", "type", "param", "code"}}`` so OpenAI clients surface it. The
statuses: 400 malformed JSON or missing ``model``, 404 unknown model, 413 body over the
limit, 415 a content type that is not JSON, 503 no backend available (none eligible, or
none reachable; or a full hold queue), 502 an upstream answer that broke off, 504 every
attempt timed out (or a held request's backend had no ready pod in time).
"""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web

BACKEND_HEADER: Final = "x-ballast-backend"
ATTEMPTS_HEADER: Final = "x-ballast-attempts"
#: ``true`` on every answer to a request that waited for a backend at zero.
COLD_START_HEADER: Final = "x-ballast-cold-start"
#: Value of ``x-ballast-backend`` when no backend answered.
NO_BACKEND: Final = "none"

INVALID_REQUEST: Final = "invalid_request_error"
SERVER_ERROR: Final = "server_error"


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    """The OpenAI error object as JSON bytes."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def sse_error_event(message: str, code: str) -> bytes:
    """A server-sent event the OpenAI SDK raises ``APIError`` on (ends a broken stream)."""
    return b"data: " + error_body(message, SERVER_ERROR, code) + b"\n\n"


def error_response(
    status: int,
    message: str,
    *,
    type_: str = INVALID_REQUEST,
    code: str | None = None,
    param: str | None = None,
    backend: str = NO_BACKEND,
    attempts: int = 0,
) -> web.Response:
    """A JSON error answer carrying the gateway's headers."""
    return web.Response(
        status=status,
        body=error_body(message, type_, code, param),
        content_type="application/json",
        headers={BACKEND_HEADER: backend, ATTEMPTS_HEADER: str(attempts)},
    )

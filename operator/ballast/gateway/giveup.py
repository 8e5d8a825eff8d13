"""The answer when no attempt of a request succeeded, and its metrics outcome."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from ballast.gateway import errors
from ballast.gateway.failures import FailureKind
from ballast.gateway.upstream import Failure

_GIVE_UP = {
    "backend_unavailable": "no backend could be reached",
    "upstream_timeout": "no backend answered in time",
    "bad_gateway": "the backend's answer broke off",
}


def give_up_response(
    model: str, failures: list[Failure], backend: str, attempts: int
) -> tuple[web.Response, str]:
    """The answer when no attempt succeeded, and its metrics outcome."""
    if not failures:
        return errors.error_response(
            503,
            f"no backend of model {model} is available",
            type_=errors.SERVER_ERROR,
            code="no_backend_available",
        ), "unavailable"
    last = failures[-1]
    timeouts = (FailureKind.TIMEOUT, FailureKind.GENERATION_TIMEOUT)
    if all(f.kind in timeouts for f in failures):
        status, code, outcome = 504, "upstream_timeout", "timeout"
    elif last.status and last.body is not None:
        headers = CIMultiDict(last.headers)
        headers[errors.BACKEND_HEADER] = backend
        headers[errors.ATTEMPTS_HEADER] = str(attempts)
        headers["Content-Type"] = last.content_type
        return web.Response(status=last.status, body=last.body, headers=headers), "upstream_error"
    elif last.kind is FailureKind.CONNECT_FAILURE:
        status, code, outcome = 503, "backend_unavailable", "unavailable"
    elif last.kind in timeouts:
        status, code, outcome = 504, "upstream_timeout", "timeout"
    else:
        status, code, outcome = 502, "bad_gateway", "bad_gateway"
    # Generic on purpose: the details (addresses, errno, credential references) are in the
    # gateway's log of each attempt, not for clients.
    message = f"model {model}: {_GIVE_UP[code]} ({len(failures)} attempt(s))"
    response = errors.error_response(
        status, message, type_=errors.SERVER_ERROR, code=code, backend=backend, attempts=attempts
    )
    return response, outcome

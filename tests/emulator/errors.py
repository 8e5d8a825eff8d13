"""The API's error responses (metav1.Status) as one exception type."""

from __future__ import annotations

from typing import Any

import kmock


class ApiError(kmock.KubernetesError):
    """An error the emulated API server answers with a ``Status`` body and ``status`` code."""

    def __init__(
        self, status: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status=status, reason=reason, message=message, details=details or {})


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


def already_exists(kind: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{kind} "{name}" already exists', {"name": name, "kind": kind}
    )


def conflict(kind: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "kind": kind},
    )

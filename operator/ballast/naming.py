"""Names and labels of everything Ballast creates, from one place.

Child names are ``<service>-<suffix>`` (``chat-primary``, ``chat-routes``). When
that would not be a valid DNS-1035 label of at most 63 characters (the strictest
rule among the kinds Ballast creates: Service names), the name is sanitized and
shortened with a stable hash suffix, so the same input always gives the same name.
Two LLMServices can still ask for the same child name (``chat`` with backend
``primary-a`` and ``chat-primary`` with backend ``a``); the controller never takes
over a child another owner controls and reports ``NameConflict`` instead.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MAX_NAME: Final = 63
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

MANAGED_BY: Final = "ballast"
PART_OF: Final = "ballast"
SERVICE_LABEL: Final = "ballast.dev/service"
BACKEND_LABEL: Final = "ballast.dev/backend"
ROUTES_LABEL: Final = "ballast.dev/routes"
ROUTES_KEY: Final = "routes.json"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def shorten(name: str, limit: int = MAX_NAME) -> str:
    """``name`` if it is a DNS-1035 label within ``limit``, else a stable sanitized form."""
    if len(name) <= limit and _DNS1035.match(name):
        return name
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = "x-" + clean
    head = clean[: limit - 9].rstrip("-")
    return f"{head}-{_digest(name)}"


def child_name(service: str, suffix: str) -> str:
    """Name of a child of LLMService ``service``: ``<service>-<suffix>``, shortened if needed."""
    full = f"{service}-{suffix}"
    if len(full) <= MAX_NAME and _DNS1035.match(full):
        return full
    return shorten(full)


def backend_name(service: str, backend: str) -> str:
    """Name of the Deployment, Service, HPA and PDB of one backend."""
    return child_name(service, backend)


def routes_name(service: str) -> str:
    """Name of the routing ConfigMap of one LLMService."""
    return child_name(service, "routes")


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a stable shortened form."""
    if len(value) <= MAX_NAME and _LABEL_VALUE.match(value):
        return value
    return shorten(value)


def selector_labels(service: str, backend: str) -> dict[str, str]:
    """The immutable labels a backend's Deployment selects its pods by."""
    return {SERVICE_LABEL: label_value(service), BACKEND_LABEL: label_value(backend)}


def labels(
    service: str, component: str, backend: str | None = None, name: str = "ballast"
) -> dict[str, str]:
    """Every label a child of LLMService ``service`` carries."""
    out = {
        "app.kubernetes.io/name": label_value(name),
        "app.kubernetes.io/instance": label_value(service),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        SERVICE_LABEL: label_value(service),
    }
    if backend is not None:
        out[BACKEND_LABEL] = label_value(backend)
    return out

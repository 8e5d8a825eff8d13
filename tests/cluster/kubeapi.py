"""A minimal, dependency-free HTTPS client for the test control plane's API server.

Tests and the fake kubelet need a handful of verbs with a client certificate or a
bearer token; the standard library does that without pulling a Kubernetes client's
own opinions (retries, caches, config loading) into what the tests measure.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiError(Exception):
    """The API server answered with an error status; `body` is its Status object."""

    def __init__(self, method: str, path: str, status: int, body: JSON) -> None:
        self.status = status
        self.body = body
        self.reason = str(body.get("reason", ""))
        message = str(body.get("message", body))
        super().__init__(f"{method} {path}: {status} {self.reason}: {message}")


@dataclass(frozen=True)
class Credentials:
    """How to authenticate: a client certificate pair, or a bearer token."""

    cert: Path | None = None
    key: Path | None = None
    token: str | None = None


def established(crd: JSON) -> bool:
    """A CustomResourceDefinition's Established condition is True (conditions may be null)."""
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )


class KubeApi:
    """Blocking JSON requests against one API server. Safe to share between threads."""

    def __init__(
        self, server: str, ca: Path, credentials: Credentials, timeout: float = 30.0
    ) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._token = credentials.token
        context = ssl.create_default_context(cafile=str(ca))
        if credentials.cert is not None:
            context.load_cert_chain(str(credentials.cert), str(credentials.key))
        self._context = context

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """Send one request; return the decoded JSON body or raise `ApiError`."""
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                status_body = json.loads(raw) if raw else {}
            except ValueError:
                status_body = {"message": raw.decode(errors="replace")}
            raise ApiError(method, path, err.code, status_body) from None
        if not raw:
            return {}
        try:
            decoded: JSON = json.loads(raw)
        except ValueError:
            return {"text": raw.decode(errors="replace")}
        return decoded

    def exists(self, path: str) -> bool:
        """True when GET ``path`` answers, False on 404 (other errors raise)."""
        try:
            self.get(path)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def get(self, path: str, **query: str) -> JSON:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: JSON) -> JSON:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def apply(self, path: str, body: JSON, field_manager: str, *, force: bool = True) -> JSON:
        """Server-side apply `body` (JSON is valid YAML) as `field_manager`."""
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return self.request("PATCH", path, body, query=query, content_type=APPLY_PATCH)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def text(self, path: str) -> str:
        """GET a plain-text endpoint such as /readyz."""
        return str(self.request("GET", path).get("text", ""))

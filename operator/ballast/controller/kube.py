"""A small asynchronous Kubernetes API client on aiohttp, for the operator's own requests.

kopf talks to the API for watching and for its own bookkeeping; everything the
operator itself reads or writes (children, status, Secrets) goes through
:class:`KubeClient`, built from the same credentials kopf logged in with (a
:class:`kopf.ConnectionInfo`). On a 401 it logs in again once. Errors are
:class:`ApiError` with the HTTP status and the ``Status`` reason; 404 on a read is
``None``, not an error. Requests carry ``User-Agent: ballast/<version> (<instance>)``
(the pod name), so audit logs tell replicas apart.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from ballast import __version__

Obj = dict[str, Any]
USER_AGENT: Final = f"ballast/{__version__}"
MERGE_PATCH: Final = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """Where objects of one kind live in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = (
            f"/api/{self.api_version}"
            if "/" not in self.api_version
            else f"/apis/{self.api_version}"
        )
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        parts = [base, self.plural, *(p for p in (name, sub) if p)]
        return "/".join(parts)


SECRETS: Final = Kind("v1", "Secret", "secrets")


class ApiError(Exception):
    """A request the API server refused, or that never reached it (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Transient: no answer, throttled, conflict, or a server-side error."""
        return self.status in (0, 409, 429) or self.status >= 500


#: Returns fresh credentials (a kopf.ConnectionInfo): called at start and after a 401.
Login = Callable[[], Awaitable[Any]]


#: Every write is recorded in managedFields under the field manager DESIGN.md names.
_MANAGER: Final = "?fieldManager=ballast"


class KubeClient:
    """JSON requests against the API server the operator is logged in to."""

    def __init__(self, login: Login, timeout: float = 30.0, instance: str | None = None) -> None:
        self._login = login
        self.user_agent = f"{USER_AGENT} ({instance})" if instance else USER_AGENT
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    async def _connect(self) -> aiohttp.ClientSession:
        if self._session is not None:
            await self._session.close()
        info = await self._login()
        self._server = str(info.server).rstrip("/")
        headers = {"User-Agent": self.user_agent, **info.as_http_headers()}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ssl=info.as_ssl_context()),
            headers=headers,
            timeout=self._timeout,
            trust_env=bool(getattr(info, "trust_env", False)),
        )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Obj:
        """One request; the JSON answer, or :class:`ApiError`. Logs in again once on a 401."""
        session = self._session or await self._connect()
        for attempt in (1, 2):
            status, text = await self._send(session, method, path, body, content_type)
            if status == 401 and attempt == 1:
                session = await self._connect()
                continue
            break
        data = _json(text)
        if status >= 400:
            raise ApiError(
                status, str(data.get("reason") or "Error"), str(data.get("message") or text[:200])
            )
        return data

    async def _send(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with session.request(
                method, self._server + path, data=data, headers=headers
            ) as rsp:
                return rsp.status, await rsp.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ApiError(0, type(e).__name__, str(e) or "no answer from the API server") from e

    async def get(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def create(self, kind: Kind, namespace: str | None, body: Obj) -> Obj:
        return await self.request("POST", kind.path(namespace) + _MANAGER, body)

    async def patch(
        self, kind: Kind, namespace: str | None, name: str, body: Obj, sub: str | None = None
    ) -> Obj:
        """A JSON merge patch (RFC 7386) of the object or of its ``sub`` resource."""
        path = kind.path(namespace, name, sub) + _MANAGER
        return await self.request("PATCH", path, body, MERGE_PATCH)

    async def replace(self, kind: Kind, namespace: str | None, name: str, body: Obj) -> Obj:
        """A PUT: the whole object, refused with 409 when its resourceVersion is stale."""
        return await self.request("PUT", kind.path(namespace, name) + _MANAGER, body)

    async def list_matching(
        self, kind: Kind, namespace: str | None, label_selector: str
    ) -> list[Obj]:
        """The objects of ``kind`` matching ``label_selector`` (one page: small lists only)."""
        query = "?" + urllib.parse.urlencode({"labelSelector": label_selector, "limit": 500})
        data = await self.request("GET", kind.path(namespace) + query)
        return [i for i in data.get("items") or () if isinstance(i, dict)]

    async def list_all(
        self, kind: Kind, namespace: str | None, label_selector: str, page: int = 500
    ) -> tuple[list[Obj], str]:
        """Every matching object, page by page, and the list's resourceVersion."""
        items: list[Obj] = []
        token = ""
        while True:
            params = {"labelSelector": label_selector, "limit": str(page)}
            if token:
                params["continue"] = token
            data = await self.request(
                "GET", kind.path(namespace) + "?" + urllib.parse.urlencode(params)
            )
            items += [i for i in data.get("items") or () if isinstance(i, dict)]
            meta = data.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def watch(
        self, kind: Kind, namespace: str | None, label_selector: str, version: str, seconds: int
    ) -> AsyncIterator[Obj]:
        """Watch events (``{"type", "object"}``) from ``version`` until the server ends the watch.

        Raises :class:`ApiError` (status 410 when ``version`` is too old to resume from).
        """
        params = {
            "labelSelector": label_selector,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        path = kind.path(namespace) + "?" + urllib.parse.urlencode(params)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=seconds + 60)
        for attempt in (1, 2):
            session = self._session or await self._connect()
            try:
                async with session.get(self._server + path, timeout=timeout) as rsp:
                    if rsp.status == 401 and attempt == 1:
                        await self._connect()
                        continue
                    if rsp.status != 200:
                        data = _json(await rsp.text())
                        raise ApiError(
                            rsp.status,
                            str(data.get("reason") or "Error"),
                            str(data.get("message") or ""),
                        )
                    while line := await rsp.content.readuntil(b"\n"):
                        if line.strip():
                            event = json.loads(line)
                            if isinstance(event, dict):
                                yield event
                    return
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                raise ApiError(0, type(e).__name__, str(e) or "watch ended") from e

    async def delete(
        self, kind: Kind, namespace: str | None, name: str, resource_version: str | None = None
    ) -> bool:
        """Delete with background propagation; False when it was already gone.

        ``resource_version``: only that version (409 Conflict when it changed meanwhile).
        """
        options: Obj = {"propagationPolicy": "Background"}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        try:
            await self.request("DELETE", kind.path(namespace, name), options)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True


def _json(text: str) -> Obj:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}

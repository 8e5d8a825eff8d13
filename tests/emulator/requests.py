"""Parsing requests into kmock's ``Request`` (with the namespaces path fixed) and holding writes.

kmock 0.8's path parser raises on ``/api/v1/namespaces`` and reads
``/api/v1/namespaces/NAME`` as a namespace with no resource; Namespaces are a
resource like any other here. :class:`Hold` lets a test stop matching writes
in flight (to kill the operator mid-reconcile, for instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp.web
from kmock._internal import enums, parsing, references, rendering

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def parse_path(path: str) -> parsing.ParsedPath:
    """kmock's parser, plus the cluster-scoped ``namespaces`` resource."""
    parts = path.strip("/").split("/")
    namespace_itself = len(parts) in (3, 4) or (len(parts) == 5 and parts[4] == "status")
    if parts[:3] == ["api", "v1", "namespaces"] and namespace_itself:
        name = parts[3] if len(parts) > 3 else None
        sub = parts[4] if len(parts) > 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, sub)
    return parsing.parse_path(path)


async def parse_request(raw: aiohttp.web.BaseRequest, *, id: int) -> rendering.Request:
    """What ``kmock.Request._parse`` does, with :func:`parse_path`."""
    body = await raw.read()
    text = await raw.text()
    try:
        data = await raw.json() if body else None
    except ValueError:
        data = None
    k8s = parse_path(raw.path)
    resource = (
        None
        if k8s.group is None
        else references.resource(group=k8s.group, version=k8s.version, plural=k8s.plural)
    )
    action = parsing.guess_k8s(k8s, enums.method(raw.method), dict(raw.query))
    return rendering.Request(
        id=id,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=dict(raw.query),
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        data=data,
        body=body,
        text=text,
        action=action,
        resource=resource,
        namespace=k8s.namespace,
        name=k8s.name,
        subresource=k8s.subresource,
    )


class Hold:
    """Write requests matching ``where`` wait in the server until :meth:`release`."""

    def __init__(self, where: Callable[[rendering.Request], bool]) -> None:
        self.where = where
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    async def wait(self, request: rendering.Request) -> None:
        if self._released.is_set() or not self.where(request):
            return
        self.reached.set()
        await self._released.wait()

    def release(self) -> None:
        self._released.set()

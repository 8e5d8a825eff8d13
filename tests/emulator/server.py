"""``KubeEmulator``: kmock's Kubernetes scaffold with a store that behaves like an API server.

kmock 0.8 (pinned in pyproject) gives the HTTP server, API discovery, Status
error bodies, the request log and its reaction DSL for fault injection. Its own
``KubernetesEmulator`` stores objects as plain merged JSON, which is not enough
for kopf or for Ballast's operator (see ``tests/emulator/README.md``), so this
subclass keeps kmock's scaffold and serves every object request from
:class:`~tests.emulator.store.Store` instead:

* create 201 / 409, get, list (labelSelector, fieldSelector, list resourceVersion),
  PUT with optimistic concurrency, merge patch and JSON patch (strategic merge and
  server-side apply answer 415: not emulated, never silently misapplied),
  ``/status`` confinement, delete with finalizers and garbage collection;
* watch: ``resourceVersion`` replay from the event log (410 when expired), the
  full list then live events otherwise, selectors applied to old and new object
  (an object leaving the selector is a DELETED event), ``timeoutSeconds``;
* ``GET /api/v1/namespaces`` (kmock's path parser crashes on it: fixed here).

User reactions added with kmock's DSL still take precedence over all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dsl, rendering

from tests.emulator.errors import ApiError
from tests.emulator.requests import WRITE_METHODS, Hold, parse_request
from tests.emulator.semantics import field_matcher, json_patch, label_matcher, merge_patch
from tests.emulator.store import Event, Kind, Obj, Store

_CLOSED = object()


def _is_object_request(request: rendering.Request) -> bool:
    res = request.resource
    return res is not None and bool(res.plural) and res.version is not None


def _ok(payload: Any, status: int = 200) -> kmock.Response:
    # Always a Response with an explicit status: kmock keeps the last status on the reaction.
    return kmock.Response(status=status, payload=payload)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesScaffold):
    """An in-process Kubernetes API for tests; see the module docstring for what it emulates."""

    store: Store = attrs.field(factory=Store)
    url_base: str = ""
    holds: list[Hold] = attrs.field(factory=list, init=False)
    faults: list[tuple[Callable[[rendering.Request], bool], ApiError]] = attrs.field(
        factory=list, init=False
    )
    _watches: list[asyncio.Queue[Any]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for kind in self.store.kinds.values():
            self.resources[kind.ref] = kind.info()
        self.fallback[_is_object_request] << self._serve

    # -- kmock entry point (request parsing fixed for /api/v1/namespaces) ---------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await raw_request.read()
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                raise (e.__cause__ or e) from None
        except Exception as e:
            if self._errors:
                self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """kmock's dispatch, matching each reaction's filters against this request only.

        kmock checks ``request in reaction`` by filtering the whole request log, which
        makes every request cost O(requests so far): quadratic over a benchmark run.
        """
        width = max((len(p.priorities) for p in self._payloads), default=0)
        ranked = sorted(
            self._payloads,
            key=lambda p: tuple(-x for x in p.priorities) + (0,) * (width - len(p.priorities)),
        )
        for payload in ranked:
            if payload._disabled.is_set() or not _sees(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:
                payload._disabled.set()
            except NotImplementedError:
                continue
        raise NotImplementedError("no reaction matches the request")

    # -- the request log -------------------------------------------------------

    @property
    def requests(self) -> list[rendering.Request]:
        """Every request served so far, in order (kmock's log)."""
        return list(self._requests)

    def writes(
        self, since: int = 0, where: Callable[[rendering.Request], bool] | None = None
    ) -> list[rendering.Request]:
        """Write requests (POST, PUT, PATCH, DELETE) from index ``since`` on, optionally filtered."""
        return [
            r
            for r in self._requests[since:]
            if r.method.value in WRITE_METHODS and (where is None or where(r))
        ]

    def hold(self, where: Callable[[rendering.Request], bool]) -> Hold:
        """Make matching write requests wait until the returned hold is released."""
        hold = Hold(where)
        self.holds.append(hold)
        return hold

    def fail(
        self, where: Callable[[rendering.Request], bool], error: ApiError
    ) -> Callable[[], None]:
        """Answer matching requests with ``error`` until the returned function is called."""
        fault = (where, error)
        self.faults.append(fault)
        return lambda: self.faults.remove(fault)

    def close_watches(self) -> None:
        """End every open watch stream (before shutting the server down)."""
        for queue in self._watches:
            queue.put_nowait(_CLOSED)

    # -- serving ---------------------------------------------------------------

    async def _serve(self, request: rendering.Request) -> kmock.Response:
        res = request.resource
        if res is None or res.plural is None or res.version is None or res.group is None:
            raise ApiError(404, "NotFound", "not an object request")
        kind = self.store.kind(res.group, res.version, res.plural)
        method = request.method.value
        if method in WRITE_METHODS:
            for hold in list(self.holds):
                await hold.wait(request)
        for where, error in list(self.faults):
            if where(request):
                raise error
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return _ok(self._watch(kind, request.namespace, request.name, request.params))
        if method == "GET":
            return _ok(self._read(kind, request))
        if method == "POST" and request.name is None:
            return _ok(self.store.create(kind, request.namespace, self._json(request)), 201)
        if request.name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        return _ok(self._write(kind, request, method))

    def _json(self, request: rendering.Request) -> Obj:
        if not isinstance(request.data, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        return request.data

    def _read(self, kind: Kind, request: rendering.Request) -> Obj:
        if request.name is not None:
            return self.store.get(kind, request.namespace, request.name)
        labels = label_matcher(request.params.get("labelSelector"))
        fields = field_matcher(request.params.get("fieldSelector"))
        items, rv = self.store.list(kind, request.namespace)
        items = [o for o in items if labels(o["metadata"].get("labels") or {}) and fields(o)]
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def _write(self, kind: Kind, request: rendering.Request, method: str) -> Obj:
        ns, name, sub = request.namespace, request.name or "", request.subresource
        if method == "PUT":
            body = self._json(request)
            return self.store.write(kind, ns, name, lambda _: body, sub)
        if method == "PATCH":
            content_type = _header(request, "Content-Type").split(";")[0].strip()
            data = request.data
            if content_type == "application/merge-patch+json":
                return self.store.write(kind, ns, name, lambda o: merge_patch(o, data), sub)
            if content_type == "application/json-patch+json":
                return self.store.write(kind, ns, name, lambda o: json_patch(o, data), sub)
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the emulator does not implement {content_type or 'this patch type'} "
                "(merge-patch+json and json-patch+json only)",
            )
        if method == "DELETE":
            options = request.data if isinstance(request.data, dict) else {}
            if sub is not None:
                raise ApiError(405, "MethodNotAllowed", "cannot delete a subresource")
            if options.get("propagationPolicy") == "Orphan":
                self.store.orphan(kind, ns, name)
            return self.store.delete(kind, ns, name, options.get("preconditions"))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    # -- watching --------------------------------------------------------------

    async def _watch(
        self, kind: Kind, namespace: str | None, name: str | None, params: dict[str, str]
    ) -> AsyncIterator[Any]:
        yield b""  # send the headers now: the stream is open even if nothing happens
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"))

        def match(obj: Obj | None) -> bool:
            return (
                obj is not None
                and (namespace is None or obj["metadata"].get("namespace") == namespace)
                and (name is None or obj["metadata"].get("name") == name)
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
            )

        queue: asyncio.Queue[Any] = asyncio.Queue()

        def listen(event: Event) -> None:
            if event.kind == kind:
                queue.put_nowait(event)

        # Subscribe and take the starting point in one synchronous step: no event is lost.
        self.store.listeners.append(listen)
        self._watches.append(queue)
        try:
            for item in self._start(kind, namespace, params, match):
                yield item
                if item.get("type") == "ERROR":
                    return
            timeout = float(params.get("timeoutSeconds") or 0) or None
            async with contextlib.AsyncExitStack() as stack:
                if timeout is not None:
                    await stack.enter_async_context(asyncio.timeout(timeout))
                while (event := await queue.get()) is not _CLOSED:
                    if (out := _translate(event, match)) is not None:
                        yield out
        except TimeoutError:
            return
        finally:
            self.store.listeners.remove(listen)
            self._watches.remove(queue)

    def _start(
        self,
        kind: Kind,
        namespace: str | None,
        params: dict[str, str],
        match: Callable[[Obj | None], bool],
    ) -> list[dict[str, Any]]:
        since = params.get("resourceVersion")
        if since in (None, "", "0"):
            items, _ = self.store.list(kind, namespace)
            return [{"type": "ADDED", "object": o} for o in items if match(o)]
        try:
            events = self.store.events_since(int(since))
        except ApiError as e:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
            return [{"type": "ERROR", "object": {**status, "code": e.status, "reason": e.reason}}]
        return [out for e in events if e.kind == kind and (out := _translate(e, match))]


def _sees(view: Any, request: rendering.Request) -> bool:
    """Whether ``view`` would list ``request``, evaluated on this request alone where possible."""
    if isinstance(view, dsl.Root):
        return True
    if isinstance(view, dsl.Filter):
        return bool(view.criteria(request)) and _sees(view._source, request)
    if type(view) in (dsl.Priority, dsl.Chained):
        return _sees(view._source, request)
    return request in view  # slices, groups, exclusions: kmock's own (history-based) answer


def _translate(event: Event, match: Callable[[Obj | None], bool]) -> dict[str, Any] | None:
    """The event as a watcher with this selector sees it (entering/leaving it is ADDED/DELETED)."""
    now, before = match(event.obj), match(event.old)
    if event.type == "MODIFIED":
        type_ = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
    elif event.type == "DELETED":
        type_ = "DELETED" if now or before else None
    else:
        type_ = event.type if now else None
    return None if type_ is None else {"type": type_, "object": event.obj}


def _header(request: rendering.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return ""


__all__ = ["KubeEmulator"]

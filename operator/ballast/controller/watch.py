"""The managed children, watched by Ballast itself: one list+watch per kind (and namespace).

Why not kopf handlers: kopf runs one worker task per watched object, and at start-up
it lists every child of every LLMService at once, so 1,000 services meant ~8,000
workers (each with its queue and the object's body) waiting for the indices to
fill; the allocator kept that peak after a restart. The children need much less:
an index of small :class:`~.children.Child` entries by owner, and a callback for
the few events that matter (a child deleted or edited by hand, a Deployment's
ready count, a loader Job finishing).

:class:`ChildWatch` lists (in pages) with the ``app.kubernetes.io/managed-by=ballast``
selector, then watches from the list's resourceVersion with bookmarks. The initial
list of every kind completes before kopf handles any LLMService
(:meth:`ChildWatches.start` runs in kopf's startup handler), so a reconcile after a
restart sees every existing child, as kopf's indices did. On "410 Gone" or any
error it lists again and replays the differences as events (a child deleted while
the watch was down is restored like any other); errors back off 0.5 s doubling to
10 s. Events are handled one at a time, in order, per kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ballast.controller.children import Child, Owner, child_of
from ballast.controller.kube import ApiError, Kind, KubeClient

logger = logging.getLogger("ballast.controller")

Obj = dict[str, Any]
#: ``(kind, event type, body, status_only)``: a child changed after the initial list;
#: ``status_only`` when only its status moved (same ``metadata.generation``, labels,
#: annotations and owners), which cannot be a hand edit to put back.
OnEvent = Callable[[str, str, Mapping[str, Any], bool], Awaitable[None]]
ObjectKey = tuple[str, str]


class ChildWatch:
    """One kind's children by owner, kept equal to the API by list+watch."""

    def __init__(
        self,
        kube: KubeClient,
        kind: Kind,
        selector: str,
        on_event: OnEvent,
        namespaces: Sequence[str] = (),
        watch_seconds: int = 300,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.selector = selector
        self.on_event = on_event
        self.scopes: list[str | None] = list(namespaces) or [None]
        self.watch_seconds = watch_seconds
        #: owner -> {name: Child}
        self._by_owner: dict[Owner, dict[str, Child]] = {}
        #: (namespace, name) -> (resourceVersion, owners, shape): to update and remove entries
        self._objects: dict[ObjectKey, tuple[str, tuple[Owner, ...], int | None]] = {}
        self._versions: dict[str | None, str] = {}

    # -- the index --------------------------------------------------------------------

    def get(self, owner: Owner, default: Any = None) -> Iterable[Child] | None:
        """The children naming ``owner`` (the ``IndexLike`` protocol of :mod:`.children`)."""
        found = self._by_owner.get(owner)
        return list(found.values()) if found else default

    def __len__(self) -> int:
        return len(self._objects)

    def _key(self, body: Mapping[str, Any]) -> ObjectKey:
        meta = body.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def _remove(self, key: ObjectKey) -> None:
        _, owners, _ = self._objects.pop(key, ("", (), None))
        for owner in owners:
            children = self._by_owner.get(owner)
            if children is not None:
                children.pop(key[1], None)
                if not children:
                    del self._by_owner[owner]

    def _put(self, body: Mapping[str, Any]) -> bool:
        """Index ``body``; True when only its status changed since the last version seen."""
        key = self._key(body)
        before = self._objects.get(key)
        self._remove(key)
        entries = child_of(body)
        for owner, child in entries.items():
            self._by_owner.setdefault(owner, {})[child.name] = child
        meta = body.get("metadata") or {}
        shape = _shape(meta)
        self._objects[key] = (str(meta.get("resourceVersion") or ""), tuple(entries), shape)
        return shape is not None and before is not None and before[2] == shape

    # -- list and watch ---------------------------------------------------------------

    async def sync(self) -> None:
        """List every scope once (the initial fill: no events)."""
        for scope in self.scopes:
            await self._list(scope, replay=False)

    async def _list(self, scope: str | None, replay: bool) -> None:
        items, version = await self.kube.list_all(self.kind, scope, self.selector)
        seen: set[ObjectKey] = set()
        changed: list[tuple[str, Obj, bool]] = []
        for item in items:
            body = (
                item if "kind" in item else {**item, "kind": self.kind.kind}
            )  # list items lack it
            key = self._key(body)
            seen.add(key)
            before = self._objects.get(key)
            rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
            status_only = self._put(body)
            if before is None or before[0] != rv:
                changed.append(("ADDED" if before is None else "MODIFIED", body, status_only))
        gone = [k for k in self._objects if (scope is None or k[0] == scope) and k not in seen]
        for key in gone:
            changed.append(("DELETED", self._stub(key), False))
            self._remove(key)
        self._versions[scope] = version
        if replay:
            for event_type, body, status_only in changed:
                await self._deliver(event_type, body, status_only)

    def _stub(self, key: ObjectKey) -> Obj:
        """A body for a child that vanished while the watch was down: its owners, no more."""
        _, owners, _ = self._objects[key]
        refs = []
        for owner in owners:
            for child in (self._by_owner.get(owner) or {}).values():
                if child.name == key[1]:
                    refs.append(
                        {
                            "apiVersion": "ballast.dev/v1alpha1",
                            "kind": "LLMService",
                            "name": owner[1],
                            "uid": child.owner_uid,
                            "controller": len(owners) == 1,
                        }
                    )
        return {
            "kind": self.kind.kind,
            "metadata": {"namespace": key[0], "name": key[1], "ownerReferences": refs},
        }

    async def run(self) -> None:
        """Follow every scope until cancelled."""
        await asyncio.gather(*(self._follow(scope) for scope in self.scopes))

    async def _follow(self, scope: str | None) -> None:
        delay = 0.5
        where = f"{self.kind.plural} in {scope or 'all namespaces'}"
        while True:
            try:
                await self._watch(scope)
                delay = 0.5
                continue  # the server ended the watch: resume from the last version
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status != 410:
                    logger.warning("watching %s: %s; listing again", where, e)
            except Exception:  # a malformed event or a bug: never stop following
                logger.exception("watching %s failed; listing again", where)
            try:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                await self._list(scope, replay=True)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("listing %s: %s", where, e)

    async def _watch(self, scope: str | None) -> None:
        version = self._versions.get(scope, "")
        stream = self.kube.watch(self.kind, scope, self.selector, version, self.watch_seconds)
        async for event in stream:
            event_type, body = str(event.get("type")), event.get("object")
            if not isinstance(body, dict):
                raise ApiError(0, "MalformedEvent", str(event)[:200])
            if event_type == "ERROR":
                raise ApiError(
                    int(body.get("code") or 0), str(body.get("reason")), str(body.get("message"))
                )
            version = str((body.get("metadata") or {}).get("resourceVersion") or version)
            self._versions[scope] = version
            if event_type == "BOOKMARK":
                continue
            status_only = False
            if event_type == "DELETED":
                self._remove(self._key(body))
            else:
                status_only = self._put(body)
            await self._deliver(event_type, body, status_only)

    async def _deliver(self, event_type: str, body: Mapping[str, Any], status_only: bool) -> None:
        try:
            await self.on_event(self.kind.kind, event_type, body, status_only)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handling %s %s failed", event_type, self._key(body))


def _shape(meta: Mapping[str, Any]) -> int | None:
    """A digest of what a hand edit could change, for kinds with ``metadata.generation``
    (bumped by every spec change); None for kinds without it (ConfigMaps, Services)."""
    generation = meta.get("generation")
    if generation is None:
        return None
    owners = [(r.get("uid"), r.get("controller")) for r in meta.get("ownerReferences") or ()]
    labels = sorted((meta.get("labels") or {}).items())
    annotations = sorted((meta.get("annotations") or {}).items())
    return hash((generation, repr(labels), repr(annotations), repr(owners)))


class ChildWatches:
    """Every managed kind's :class:`ChildWatch`: filled once at start-up, then followed."""

    def __init__(self, watches: Sequence[ChildWatch]) -> None:
        self.watches = list(watches)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """The initial lists (concurrently), then one background task per kind."""
        await asyncio.gather(*(w.sync() for w in self.watches))
        for w in self.watches:
            self._tasks.append(asyncio.create_task(w.run(), name=f"watch {w.kind.plural}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

"""The emulator's object store: the documented semantics of the Kubernetes API on plain dicts.

What it guarantees (each covered by ``tests/emulator/test_store.py``):

* every write bumps one cluster-wide ``metadata.resourceVersion``; a write that
  changes nothing bumps nothing and emits no event;
* ``metadata.uid``, ``creationTimestamp`` and ``generation`` (for kinds that track
  it: bumped on any change outside ``metadata`` and ``status``) are server-owned;
* a stale ``metadata.resourceVersion`` in an update or merge patch is a 409
  Conflict; creating an existing name is a 409 AlreadyExists;
* kinds with a ``status`` subresource: the main resource ignores ``status`` (also
  on create) and ``/status`` ignores everything but ``status``;
* deletion honours finalizers (``deletionTimestamp`` first, removal when the last
  finalizer goes) and then garbage-collects dependents whose owners are all gone,
  as the garbage collector does with background propagation (``Orphan`` skips it);
* an append-only event log (bounded) from which watches replay by resourceVersion;
  an expired resourceVersion is 410 Gone.
"""

from __future__ import annotations

import bisect
import copy
import datetime
import itertools
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.emulator.errors import ApiError, already_exists, conflict, not_found
from tests.emulator.resources import DEFAULT_KINDS, Kind

Obj = dict[str, Any]
Key = tuple[str, str | None, str]  # (kind path, namespace, name)
_SERVER_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp")


@dataclass(frozen=True)
class Event:
    """One change, as a watch stream reports it; ``old`` is the object before the change."""

    rv: int
    kind: Kind
    type: str
    obj: Obj
    old: Obj | None


Listener = Callable[[Event], None]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path(kind: Kind) -> str:
    return f"{kind.group}/{kind.version}/{kind.plural}"


def _body(obj: Obj) -> Obj:
    """The parts that count for ``generation``: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    """All objects of an emulated cluster, keyed by resource, namespace and name."""

    def __init__(self, kinds: tuple[Kind, ...] = DEFAULT_KINDS, history: int = 20_000) -> None:
        self.kinds = {_path(k): k for k in kinds}
        self._objects: dict[Key, Obj] = {}
        self._by_uid: dict[str, Key] = {}
        self._dependents: dict[str, set[Key]] = {}
        self._rv = itertools.count(1)
        self.resource_version = 0
        self.history = history
        self.events: list[Event] = []
        self.listeners: list[Listener] = []

    # -- lookup ---------------------------------------------------------------

    def kind(self, group: str, version: str, plural: str) -> Kind:
        try:
            return self.kinds[f"{group}/{version}/{plural}"]
        except KeyError:
            raise ApiError(404, "NotFound", f"the server could not find {plural}") from None

    def _key(self, kind: Kind, namespace: str | None, name: str) -> Key:
        return (_path(kind), namespace if kind.namespaced else None, name)

    def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        obj = self._objects.get(self._key(kind, namespace, name))
        if obj is None:
            raise not_found(kind.plural, name)
        return copy.deepcopy(obj)

    def find(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        """The object or None (a live reference: do not modify)."""
        return self._objects.get(self._key(kind, namespace, name))

    def items(self, kind: Kind, namespace: str | None = None) -> Iterator[Obj]:
        """Live references to every object of ``kind`` (in ``namespace`` if given)."""
        path = _path(kind)
        for (p, ns, _), obj in list(self._objects.items()):
            if p == path and (namespace is None or ns == namespace):
                yield obj

    def list(self, kind: Kind, namespace: str | None = None) -> tuple[list[Obj], int]:
        """Copies of the objects, sorted by namespace and name, and the current resourceVersion."""
        objs = sorted(self.items(kind, namespace), key=lambda o: _ident(o))
        return [copy.deepcopy(o) for o in objs], self.resource_version

    # -- events ---------------------------------------------------------------

    def _emit(self, kind: Kind, type_: str, obj: Obj, old: Obj | None) -> None:
        event = Event(int(obj["metadata"]["resourceVersion"]), kind, type_, copy.deepcopy(obj), old)
        self.events.append(event)
        if len(self.events) > self.history:
            del self.events[: len(self.events) - self.history]
        for listener in list(self.listeners):
            listener(event)

    def events_since(self, rv: int) -> list[Event]:
        """Events after ``rv``; 410 Gone when ``rv`` is older than the retained log."""
        oldest = self.events[0].rv if self.events else self.resource_version + 1
        if rv < oldest - 1 and rv < self.resource_version:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({oldest - 1})")
        return self.events[bisect.bisect_right(self.events, rv, key=lambda e: e.rv) :]

    def _bump(self, obj: Obj) -> None:
        self.resource_version = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self.resource_version)

    # -- writes ---------------------------------------------------------------

    def create(self, kind: Kind, namespace: str | None, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name") or self._generate(meta.get("generateName"))
        namespace = self._namespace(kind, namespace, meta)
        if self._key(kind, namespace, name) in self._objects:
            raise already_exists(kind.plural, name)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        for field in _SERVER_META:
            meta.pop(field, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now())
        if namespace is not None:
            meta["namespace"] = namespace
        if kind.generation:
            meta["generation"] = 1
        if kind.status:
            obj.pop("status", None)
        self._bump(obj)
        key = self._key(kind, namespace, name)
        self._objects[key] = obj
        self._by_uid[meta["uid"]] = key
        self._index_owners(key, obj, add=True)
        self._emit(kind, "ADDED", obj, None)
        self._collect({key})
        return copy.deepcopy(obj)

    def _generate(self, prefix: str | None) -> str:
        if not prefix:
            raise ApiError(422, "Invalid", "metadata.name or metadata.generateName is required")
        return prefix + secrets.token_hex(3)[:5]

    def _namespace(self, kind: Kind, namespace: str | None, meta: Obj) -> str | None:
        if not kind.namespaced:
            return None
        body_ns = meta.get("namespace")
        if namespace and body_ns and body_ns != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        namespace = namespace or body_ns
        if not namespace:
            raise ApiError(400, "BadRequest", "a namespace is required")
        ns_kind = self.kinds.get("/v1/namespaces")
        if ns_kind is not None and self.find(ns_kind, None, namespace) is None:
            raise not_found("namespaces", namespace)
        return namespace

    def write(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        subresource: str | None = None,
    ) -> Obj:
        """Replace the object with ``change(copy)``, keeping server-owned fields and scope."""
        key = self._key(kind, namespace, name)
        old = self._objects.get(key)
        if old is None:
            raise not_found(kind.plural, name)
        if subresource not in (None, "status") or (subresource and not kind.status):
            raise ApiError(404, "NotFound", f"{kind.plural}/{subresource} is not served")
        new = change(copy.deepcopy(old))
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict(kind.plural, name)
        new = self._confine(kind, old, new, subresource)
        if new == old:
            return copy.deepcopy(old)
        if kind.generation and _body(new) != _body(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        self._bump(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(kind, key, new, old)
            return copy.deepcopy(new)
        self._index_owners(key, old, add=False)
        self._index_owners(key, new, add=True)
        self._objects[key] = new
        self._emit(kind, "MODIFIED", new, old)
        self._collect({key})
        return copy.deepcopy(new)

    def _confine(self, kind: Kind, old: Obj, new: Obj, subresource: str | None) -> Obj:
        """Keep what this write may not change: other scope, identity, server-owned metadata."""
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            return result
        if kind.status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(422, "Invalid", "metadata must be an object")
        for field in (*_SERVER_META, "name", "namespace"):
            meta.pop(field, None)
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        return new

    def delete(
        self, kind: Kind, namespace: str | None, name: str, preconditions: Obj | None = None
    ) -> Obj:
        key = self._key(kind, namespace, name)
        old = self._objects.get(key)
        if old is None:
            raise not_found(kind.plural, name)
        for field in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != old["metadata"].get(field):
                raise conflict(kind.plural, name)
        new = copy.deepcopy(old)
        if not old["metadata"].get("finalizers"):
            self._bump(new)
            self._remove(kind, key, new, old)
        elif not old["metadata"].get("deletionTimestamp"):
            new["metadata"]["deletionTimestamp"] = _now()
            if kind.generation:
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            self._bump(new)
            self._objects[key] = new
            self._emit(kind, "MODIFIED", new, old)
        return copy.deepcopy(new)

    def _remove(self, kind: Kind, key: Key, obj: Obj, old: Obj) -> None:
        del self._objects[key]
        uid = obj["metadata"]["uid"]
        self._by_uid.pop(uid, None)
        self._index_owners(key, old, add=False)
        self._emit(kind, "DELETED", obj, old)
        self._collect(self._dependents.pop(uid, set()))

    def _index_owners(self, key: Key, obj: Obj, add: bool) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            uid = ref.get("uid")
            if add:
                self._dependents.setdefault(uid, set()).add(key)
            elif uid in self._dependents:
                self._dependents[uid].discard(key)

    def _collect(self, keys: set[Key]) -> None:
        """Garbage-collect those of ``keys`` whose owners are all gone (background propagation)."""
        for key in sorted(keys, key=lambda k: (k[0], k[1] or "", k[2])):
            obj = self._objects.get(key)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if refs and all(r.get("uid") not in self._by_uid for r in refs):
                self.delete(self.kinds[key[0]], key[1], key[2])

    def orphan(self, kind: Kind, namespace: str | None, name: str) -> None:
        """What ``propagationPolicy: Orphan`` does first: dependents lose this owner reference."""
        uid = self.get(kind, namespace, name)["metadata"]["uid"]
        for dep_key in sorted(self._dependents.get(uid, set())):
            self.write(self.kinds[dep_key[0]], dep_key[1], dep_key[2], _drop_owner(uid))


def _ident(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name") or "")


def _drop_owner(uid: str) -> Callable[[Obj], Obj]:
    def change(obj: Obj) -> Obj:
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            obj["metadata"]["ownerReferences"] = refs
        else:
            obj["metadata"].pop("ownerReferences", None)
        return obj

    return change

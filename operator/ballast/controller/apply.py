"""Executing a plan: the only code that creates, patches or deletes children.

:mod:`.plan` decides; :class:`Applier` performs the actions in order and
remembers each write in the service's record until the watch shows it, so a
second reconcile right after the first plans nothing. Two races with the watch
are handled here because only the API can answer them: a create that finds the
object already there (the index had not seen it yet) reads it once and adopts
it when it is ours and in sync, or refuses it as a :class:`~.plan.Conflict` when
another owner controls it; a patch of an object deleted meanwhile creates it.

Shared children (a model cache's claim and loader Job) are adopted and released
instead: a create that finds one already there (another LLMService's) adds this
service's ownerReference to it, and a delete removes only that reference, deleting
the object when no LLMService is left holding it. Both write with the object's
resourceVersion, so two services adopting or releasing at once cannot lose a
reference (the loser gets 409 and retries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ballast.controller.kube import ApiError, Kind, KubeClient
from ballast.controller.patches import applied_fields, patch_for
from ballast.controller.plan import (
    Action,
    Conflict,
    Create,
    Delete,
    Patch,
    fields_in,
    hash_of,
    in_sync,
    key_of,
)
from ballast.controller.record import ServiceRecord
from ballast.naming import MANAGED_BY
from ballast.permissions import MANAGED_KINDS, SHARED_KINDS

Obj = dict[str, Any]
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
Outcome = Literal["created", "patched", "deleted", "unchanged"]

#: kind name -> where it lives in the API, for every kind the operator manages.
KINDS: Final[Mapping[str, Kind]] = {
    k.kind: Kind(k.api_version, k.kind, k.plural) for k in MANAGED_KINDS
}


def _rv(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def name_conflict(namespace: str, kind: str, name: str) -> ApiError:
    return ApiError(
        409,
        "NameConflict",
        f"{kind} {namespace}/{name} already exists and is not managed by this "
        f"LLMService; rename the service or backend, or delete that {kind}",
    )


@dataclass
class Applied:
    """What one execution changed, as ``Kind/name`` strings."""

    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.patched or self.deleted)

    def record(self, outcome: Outcome, action: Action) -> None:
        name = "/".join(action.key)
        if outcome == "created":
            self.created.append(name)
        elif outcome == "patched":
            self.patched.append(name)
        elif outcome == "deleted":
            self.deleted.append(name)


class Applier:
    """Performs plans for one service at a time (the caller holds the record's lock)."""

    def __init__(
        self,
        kube: KubeClient,
        owner_alive: Callable[[ServiceRecord], Awaitable[bool]] | None = None,
    ) -> None:
        self.kube = kube
        #: Asked before a child that vanished under a patch is created again: a child goes
        #: when its LLMService is deleted (garbage collection), and the operator's index of
        #: LLMServices can lag behind that by a moment. None: always create again.
        self.owner_alive = owner_alive

    async def execute(self, record: ServiceRecord, actions: Sequence[Action]) -> Applied:
        """Perform every action; a :class:`Conflict` fails the plan after the others ran."""
        applied = Applied()
        conflict: Conflict | None = None
        for action in actions:
            if isinstance(action, Conflict):
                conflict = conflict or action
                continue
            applied.record(await self.perform(record, action), action)
        if conflict is not None:
            raise name_conflict(record.owner[0], *conflict.key)
        return applied

    async def perform(self, record: ServiceRecord, action: Action) -> Outcome:
        """One action; raises :class:`ApiError` when the API refuses it."""
        if isinstance(action, Create):
            return await self._create(record, action.obj)
        if isinstance(action, Patch):
            return await self._patch(record, action.obj, action.body)
        if isinstance(action, Delete):
            kind, name = action.key
            if kind in SHARED_KINDS:
                return await self._release(record, kind, name)
            gone = await self.kube.delete(KINDS[kind], record.owner[0], name)
            record.note(action.key, None)
            return "deleted" if gone else "unchanged"
        raise name_conflict(record.owner[0], *action.key)

    async def _create(self, record: ServiceRecord, obj: Obj) -> Outcome:
        """Create; on AlreadyExists adopt our in-sync object, patch our stale one, refuse others'."""
        kind, name = key_of(obj)
        namespace = record.owner[0]
        try:
            created = await self.kube.create(KINDS[kind], namespace, obj)
        except ApiError as e:
            if e.status != 409:
                raise
            live = await self.kube.get(KINDS[kind], namespace, name)
            if kind in SHARED_KINDS:
                return await self._adopt(record, obj, live)
            if live is not None and controller_uid(live) != controller_uid(obj):
                raise name_conflict(namespace, kind, name) from None
            if live is not None and in_sync(live, obj):
                record.note((kind, name), hash_of(obj), _rv(live), fields_in(obj))
                return "unchanged"
            base = applied_fields(fields_in(live)) if live is not None else None
            return await self._patch(record, obj, patch_for(obj, base))
        record.note((kind, name), hash_of(obj), _rv(created), fields_in(obj))
        return "created"

    async def _adopt(self, record: ServiceRecord, obj: Obj, live: Obj | None) -> Outcome:
        """Add this service's ownerReference to a shared child another service created."""
        kind, name = key_of(obj)
        namespace = record.owner[0]
        if live is None:  # deleted between the create and the read: create it again
            created = await self.kube.create(KINDS[kind], namespace, obj)
            record.note((kind, name), hash_of(obj), _rv(created))
            return "created"
        meta = live.get("metadata") or {}
        if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            raise name_conflict(namespace, kind, name)
        refs = list(meta.get("ownerReferences") or [])
        mine = obj["metadata"].get("ownerReferences") or []
        if not mine or any(r.get("uid") == mine[0].get("uid") for r in refs):
            record.note((kind, name), hash_of(live), _rv(live))
            return "unchanged"
        body = {"metadata": {"ownerReferences": refs + mine, "resourceVersion": _rv(live)}}
        written = await self.kube.patch(KINDS[kind], namespace, name, body)
        record.note((kind, name), hash_of(written), _rv(written))
        return "patched"

    async def _release(self, record: ServiceRecord, kind: str, name: str) -> Outcome:
        """Drop this service's ownerReference; delete the object when no user is left."""
        namespace = record.owner[0]
        live = await self.kube.get(KINDS[kind], namespace, name)
        record.note((kind, name), None)
        if live is None:
            return "unchanged"
        meta = live.get("metadata") or {}
        refs = list(meta.get("ownerReferences") or [])
        rest = [r for r in refs if r.get("uid") != record.uid]
        if len(rest) == len(refs):
            return "unchanged"
        if not any(r.get("kind") == "LLMService" for r in rest):
            gone = await self.kube.delete(KINDS[kind], namespace, name, _rv(live))
            return "deleted" if gone else "unchanged"
        body = {"metadata": {"ownerReferences": rest, "resourceVersion": _rv(live)}}
        await self.kube.patch(KINDS[kind], namespace, name, body)
        return "deleted"

    async def _patch(self, record: ServiceRecord, obj: Obj, body: Obj) -> Outcome:
        kind, name = key_of(obj)
        try:
            written = await self.kube.patch(KINDS[kind], record.owner[0], name, body)
            outcome: Outcome = "patched"
        except ApiError as e:
            if e.status != 404:
                raise
            if self.owner_alive is not None and not await self.owner_alive(record):
                return "unchanged"  # its LLMService is gone: the child went with it
            written = await self.kube.create(KINDS[kind], record.owner[0], obj)
            outcome = "created"
        record.note((kind, name), hash_of(obj), _rv(written), fields_in(obj))
        return outcome

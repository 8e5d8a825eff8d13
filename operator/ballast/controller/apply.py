"""Applying desired children: the only code that creates, patches or deletes them.

Create-then-patch-on-hash-difference: a child that does not exist is created; one
whose ``ballast.dev/applied-hash`` annotation differs from the desired object's is
merge-patched with the fields the operator owns (see :mod:`.patches` for why merge
patch); one that matches is not touched, so a reconcile with nothing to change
makes no request at all (existence and hashes come from :mod:`.children`, not
from GETs). Children of the owner that are no longer desired are deleted. The
drift path (:meth:`Applier.restore`) has the live object from a watch event and
also repairs hand edits that left the annotation alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ballast.controller.children import ChildKey, Children, Owner
from ballast.controller.kube import ApiError, Kind, KubeClient
from ballast.controller.patches import contains, patch_for
from ballast.permissions import MANAGED_KINDS
from ballast.render import APPLIED_HASH_ANNOTATION

Obj = dict[str, Any]
Outcome = Literal["created", "patched", "unchanged"]

#: kind name -> where it lives in the API, for every kind the operator manages.
KINDS: Final[Mapping[str, Kind]] = {
    k.kind: Kind(k.api_version, k.kind, k.plural) for k in MANAGED_KINDS
}


def key_of(obj: Mapping[str, Any]) -> ChildKey:
    return (str(obj["kind"]), str(obj["metadata"]["name"]))


def hash_of(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def _rv(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def in_sync(live: Mapping[str, Any], want: Obj) -> bool:
    """The live object carries the wanted hash and every wanted field."""
    return hash_of(live) == hash_of(want) and contains(live, want)


@dataclass
class Applied:
    """What one apply changed, as ``Kind/name`` strings."""

    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.patched or self.deleted)

    def record(self, outcome: Outcome, key: ChildKey) -> None:
        if outcome == "created":
            self.created.append("/".join(key))
        elif outcome == "patched":
            self.patched.append("/".join(key))


class Applier:
    """Applies rendered objects for one owner at a time."""

    def __init__(self, kube: KubeClient, children: Children) -> None:
        self.kube = kube
        self.children = children

    async def apply(
        self,
        owner: Owner,
        uid: str | None,
        desired: Sequence[Obj],
        previous: Sequence[Obj] | None = None,
    ) -> Applied:
        """Make the owner's children exactly ``desired`` (``previous``: what was desired before)."""
        existing = self.children.of(owner, uid)
        before = {key_of(o): o for o in previous or ()}
        applied = Applied()
        for obj in desired:
            key = key_of(obj)
            have = existing.pop(key, None)
            outcome = await self.ensure(
                owner,
                obj,
                exists=have is not None,
                live_hash=have.hash if have else None,
                previous=before.get(key),
            )
            applied.record(outcome, key)
        for kind, name in sorted(existing):
            if await self.remove(owner, kind, name):
                applied.deleted.append(f"{kind}/{name}")
        return applied

    async def ensure(
        self,
        owner: Owner,
        obj: Obj,
        *,
        exists: bool,
        live_hash: str | None,
        previous: Obj | None = None,
    ) -> Outcome:
        """Create ``obj``, or patch it when its hash differs; nothing when it matches."""
        if exists and live_hash == hash_of(obj):
            return "unchanged"
        if not exists:
            created = await self._create(owner, obj)
            if created is not None:
                return created
        return await self._patch(owner, obj, patch_for(obj, previous))

    async def restore(self, owner: Owner, obj: Obj, live: Mapping[str, Any] | None) -> Outcome:
        """Put ``obj`` back given its live state (None: it was deleted)."""
        if live is None:
            created = await self._create(owner, obj)
            if created is not None:
                return created
        elif in_sync(live, obj):
            return "unchanged"
        return await self._patch(owner, obj, patch_for(obj))

    async def remove(self, owner: Owner, kind: str, name: str) -> bool:
        """Delete one child; False when it was already gone."""
        gone = await self.kube.delete(KINDS[kind], owner[0], name)
        self.children.note(owner, kind, name, None)
        return gone

    async def _create(self, owner: Owner, obj: Obj) -> Outcome | None:
        """Create; on AlreadyExists, "unchanged" if the live one is in sync, else None (patch it)."""
        kind, name = key_of(obj)
        try:
            created = await self.kube.create(KINDS[kind], owner[0], obj)
        except ApiError as e:
            if e.status != 409:
                raise
            live = await self.kube.get(KINDS[kind], owner[0], name)
            if live is not None and controller_uid(live) != controller_uid(obj):
                raise ApiError(
                    409,
                    "NameConflict",
                    f"{kind} {owner[0]}/{name} already exists and is not managed by this "
                    f"LLMService; rename the service or backend, or delete that {kind}",
                ) from None
            if live is not None and in_sync(live, obj):
                self.children.note(owner, kind, name, hash_of(obj), _rv(live))
                return "unchanged"
            return None
        self.children.note(owner, kind, name, hash_of(obj), _rv(created))
        return "created"

    async def _patch(self, owner: Owner, obj: Obj, patch: Obj) -> Outcome:
        kind, name = key_of(obj)
        try:
            written = await self.kube.patch(KINDS[kind], owner[0], name, patch)
            outcome: Outcome = "patched"
        except ApiError as e:
            if e.status != 404:
                raise
            written = await self.kube.create(KINDS[kind], owner[0], obj)
            outcome = "created"
        self.children.note(owner, kind, name, hash_of(obj), _rv(written))
        return outcome

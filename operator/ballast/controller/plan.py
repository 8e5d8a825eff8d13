"""Deciding what to write, apart from writing it: pure functions from desired and observed state.

:func:`plan` compares the children an LLMService should have (rendered) with the
children that exist (the watched index, corrected by our own recent writes) and
returns the writes that would make them equal: :class:`Create` what is missing,
:class:`Patch` what carries a different ``ballast.dev/applied-hash``,
:class:`Delete` what is no longer desired, and :class:`Conflict` for a desired
name held by an object another LLMService (or another incarnation of this one)
controls, which is never touched. An empty plan means nothing to write: that is
how "a reconcile with nothing to change makes no request" is tested.

:func:`plan_restore` is the same decision for one child seen in a watch event,
where the live object is at hand and hand edits that kept the annotation are
caught too. :mod:`.apply` executes plans; nothing here does I/O.

Shared children (:data:`~ballast.permissions.SHARED_KINDS`: a model cache's claim
and loader Job) are only created and released, never patched: their content is
fixed by their name (a digest of what they hold), and a Job's template is
immutable anyway. Their :class:`Delete` means "release": the executor removes this
service's ownerReference and deletes the object only when no other user is left.

A Deployment held at 0 replicas while its model cache filled, whose HPA now
appears, is patched to the HPA's ``minReplicas``: an HPA never scales a target
that has 0 replicas, so without this it would stay at 0 for good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ballast.controller.children import Child, ChildKey
from ballast.controller.patches import (
    FIELDS_ANNOTATION,
    applied_fields,
    contains,
    patch_for,
    with_fields,
)
from ballast.permissions import SHARED_KINDS
from ballast.render import APPLIED_HASH_ANNOTATION

Obj = dict[str, Any]


def key_of(obj: Mapping[str, Any]) -> ChildKey:
    return (str(obj["kind"]), str(obj["metadata"]["name"]))


def hash_of(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def fields_in(obj: Mapping[str, Any]) -> str | None:
    """The skeleton annotation ``obj`` carries (see :func:`.patches.with_fields`)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(FIELDS_ANNOTATION)
    return str(value) if value is not None else None


def in_sync(live: Mapping[str, Any], want: Obj) -> bool:
    """The live object carries the wanted hash and every wanted field."""
    return hash_of(live) == hash_of(want) and contains(live, want)


@dataclass(frozen=True)
class Create:
    obj: Obj

    @property
    def key(self) -> ChildKey:
        return key_of(self.obj)


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch of the fields the operator owns (``body``), towards ``obj``."""

    obj: Obj
    body: Obj

    @property
    def key(self) -> ChildKey:
        return key_of(self.obj)


@dataclass(frozen=True)
class Delete:
    key: ChildKey


@dataclass(frozen=True)
class Conflict:
    """A desired name taken by an object controlled by another owner (uid ``holder``)."""

    key: ChildKey
    holder: str


Action = Create | Patch | Delete | Conflict


def plan(
    desired: Sequence[Obj],
    observed: Mapping[ChildKey, Child],
    uid: str | None,
) -> list[Action]:
    """The writes that make ``observed`` equal ``desired`` for the owner incarnation ``uid``.

    Each created or patched child carries the skeleton of its fields
    (:func:`.patches.with_fields`); a patch nulls the fields the child's skeleton
    has and the desired object no longer sets (see :func:`.patches.patch_for`).
    Children of other incarnations are neither patched nor deleted.
    """
    actions: list[Action] = []
    for obj in desired:
        key = key_of(obj)
        have = observed.get(key)
        if key[0] not in SHARED_KINDS:
            obj = with_fields(obj)
        if have is None:
            actions.append(Create(obj))
        elif uid is not None and have.owner_uid != uid:
            actions.append(Conflict(key, have.owner_uid))
        elif have.hash != hash_of(obj) and key[0] not in SHARED_KINDS:
            body = patch_for(obj, applied_fields(have.fields))
            actions.append(Patch(obj, _unhold(key, have, obj, body, desired)))
    wanted = {key_of(o) for o in desired}
    first: list[Action] = []
    for key in sorted(observed):
        child = observed[key]
        if key not in wanted and (uid is None or child.owner_uid == uid):
            # An HPA goes before anything is patched: a Deployment taken back to 0 gets its
            # replicas from the operator only once no HPA can write them (one writer).
            (first if key[0] == "HorizontalPodAutoscaler" else actions).append(Delete(key))
    return first + actions


def _unhold(key: ChildKey, have: Child, obj: Obj, body: Obj, desired: Sequence[Obj]) -> Obj:
    """``body``, plus the HPA's minReplicas for a Deployment at 0 handed over to a new HPA."""
    if key[0] != "Deployment" or have.spec_replicas != 0 or "replicas" in obj.get("spec", {}):
        return body
    for other in desired:
        if key_of(other) == ("HorizontalPodAutoscaler", key[1]):
            replicas = other.get("spec", {}).get("minReplicas", 1)
            return {**body, "spec": {**body.get("spec", {}), "replicas": replicas}}
    return body


def plan_restore(key: ChildKey, want: Obj | None, live: Mapping[str, Any] | None) -> Action | None:
    """The write that puts one child back (``live`` None: it was deleted), if any."""
    if want is None:
        return None if live is None else Delete(key)
    if key[0] not in SHARED_KINDS:
        want = with_fields(want)
    if live is None:
        return Create(want)
    if key[0] in SHARED_KINDS or in_sync(live, want):
        return None
    return Patch(want, patch_for(want, applied_fields(fields_in(live))))

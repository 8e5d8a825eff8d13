"""What the operator knows about the children that exist, without reading them again.

kopf keeps one index per managed kind (``@kopf.index``, fed by a watch filtered
server-side on ``app.kubernetes.io/managed-by=ballast``): owner -> the children it
owns, each as a small :class:`Child` (name, applied hash, replica counts). kopf
fills every index before any handler runs, so a reconcile after a restart sees
every existing child. Writes the operator just made are remembered for a few
seconds (:meth:`Children.note`) until the watch brings them back, so a second
reconcile right after the first does not repeat them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ballast.api import GROUP, KIND
from ballast.render import APPLIED_HASH_ANNOTATION

Obj = dict[str, Any]
#: (namespace, LLMService name)
Owner = tuple[str, str]
#: (kind, name)
ChildKey = tuple[str, str]
RECENT_SECONDS: Final = 15.0


@dataclass(frozen=True)
class Child:
    """One existing child, as far as reconciling and health need it."""

    kind: str
    name: str
    hash: str | None
    owner_uid: str
    replicas: int = 0
    ready_replicas: int = 0


class IndexLike(Protocol):
    """The part of ``kopf.Index`` used here: key -> iterable of values."""

    def get(self, key: Owner, default: Any = None) -> Iterable[Child] | None: ...


def owner_of(body: Mapping[str, Any]) -> tuple[Owner, str] | None:
    """(namespace, name) and uid of the LLMService controlling ``body``, if any."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return (str(meta.get("namespace") or ""), str(ref.get("name"))), str(ref.get("uid"))
    return None


def child_of(body: Mapping[str, Any]) -> dict[Owner, Child]:
    """The index entry of one child (nothing for objects no LLMService owns)."""
    owner = owner_of(body)
    meta = body.get("metadata") or {}
    if owner is None or meta.get("deletionTimestamp"):
        return {}
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    return {
        owner[0]: Child(
            kind=str(body.get("kind")),
            name=str(meta.get("name")),
            hash=annotations.get(APPLIED_HASH_ANNOTATION),
            owner_uid=owner[1],
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
        )
    }


class Children:
    """Existing children by owner: kopf's indices plus the operator's own recent writes."""

    def __init__(self) -> None:
        self.indices: list[IndexLike] = []
        self._recent: dict[tuple[str, str, str, str], tuple[str | None, float]] = {}

    def of(self, owner: Owner, uid: str | None = None) -> dict[ChildKey, Child]:
        """Children of ``owner`` (of the incarnation ``uid`` when given)."""
        out: dict[ChildKey, Child] = {}
        for index in self.indices:
            for child in index.get(owner) or ():
                if uid is None or child.owner_uid == uid:
                    out[(child.kind, child.name)] = child
        now = time.monotonic()
        for (ns, svc, kind, name), (hash_, at) in list(self._recent.items()):
            if (ns, svc) != owner:
                continue
            seen = out.get((kind, name))
            caught_up = seen.hash == hash_ if seen is not None else hash_ is None
            if caught_up or now - at > RECENT_SECONDS:
                del self._recent[(ns, svc, kind, name)]
            elif hash_ is None:
                out.pop((kind, name), None)
            elif seen is None or seen.hash != hash_:
                base = seen or Child(kind, name, hash_, uid or "")
                out[(kind, name)] = Child(
                    kind, name, hash_, base.owner_uid, base.replicas, base.ready_replicas
                )
        return out

    def note(self, owner: Owner, kind: str, name: str, hash_: str | None) -> None:
        """Remember a write just made (``hash_`` None: deleted) until the watch shows it."""
        self._recent[(*owner, kind, name)] = (hash_, time.monotonic())

    def forget(self, owner: Owner) -> None:
        for key in [k for k in self._recent if k[:2] == owner]:
            del self._recent[key]

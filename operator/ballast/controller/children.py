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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ballast.api import GROUP, KIND
from ballast.render import APPLIED_HASH_ANNOTATION

Obj = dict[str, Any]
#: (namespace, LLMService name)
Owner = tuple[str, str]
#: (kind, name)
ChildKey = tuple[str, str]


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
    """Existing children by owner, as kopf's indices of the managed kinds hold them."""

    def __init__(self) -> None:
        self.indices: list[IndexLike] = []

    def of(self, owner: Owner, uid: str | None = None) -> dict[ChildKey, Child]:
        """Children naming ``owner`` (any incarnation; the one ``uid`` wins a name clash)."""
        out: dict[ChildKey, Child] = {}
        for index in self.indices:
            for child in index.get(owner) or ():
                key = (child.kind, child.name)
                if key not in out or child.owner_uid == uid:
                    out[key] = child
        return out

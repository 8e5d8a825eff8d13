"""What the operator knows about the children that exist, without reading them again.

The operator keeps one index per managed kind (:mod:`.watch`: a list+watch filtered
server-side on ``app.kubernetes.io/managed-by=ballast``): owner -> the children it
owns, each as a small :class:`Child` (name, applied hash, replica counts, and what a
model cache needs). Every index is filled before kopf handles any LLMService, so a
reconcile after a restart sees every existing child. A shared child (a model cache's
claim or loader Job) is indexed under every LLMService holding an ownerReference to
it. Writes the operator just made are remembered for a few seconds (in the service's
record) until the watch brings them back, so a second reconcile right after the first
does not repeat them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ballast.api import GROUP, KIND
from ballast.controller.patches import FIELDS_ANNOTATION
from ballast.permissions import SHARED_KINDS
from ballast.render import APPLIED_HASH_ANNOTATION
from ballast.render.cache import SERVED_ANNOTATION

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
    #: Deployment: ``spec.replicas`` (None when unset: an HPA owns it).
    spec_replicas: int | None = None
    #: Deployment: the ``<claim>/<key>`` cache directory its pods serve, once filled.
    served: str | None = None
    #: Job: Complete, Failed, Running or ""; PersistentVolumeClaim: its phase.
    phase: str = ""
    #: Job: the Failed condition's message; when it completed (RFC 3339).
    message: str = ""
    completed: str | None = None
    #: The skeleton of the fields the operator set last (:data:`~.patches.FIELDS_ANNOTATION`).
    fields: str | None = None


class IndexLike(Protocol):
    """The part of ``kopf.Index`` used here: key -> iterable of values."""

    def get(self, key: Owner, default: Any = None) -> Iterable[Child] | None: ...


def owners_of(body: Mapping[str, Any]) -> list[tuple[Owner, str]]:
    """(namespace, name) and uid of every LLMService owning ``body`` (the controller first)."""
    meta = body.get("metadata") or {}
    out = []
    refs = sorted(meta.get("ownerReferences") or [], key=lambda r: not r.get("controller"))
    for ref in refs:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            out.append(
                ((str(meta.get("namespace") or ""), str(ref.get("name"))), str(ref.get("uid")))
            )
    return out


def owner_of(body: Mapping[str, Any]) -> tuple[Owner, str] | None:
    """(namespace, name) and uid of the LLMService controlling ``body``, if any."""
    owners = owners_of(body)
    return owners[0] if owners else None


def _job_state(status: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(phase, failure message, completion time) of a Job from its status."""
    for c in status.get("conditions") or ():
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return "Complete", "", status.get("completionTime") or c.get("lastTransitionTime")
        if c.get("type") == "Failed":
            return "Failed", str(c.get("message") or c.get("reason") or "failed"), None
    return ("Running" if status.get("active") else ""), "", None


def child_of(body: Mapping[str, Any]) -> dict[Owner, Child]:
    """The index entries of one child (nothing for objects no LLMService owns)."""
    owners = owners_of(body)
    meta = body.get("metadata") or {}
    if not owners or meta.get("deletionTimestamp"):
        return {}
    kind = str(body.get("kind"))
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    extra: dict[str, Any] = {}
    if kind == "Deployment":
        replicas = (body.get("spec") or {}).get("replicas")
        extra["spec_replicas"] = None if replicas is None else int(replicas)
        extra["served"] = annotations.get(SERVED_ANNOTATION)
    elif kind == "Job":
        extra["phase"], extra["message"], extra["completed"] = _job_state(status)
    elif kind == "PersistentVolumeClaim":
        extra["phase"] = str(status.get("phase") or "")
    if kind not in SHARED_KINDS:
        owners = owners[:1]
        skeleton = annotations.get(FIELDS_ANNOTATION)
        extra["fields"] = sys.intern(skeleton) if isinstance(skeleton, str) else None
    return {
        owner: Child(
            kind=kind,
            name=str(meta.get("name")),
            hash=annotations.get(APPLIED_HASH_ANNOTATION),
            owner_uid=uid,
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            **extra,
        )
        for owner, uid in owners
    }


class Children:
    """Existing children by owner, as the watches of the managed kinds hold them."""

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

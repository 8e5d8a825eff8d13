"""Object metadata, owner references and the hashes the controller compares.

Two annotations carry hashes:

* ``ballast.dev/spec-hash`` on a Deployment's pod template: a digest of the pod
  template itself (image, command line, env, resources, scheduling, probes,
  volumes, security), so anything that should restart the pods changes it and
  routing-only edits (priority, weight, fallback) never reach it.
* ``ballast.dev/applied-hash`` on every child's metadata: :func:`object_hash` of
  the whole desired object without that annotation. The controller creates a
  missing child and patches an existing one only when the live annotation
  differs from the desired one, so a reconcile with nothing to change writes
  nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Final

from ballast.api import API_VERSION, KIND, LLMService

SPEC_HASH_ANNOTATION: Final = "ballast.dev/spec-hash"
APPLIED_HASH_ANNOTATION: Final = "ballast.dev/applied-hash"

#: A Kubernetes object as plain JSON-compatible data.
Obj = dict[str, Any]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """A short stable digest of JSON-compatible ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def object_hash(obj: Obj) -> str:
    """Digest of ``obj`` without its ``ballast.dev/applied-hash`` annotation."""
    bare = copy.deepcopy(obj)
    meta = bare.get("metadata") or {}
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(APPLIED_HASH_ANNOTATION, None)
        if not annotations:
            del meta["annotations"]
    return digest(bare)


def stamp(obj: Obj) -> Obj:
    """Set ``ballast.dev/applied-hash`` on ``obj`` (in place) and return it."""
    value = object_hash(obj)
    obj["metadata"].setdefault("annotations", {})[APPLIED_HASH_ANNOTATION] = value
    return obj


def owner_reference(svc: LLMService) -> Obj | None:
    """The controller ownerReference to ``svc``; None when it has no uid (offline render)."""
    if not svc.metadata.uid:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": svc.name,
        "uid": svc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(svc: LLMService, name: str, labels: dict[str, str]) -> Obj:
    """metadata of a child of ``svc``: name, namespace, labels, ownerReference."""
    meta: Obj = {"name": name, "namespace": svc.namespace, "labels": dict(labels)}
    owner = owner_reference(svc)
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def plain(value: Obj) -> Obj:
    """A fresh copy of ``value`` as plain JSON data: no shared sub-objects, no other types."""
    out: Obj = json.loads(canonical_json(value))
    return out


def shared_child(api_version: str, kind: str, metadata: Obj, **body: Any) -> Obj:
    """A child several LLMServices may share: its applied hash leaves ownerReferences out."""
    owners = metadata.pop("ownerReferences", None)
    obj = child(api_version, kind, metadata, **body)
    if owners:
        obj["metadata"]["ownerReferences"] = plain({"o": owners})["o"]
    return obj


def child(api_version: str, kind: str, metadata: Obj, **body: Any) -> Obj:
    """A complete, stamped child object (plain JSON data, keys sorted)."""
    return stamp(plain({"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}))

"""Pure helpers for applying with JSON merge patches: the patch to send, and drift detection.

Why merge patch (RFC 7386) and not server-side apply: the operator sends only the
fields it owns, so fields it does not set (``spec.replicas`` under an HPA, server
defaults, other controllers' annotations) are left alone, exactly as with SSA;
its semantics are small and fully reproducible, so the fast test tier against the
emulator proves the same thing a real API server does (SSA's list merging depends
on OpenAPI schema details an emulator cannot reproduce faithfully). The one thing
merge patch cannot infer is a field the operator *stopped* setting: :func:`patch_for`
turns every key the previous desired object had and the new one lacks into a
``null`` (except fields handed over to another controller, see :data:`HANDED_OVER`).

What the operator set last is kept on each child, in the
``ballast.dev/applied-fields`` annotation written with the child itself (no extra
request): the object's map keys as a skeleton (:func:`fields_of`; lists and scalars
are leaves, since merge patch replaces them whole). The next patch of that child
nulls what the skeleton has and the new object lacks, whether the operator saw the
edit happen or was down at the time, and kopf needs no diff base stored on the
LLMService for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, cast

from kubernetes.utils.quantity import parse_quantity as _untyped_parse_quantity

#: kubernetes' parser of resource quantities (``"500m"`` -> Decimal("0.5")), typed.
parse_quantity = cast(Callable[[object], Decimal], _untyped_parse_quantity)

Obj = dict[str, Any]

#: Paths never nulled when the operator stops setting them: another controller takes
#: them over (spec.replicas when an HPA appears; dropping it would reset to 1 replica).
HANDED_OVER: Final = frozenset({("spec", "replicas")})
#: The annotation on each child holding the skeleton of the fields the operator set.
FIELDS_ANNOTATION: Final = "ballast.dev/applied-fields"


def _skeleton(obj: Mapping[str, Any]) -> Obj:
    return {k: _skeleton(v) if isinstance(v, Mapping) else 0 for k, v in obj.items()}


def fields_of(obj: Mapping[str, Any]) -> str:
    """The skeleton of ``obj``'s map keys as compact JSON (leaves are ``0``), interned.

    Children rendered from specs of one shape share one skeleton string in memory.
    """
    text = json.dumps(_skeleton(obj), sort_keys=True, separators=(",", ":"))
    return sys.intern(text)


def with_fields(obj: Obj) -> Obj:
    """``obj`` carrying its own skeleton in :data:`FIELDS_ANNOTATION` (``obj`` is not changed)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != FIELDS_ANNOTATION
    }
    skeleton = fields_of({**obj, "metadata": {**meta, "annotations": annotations}})
    meta["annotations"] = {**annotations, FIELDS_ANNOTATION: skeleton}
    return {**obj, "metadata": meta}


def applied_fields(value: object) -> Obj | None:
    """The skeleton stored in a child's annotation (None: absent or unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        skeleton = json.loads(value)
    except ValueError:
        return None
    return skeleton if isinstance(skeleton, dict) else None


def patch_for(new: Obj, old: Obj | None = None, path: tuple[str, ...] = ()) -> Obj:
    """The merge patch that turns what ``old`` set into what ``new`` sets.

    Everything in ``new`` is sent; keys only in ``old`` become ``null``. Lists are
    sent whole (merge patch replaces lists).
    """
    out: Obj = {}
    for key, value in new.items():
        before = old.get(key) if isinstance(old, dict) else None
        if isinstance(value, dict) and isinstance(before, dict):
            out[key] = patch_for(value, before, (*path, key))
        else:
            out[key] = value
    if isinstance(old, dict):
        for key in old:
            if key not in new and (*path, key) not in HANDED_OVER:
                out[key] = None
    return out


def contains(live: Any, want: Any, quantities: bool = False) -> bool:
    """True when ``live`` already holds everything ``want`` sets (extra fields allowed).

    Objects compare key by key; lists must have the same length and each element
    must contain the wanted one (the API server adds defaults inside list elements,
    such as a container's ``imagePullPolicy``); scalars must be equal. Below a
    ``resources`` key, values are resource quantities and compare by meaning: the API
    server stores ``nvidia.com/gpu: 1`` as ``"1"`` and ``cpu: "0.5"`` as ``"500m"``.
    """
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v, quantities or k == "resources")
            for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(live, Sequence)
            and not isinstance(live, str)
            and len(live) == len(want)
            and all(contains(lv, wv, quantities) for lv, wv in zip(live, want, strict=True))
        )
    if quantities:
        return same_quantity(live, want)
    return bool(live == want) and type(live) is type(want)


def same_quantity(live: Any, want: Any) -> bool:
    """Two resource quantities (``1``, ``"1"``, ``"1000m"``) that mean the same amount."""
    if isinstance(live, bool) or isinstance(want, bool):
        return False
    try:
        return bool(parse_quantity(live) == parse_quantity(want))
    except (ValueError, TypeError):
        return bool(live == want) and type(live) is type(want)

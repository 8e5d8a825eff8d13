"""The LLMServices the operator knows, parsed once at the boundary.

kopf keeps ``@kopf.index`` ``llmservices``: (namespace, name) -> :class:`Entry`,
built by :func:`entry_of` from every watch event. An entry holds the typed model
of the spec (or the :class:`~ballast.api.SpecError` that rejected it) and the stored
status as compact JSON text, so handlers and the health loop never touch raw dicts.

The index is the operator's largest per-service memory (measured at 1,000
services): the parsed status models and the status as nested dicts were about
half of it, and only a status write or a first sight reads the status, so it is
kept as one string and decoded on use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ballast.api import API_VERSION, KIND, PLURAL, LLMService, SpecError, parse_llmservice
from ballast.controller.kube import Kind

Obj = dict[str, Any]
Owner = tuple[str, str]
LLMSERVICES: Final = Kind(API_VERSION, KIND, PLURAL)


@dataclass(frozen=True)
class Entry:
    """One LLMService as last seen: its model, or why its spec was rejected."""

    namespace: str
    name: str
    uid: str | None
    generation: int | None
    svc: LLMService | None
    error: SpecError | None
    #: The stored status as compact JSON (None: no status).
    status_json: str | None

    @property
    def status(self) -> Obj | None:
        """The stored status, decoded (a new dict on every call)."""
        if self.status_json is None:
            return None
        decoded = json.loads(self.status_json)
        return decoded if isinstance(decoded, dict) else None

    @property
    def owner(self) -> Owner:
        return (self.namespace, self.name)

    def ref(self) -> Obj:
        """The object reference kopf posts Events against."""
        meta = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}


def entry_from(body: Mapping[str, Any]) -> Entry | None:
    """Parse one LLMService body (None for one being deleted)."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    svc: LLMService | None = None
    error: SpecError | None = None
    try:
        svc = parse_llmservice(body, status=False)
    except SpecError as e:
        error = e
    status = body.get("status")
    return Entry(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
        svc=svc,
        error=error,
        status_json=_compact(status) if isinstance(status, Mapping) and status else None,
    )


def _compact(status: Mapping[str, Any]) -> str | None:
    try:
        return json.dumps(status, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None  # not JSON: treated as no status (the controller rewrites it)


def entry_of(body: Mapping[str, Any]) -> dict[Owner, Entry]:
    """The ``llmservices`` index function."""
    entry = entry_from(body)
    return {} if entry is None else {entry.owner: entry}


class EntryIndex(Protocol):
    """The part of ``kopf.Index`` used here."""

    def get(self, key: Owner, default: Any = None) -> Iterable[Entry] | None: ...

    def __iter__(self) -> Iterator[Owner]: ...


def lookup(index: EntryIndex | None, owner: Owner) -> Entry | None:
    if index is None:
        return None
    for entry in index.get(owner) or ():
        return entry
    return None


def all_entries(index: EntryIndex | None) -> list[Entry]:
    if index is None:
        return []
    return [e for owner in list(index) if (e := lookup(index, owner)) is not None]

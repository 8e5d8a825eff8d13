"""Everything the operator process knows about one LLMService, in one record.

A :class:`ServiceRecord` is created the first time the operator sees an
LLMService (a reconcile, a child event, a health round) and dropped in exactly
one place, :meth:`Records.drop`, when the LLMService is gone. A new incarnation
(same name, new uid) starts from a fresh record. Nothing about a service lives
anywhere else, so a new per-service field cannot outlive its service.

The record holds: the lock every writer for the service takes, the health state
(probes and hysteresis), the generation whose children are applied, the
operator's own recent writes that the watch has not shown yet (children and
status), whether status must be rewritten, and the state of a failing apply
(its backoff lives here, in memory, never in annotations on the object).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ballast.controller.cache import LoadResult
from ballast.controller.children import Child, ChildKey, Owner
from ballast.controller.health import ServiceHealth
from ballast.controller.scaler import Power

Obj = dict[str, Any]
#: How long a write of ours counts as "stored" while the watch has not shown it yet.
RECENT_SECONDS: Final = 15.0
#: The longest wait before a failed cache loader runs again.
MAX_LOAD_RETRY: Final = 3600.0


@dataclass(frozen=True)
class Written:
    """A child write of ours: the hash written (None: deleted), when, the resourceVersion back."""

    hash: str | None
    at: float
    rv: str | None = None
    #: The skeleton of the fields written (see :data:`~.patches.FIELDS_ANNOTATION`).
    fields: str | None = None


@dataclass
class Failure:
    """An apply that failed: why, how often in a row, and when to try again."""

    #: Groups failures with one cause across services (see :mod:`.retry`).
    cause: str
    message: str
    #: HTTP status of the API's answer (0: no answer).
    status: int
    attempts: int = 1
    next_at: float = 0.0
    #: The streak has been reported (status condition and one Event).
    reported: bool = False


@dataclass
class ServiceRecord:
    """One LLMService incarnation as this process knows it."""

    owner: Owner
    uid: str | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    health: ServiceHealth | None = None
    #: Spec generation whose children were applied in this process.
    applied: int | None = None
    #: Status must be (re)computed and written by the next health round.
    status_due: bool = False
    #: The routes ConfigMap of a new service waits for the first health round to create it.
    routes_deferred: bool = False
    failure: Failure | None = None
    writes: dict[ChildKey, Written] = field(default_factory=dict)
    #: The status JSON we last wrote and when (until the watch shows it).
    status_written: tuple[Obj, float] | None = None
    #: Finished cache loaders read so far: Job name -> (phase read at, what it reported).
    loads: dict[str, tuple[str, LoadResult]] = field(default_factory=dict)
    #: Failed loader Jobs to run again: Job name -> when; and failures in a row per Job.
    load_retry: dict[str, float] = field(default_factory=dict)
    load_failures: dict[str, int] = field(default_factory=dict)
    #: Backends that can be at 0 (scale to zero, standby): where each is (see :mod:`.scaler`).
    powers: dict[str, Power] = field(default_factory=dict)

    def retry_load(self, job: str, now: float, base: float) -> float:
        """Schedule a failed loader to run again: ``base`` seconds, doubling, at most 1 h."""
        failures = self.load_failures[job] = self.load_failures.get(job, 0) + 1
        at: float = now + min(base * 2.0 ** (failures - 1), MAX_LOAD_RETRY)
        self.load_retry[job] = at
        return at

    def applied_for(self, generation: int | None) -> bool:
        """The children of ``generation`` are applied (and nothing is waiting for a retry)."""
        return self.applied is not None and self.applied == generation and self.failure is None

    # -- our own writes, until the watch shows them ------------------------------------

    def note(
        self, key: ChildKey, hash_: str | None, rv: str | None = None, fields: str | None = None
    ) -> None:
        """Remember a child write just made (``hash_`` None: deleted)."""
        self.writes[key] = Written(hash_, time.monotonic(), rv, fields)

    def echo(self, key: ChildKey, rv: str | None) -> bool:
        """True when ``rv`` is the resourceVersion of our own latest write of ``key``."""
        written = self.writes.get(key)
        return rv is not None and written is not None and written.rv == rv

    def overlay(self, indexed: Mapping[ChildKey, Child]) -> dict[ChildKey, Child]:
        """The children as stored: the index, corrected by writes it has not caught up with."""
        out = dict(indexed)
        if not self.writes:
            return out
        now = time.monotonic()
        for key, w in list(self.writes.items()):
            seen = out.get(key)
            caught_up = seen.hash == w.hash if seen is not None else w.hash is None
            if caught_up or now - w.at > RECENT_SECONDS:
                del self.writes[key]
            elif w.hash is None:
                out.pop(key, None)
            elif seen is None:
                out[key] = Child(key[0], key[1], w.hash, self.uid or "", fields=w.fields)
            else:
                out[key] = dataclasses.replace(seen, hash=w.hash, fields=w.fields or seen.fields)
        return out

    def stored_status(self, indexed: Obj | None) -> Obj | None:
        """The status as stored, counting a write of ours the watch has not shown yet."""
        if self.status_written is None:
            return indexed
        written, at = self.status_written
        if indexed == written or time.monotonic() - at > RECENT_SECONDS:
            self.status_written = None
            return indexed
        return written


class Records:
    """The operator's records, by owner."""

    def __init__(self) -> None:
        self._by_owner: dict[Owner, ServiceRecord] = {}

    def get(self, owner: Owner) -> ServiceRecord | None:
        return self._by_owner.get(owner)

    def of(self, owner: Owner, uid: str | None) -> ServiceRecord:
        """The record of this incarnation, created on first sight (a new uid starts afresh)."""
        record = self._by_owner.get(owner)
        if record is None or (uid is not None and record.uid != uid):
            record = self._by_owner[owner] = ServiceRecord(owner, uid)
        return record

    def drop(self, owner: Owner) -> None:
        """Forget an LLMService that is gone: the one place per-service state is dropped."""
        self._by_owner.pop(owner, None)

    def __iter__(self) -> Iterator[ServiceRecord]:
        return iter(list(self._by_owner.values()))

    def __len__(self) -> int:
        return len(self._by_owner)

    def owners(self) -> set[Owner]:
        return set(self._by_owner)

"""kopf's state of each LLMService, kept in memory: nothing of it is written to the object.

kopf keeps two things per object, and its own storages keep both on the object
(annotations or ``status``), so each costs writes to the LLMService:

* :class:`SpecDigests`, the "last handled" state, as a digest of the spec;
* :class:`HandlerProgress`, each handler's progress (retries, start time), which
  kopf only needs while a handler keeps failing in this process.

kopf compares an object with the state it last handled to tell a create from an
update from a change that needs nothing (status, metadata). Its own storages keep
that state on the object, in an annotation or under ``status``: one more write per
new LLMService and per edit (and per label change). Ballast needs none of it:

* children are rendered from ``spec`` alone, so a digest of ``spec`` is all the
  comparison needs (a label or annotation edit is not a change to handle);
* the fields an edit removes are nulled from each child's own record of what the
  operator set (:data:`~.patches.FIELDS_ANNOTATION`), not from the previous spec;
* a reconcile that changes nothing writes nothing, so after a restart (or when
  another replica takes the lead) the empty memory makes kopf handle every
  LLMService as new, and the plan of each converged one is empty: 0 writes.

kopf's handler progress is purged as soon as a handler succeeds, and Ballast's
handlers raise only for a bug (an apply the API refuses is retried by the
controller's own backoff): it is needed in this process only, for kopf's retries.
Only kopf's "touch", the annotation it writes to wake itself up after a retry
delay, still goes to the object; it happens only while a handler fails.

Both are dropped with the service's record (:meth:`~.core.Controller.forget`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

import kopf


def spec_digest(body: Any) -> str:
    """The SHA-256 of the canonical JSON of ``body["spec"]``."""
    spec = body.get("spec")
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SpecDigests(kopf.DiffBaseStorage):
    """A kopf diff-base storage that writes nothing: uid -> digest of the spec last handled."""

    def __init__(self) -> None:
        super().__init__()
        self._digests: dict[str, str] = {}

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {"spec": spec_digest(body)})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        digest = self._digests.get(str(body.metadata.uid))
        return None if digest is None else cast(kopf.BodyEssence, {"spec": digest})

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._digests[str(body.metadata.uid)] = str(cast(dict[str, Any], essence)["spec"])

    def forget(self, uid: str | None) -> None:
        """Drop the digest of an incarnation that is gone."""
        if uid is not None:
            self._digests.pop(uid, None)

    def __len__(self) -> int:
        return len(self._digests)


class HandlerProgress(kopf.ProgressStorage):
    """kopf's progress of each handler, by (uid, handler id), in memory (see the module)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        #: Writes kopf's wake-up annotation and purges progress left by older versions.
        self._annotations = kopf.AnnotationsProgressStorage(prefix=prefix)
        self._records: dict[tuple[str, str], kopf.ProgressRecord] = {}

    def fetch(self, *, key: Any, body: kopf.Body) -> kopf.ProgressRecord | None:
        return self._records.get((str(body.metadata.uid), str(key)))

    def store(
        self, *, key: Any, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch
    ) -> None:
        self._records[(str(body.metadata.uid), str(key))] = record

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        self._records.pop((str(body.metadata.uid), str(key)), None)
        self._annotations.purge(key=key, body=body, patch=patch)

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        self._annotations.touch(body=body, patch=patch, value=value)

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return self._annotations.clear(essence=essence)

    def forget(self, uid: str | None) -> None:
        """Drop the progress of an incarnation that is gone."""
        for k in [k for k in self._records if k[0] == uid]:
            del self._records[k]

    def __len__(self) -> int:
        return len(self._records)


class KopfState:
    """Both of kopf's per-object stores for one operator, dropped together."""

    def __init__(self, prefix: str = "ballast.dev") -> None:
        self.digests = SpecDigests()
        self.progress = HandlerProgress(prefix)

    def forget(self, uid: str | None) -> None:
        self.digests.forget(uid)
        self.progress.forget(uid)

"""Writing LLMService status only when it changed, as a merge patch of the status subresource.

The stored status comes from the ``llmservices`` index, which learns about the
operator's own writes only when the watch brings them back. Until then (at most
a few seconds) the status just written counts as the stored one, so a second
write of the same status, or a ``lastTransitionTime`` computed from a stale
view, never happens.
"""

from __future__ import annotations

import time
from typing import Any, Final

from ballast.api import LLMServiceStatus
from ballast.controller.kube import ApiError, KubeClient
from ballast.controller.patches import patch_for
from ballast.controller.services import LLMSERVICES, Entry, Owner

Obj = dict[str, Any]
RECENT_SECONDS: Final = 15.0


class StatusWriter:
    """The one writer of ``status``."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._recent: dict[Owner, tuple[str | None, Obj, float]] = {}

    def current(self, entry: Entry) -> Obj | None:
        """The status as stored, counting a write of ours the watch has not shown yet."""
        recent = self._recent.get(entry.owner)
        if recent is None:
            return entry.status
        uid, written, at = recent
        if uid != entry.uid or entry.status == written or time.monotonic() - at > RECENT_SECONDS:
            del self._recent[entry.owner]
            return entry.status
        return written

    def owners(self) -> set[Owner]:
        """Owners this writer still remembers a recent write for."""
        return set(self._recent)

    def previous(self, entry: Entry) -> LLMServiceStatus | None:
        """:meth:`current` as the typed model (None when absent or unreadable)."""
        raw = self.current(entry)
        if not raw:
            return None
        try:
            return LLMServiceStatus.model_validate(raw)
        except ValueError:
            return None

    async def write(self, entry: Entry, status: LLMServiceStatus) -> bool:
        """Patch the status when it differs; True when a write was made."""
        new = status.to_json()
        stored = self.current(entry)
        if new == stored:
            return False
        try:
            await self.kube.patch(
                LLMSERVICES,
                entry.namespace,
                entry.name,
                {"status": patch_for(new, stored)},
                "status",
            )
        except ApiError as e:
            if e.status == 404:
                return False  # deleted meanwhile
            raise
        self._recent[entry.owner] = (entry.uid, new, time.monotonic())
        return True

    def forget(self, owner: Owner) -> None:
        self._recent.pop(owner, None)

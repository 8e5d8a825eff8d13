"""Writing LLMService status only when it changed, as a merge patch of the status subresource.

The stored status comes from the ``llmservices`` index, which learns about the
operator's own writes only when the watch brings them back. Until then (at most
a few seconds) the status just written, kept in the service's record, counts as
the stored one, so a second write of the same status, or a
``lastTransitionTime`` computed from a stale view, never happens.
"""

from __future__ import annotations

import time
from typing import Any

from ballast.api import LLMServiceStatus
from ballast.controller.kube import ApiError, KubeClient
from ballast.controller.patches import patch_for
from ballast.controller.record import ServiceRecord
from ballast.controller.services import LLMSERVICES, Entry

Obj = dict[str, Any]


def previous(record: ServiceRecord, entry: Entry) -> LLMServiceStatus | None:
    """The stored status as the typed model (None when absent or unreadable)."""
    raw = record.stored_status(entry.status)
    if not raw:
        return None
    try:
        return LLMServiceStatus.model_validate(raw)
    except ValueError:
        return None


class StatusWriter:
    """The one writer of ``status``."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def write(self, record: ServiceRecord, entry: Entry, status: LLMServiceStatus) -> bool:
        """Patch the status when it differs from the stored one; True when a write was made."""
        new = status.to_json()
        stored = record.stored_status(entry.status)
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
        record.status_written = (new, time.monotonic())
        return True

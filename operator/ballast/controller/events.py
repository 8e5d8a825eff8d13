"""Kubernetes Events on LLMServices (core/v1), posted in the background by the operator's client.

The operator posts its own events (backend left/entered the route, spec rejected,
child restored) rather than through kopf, whose poster is reachable only from
inside kopf handlers, not from the health loop. kopf's own informational events
are filtered out by ``settings.posting.level`` (WARNING). Posting never blocks
the caller; a failed post is logged and dropped. Whether this replica may post at
all (it leads) is the controller's decision, not this module's.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any, Final

from ballast.controller.kube import ApiError, Kind, KubeClient
from ballast.controller.services import Entry

logger = logging.getLogger("ballast.events")
EVENTS: Final = Kind("v1", "Event", "events")
COMPONENT: Final = "ballast-operator"


def event_body(
    entry: Entry, type_: str, reason: str, message: str, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about ``entry``."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ref = entry.ref()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{entry.name}.", "namespace": entry.namespace},
        "involvedObject": {**ref["metadata"], "apiVersion": ref["apiVersion"], "kind": ref["kind"]},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Events:
    """Posts Normal and Warning events against LLMServices."""

    def __init__(self, kube: KubeClient | None = None, instance: str = "ballast") -> None:
        self.kube = kube
        self.instance = instance
        self.posted: list[dict[str, Any]] = []
        self._pending: set[asyncio.Task[None]] = set()

    def info(self, entry: Entry, reason: str, message: str) -> None:
        self._send(entry, "Normal", reason, message)

    def warn(self, entry: Entry, reason: str, message: str) -> None:
        self._send(entry, "Warning", reason, message)

    def _send(self, entry: Entry, type_: str, reason: str, message: str) -> None:
        if not entry.uid:
            return
        body = event_body(entry, type_, reason, message, self.instance)
        if self.kube is None:
            self.posted.append(body)
            return
        task = asyncio.create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        if self.kube is None:
            return
        try:
            await self.kube.create(EVENTS, body["metadata"]["namespace"], body)
        except ApiError as e:
            logger.warning("cannot post event %s: %s", body["reason"], e)

    async def flush(self) -> None:
        """Wait for events being posted (on shutdown)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5)

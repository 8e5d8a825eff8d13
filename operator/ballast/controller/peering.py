"""Whether this replica leads, by kopf's peering rule, for the writes kopf does not gate itself.

With ``--peering NAME`` kopf coordinates replicas through a ClusterKopfPeering
(cluster-wide) or a KopfPeering per watched namespace, named NAME: every replica
keeps its ``priority`` and a heartbeat in the object's status, and a replica that
sees a live peer with a higher (or the same) priority pauses its handlers. kopf
does not tell handlers it is paused, and the health loop is not a kopf handler,
so :class:`PeeringGate` reads the same objects and applies the same rule
(``kopf/_core/engines/peering.py``) to switch the loop's writes and Events off
while this replica does not lead. It also creates the peering objects when they
are missing (kopf only patches them).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ballast.controller.kube import ApiError, Kind, KubeClient

logger = logging.getLogger("ballast.peering")
CLUSTER_PEERINGS: Final = Kind("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", False)
PEERINGS: Final = Kind("kopf.dev/v1", "KopfPeering", "kopfpeerings")
POLL_SECONDS: Final = 5.0


def _parse_time(value: Any) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def leads(status: Mapping[str, Any], identity: str, priority: int, now: datetime.datetime) -> bool:
    """kopf's rule: no other live peer has a priority >= ours."""
    for peer, info in status.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        seen = _parse_time(info.get("lastseen"))
        lifetime = float(info.get("lifetime") or 60)
        alive = seen is not None and seen + datetime.timedelta(seconds=lifetime) > now
        if alive and int(info.get("priority") or 0) >= priority:
            return False
    return True


class PeeringGate:
    """Polls the peering objects and reports whether this replica leads."""

    def __init__(
        self, kube: KubeClient, name: str, namespaces: Sequence[str], identity: str, priority: int
    ) -> None:
        self.kube = kube
        self.name = name
        self.namespaces = list(namespaces)
        self.identity = identity
        self.priority = priority

    def _objects(self) -> list[tuple[Kind, str | None]]:
        if not self.namespaces:
            return [(CLUSTER_PEERINGS, None)]
        return [(PEERINGS, ns) for ns in self.namespaces]

    async def ensure(self) -> None:
        """Create missing peering objects (before kopf starts its heartbeats); never fatal."""
        for kind, namespace in self._objects():
            try:
                if await self.kube.get(kind, namespace, self.name) is not None:
                    continue
            except ApiError as e:
                logger.warning("cannot read %s %s: %s", kind.kind, self.name, e)
                continue
            body = {
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "metadata": {"name": self.name},
            }
            try:
                await self.kube.create(kind, namespace, body)
                logger.info("created %s %s", kind.kind, self.name)
            except ApiError as e:
                if e.status != 409:
                    raise

    async def leading(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        for kind, namespace in self._objects():
            obj = await self.kube.get(kind, namespace, self.name) or {}
            if not leads(obj.get("status") or {}, self.identity, self.priority, now):
                return False
        return True

    async def run(self, switch: Any) -> None:
        """Set ``switch.active`` from the peering state every few seconds, forever."""
        while True:
            try:
                active = await self.leading()
            except ApiError as e:
                logger.warning("cannot read peering %s: %s", self.name, e)
            else:
                if active != switch.active:
                    logger.info("peering: this replica %s", "leads" if active else "stands by")
                switch.active = active
            await asyncio.sleep(POLL_SECONDS)

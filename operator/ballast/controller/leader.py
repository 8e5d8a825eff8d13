"""Leader election with a ``coordination.k8s.io/v1`` Lease, the way client-go does it.

With more than one operator replica, exactly one may act. ``ballast run
--leader-elect`` takes a Lease (``--lease-name`` in ``--lease-namespace``, the
operator's own namespace) before it starts kopf: a standby replica only waits, it
neither watches nor holds state. The leader renews the Lease every
``renew_every`` seconds; another replica takes it over once ``renewTime`` is older
than ``leaseDurationSeconds``. A leader that cannot renew for ``duration -
renew_every`` seconds stops acting and exits (its pod restarts and stands by),
so two replicas never act at once, given clocks that agree within a few seconds.
A graceful stop releases the Lease, so the standby takes over at once; a hard
crash costs at most ``duration`` (15 s by default) plus one retry period.

Updates use the Lease's ``resourceVersion`` (optimistic concurrency): of two
replicas that both see an expired Lease, the API server lets one update win and
refuses the other with 409. :func:`decide` is the pure rule; :class:`Elector`
does the I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from ballast.controller.kube import ApiError, Kind, KubeClient

logger = logging.getLogger("ballast.leader")
LEASES: Final = Kind("coordination.k8s.io/v1", "Lease", "leases")
Obj = dict[str, Any]
Decision = Literal["create", "take", "renew", "wait"]


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def micro_time(at: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def expires(spec: Mapping[str, Any]) -> datetime.datetime | None:
    """When the holder's claim runs out (None: never renewed)."""
    renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
    if renewed is None:
        return None
    return renewed + datetime.timedelta(seconds=float(spec.get("leaseDurationSeconds") or 0))


def decide(lease: Mapping[str, Any] | None, identity: str, now: datetime.datetime) -> Decision:
    """What a replica does with the Lease as read: create it, take it over, renew it, or wait."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return "renew"
    until = expires(spec)
    if not holder or until is None or until <= now:
        return "take"
    return "wait"


class Elector:
    """Takes, holds and releases one Lease for this replica."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew_every: float = 5.0,
        clock: Callable[[], datetime.datetime] = now_utc,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_every = renew_every
        self.clock = clock
        self._rv: str | None = None
        self._transitions = 0

    def _lease(self, acquired: datetime.datetime | None, holder: str | None = None) -> Obj:
        now = self.clock()
        spec: Obj = {
            "holderIdentity": self.identity if holder is None else holder,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "renewTime": micro_time(now),
            "leaseTransitions": self._transitions,
        }
        if acquired is not None:
            spec["acquireTime"] = micro_time(acquired)
        meta: Obj = {"name": self.name, "namespace": self.namespace}
        if self._rv is not None:
            meta["resourceVersion"] = self._rv
        return {"apiVersion": LEASES.api_version, "kind": "Lease", "metadata": meta, "spec": spec}

    async def try_acquire(self) -> bool:
        """One attempt to become (or stay) the holder; True when this replica holds the Lease."""
        current = await self.kube.get(LEASES, self.namespace, self.name)
        decision = decide(current, self.identity, self.clock())
        if decision == "wait":
            return False
        spec = (current or {}).get("spec") or {}
        self._rv = ((current or {}).get("metadata") or {}).get("resourceVersion")
        self._transitions = int(spec.get("leaseTransitions") or 0)
        acquired = _parse(spec.get("acquireTime"))
        if decision != "renew":
            self._transitions += 1 if decision == "take" else 0
            acquired = self.clock()
        body = self._lease(acquired)
        try:
            if decision == "create":
                written = await self.kube.create(LEASES, self.namespace, body)
            else:
                written = await self.kube.replace(LEASES, self.namespace, self.name, body)
        except ApiError as e:
            if e.status == 409:
                return False  # another replica wrote first
            raise
        self._rv = (written.get("metadata") or {}).get("resourceVersion")
        if decision != "renew":
            logger.info("leader election: %s now holds lease %s", self.identity, self.name)
        return True

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease (a standby waits here)."""
        said = ""
        while True:
            try:
                if await self.try_acquire():
                    return
                news = f"standing by, lease {self.namespace}/{self.name} is held by another replica"
            except ApiError as e:
                news = f"cannot read or write lease {self.namespace}/{self.name}: {e}"
            if news != said:  # say each new situation once, not every retry
                logger.warning("leader election: %s", news)
                said = news
            await asyncio.sleep(self.renew_every / 2)

    async def hold(self) -> None:
        """Renew until the Lease is lost or unrenewable for too long; then return."""
        loop = asyncio.get_running_loop()
        deadline = self.duration - self.renew_every
        renewed, pause = loop.time(), self.renew_every
        while True:
            await asyncio.sleep(pause)
            try:
                if await self.try_acquire():
                    renewed, pause = loop.time(), self.renew_every
                    continue
                current = await self.kube.get(LEASES, self.namespace, self.name)
                if decide(current, self.identity, self.clock()) == "wait":
                    logger.error("leader election: lease %s was taken over", self.name)
                    return
            except ApiError as e:
                logger.warning("leader election: renewing lease %s failed: %s", self.name, e)
            pause = 1.0  # retry soon: the Lease runs out
            if loop.time() - renewed > deadline:
                logger.error("leader election: lease %s not renewed in %.0f s", self.name, deadline)
                return

    async def release(self) -> None:
        """Give the Lease up (graceful stop) so a standby takes over at once."""
        try:
            current = await self.kube.get(LEASES, self.namespace, self.name)
            if decide(current, self.identity, self.clock()) != "renew" or current is None:
                return
            self._rv = (current.get("metadata") or {}).get("resourceVersion")
            body = self._lease(None, holder="")
            body["spec"]["leaseDurationSeconds"] = 1
            await self.kube.replace(LEASES, self.namespace, self.name, body)
            logger.info("leader election: released lease %s", self.name)
        except ApiError as e:
            logger.warning("leader election: cannot release lease %s: %s", self.name, e)

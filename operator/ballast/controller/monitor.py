"""The one background health loop: probes every backend on its own period, concurrently.

There is no per-object kopf timer or daemon (those make kopf put a finalizer on
every LLMService, and deletion then waits for them). Each tick takes the
LLMServices from the ``llmservices`` index, probes the backends whose period is
due (``health.periodSeconds``), feeds the results through the hysteresis of
:mod:`.health` and asks the controller to refresh a service only when something
it shows changed: a backend entering or leaving the route, a message, replica
counts. A steady state therefore makes no API request at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ballast.api import Backend, LLMService
from ballast.controller.children import Child
from ballast.controller.core import Controller, fields
from ballast.controller.health import (
    REPORTED,
    BackendHealth,
    ServiceHealth,
    Transition,
    readiness,
)
from ballast.controller.kube import ApiError
from ballast.controller.probes import Prober, ProbeResult
from ballast.controller.services import Entry, all_entries, lookup
from ballast.naming import backend_name

logger = logging.getLogger("ballast.health")
MAX_SLEEP = 1.0
#: Shortest pause between ticks: probes due within it are batched into one round.
MIN_SLEEP = 0.2


@dataclass(frozen=True)
class Due:
    """One backend whose probe is due."""

    entry: Entry
    svc: LLMService
    state: ServiceHealth
    backend: Backend
    deployment: Child | None


def period(backend: Backend) -> float:
    return float(backend.health.period_seconds if backend.health else 5)


class Monitor:
    """Probes, hysteresis, and refreshes on change."""

    def __init__(
        self, controller: Controller, prober: Prober, clock: Callable[[], float] | None = None
    ) -> None:
        self.controller = controller
        self.prober = prober
        self._clock = clock or asyncio.get_running_loop().time

    async def run(self) -> None:
        """Tick forever; a failing tick is logged (with its traceback) and the loop goes on."""
        while True:
            try:
                delay = await self.tick()
            except Exception:  # a bug in one tick must not stop health checking for everyone
                logger.exception("health tick failed")
                delay = MAX_SLEEP
            await asyncio.sleep(delay)

    def _due(self, now: float) -> list[Due]:
        due = []
        entries = all_entries(self.controller.services)
        present = {e.owner for e in entries}
        for owner in self.controller.known_owners() - present:
            self.controller.forget(owner)
        for entry in entries:
            svc = entry.svc
            if svc is None:
                continue
            state = self.controller.health_of(entry)
            backends = [b for b in svc.spec.backends if state.due.get(b.name, 0.0) <= now]
            if not backends:
                continue
            children = self.controller.children.of(entry.owner, entry.uid)
            for b in backends:
                state.due[b.name] = now + period(b)
                dep = children.get(("Deployment", backend_name(svc.name, b.name)))
                due.append(Due(entry, svc, state, b, dep))
        return due

    async def tick(self) -> float:
        """One round; returns how long to sleep until the next probe is due."""
        due = self._due(self._clock())
        results = await asyncio.gather(*(self._observe(d) for d in due))
        changed: dict[tuple[str, str], tuple[Entry, list[Transition]]] = {}
        for d, result in zip(due, results, strict=True):
            health = d.state.backends.get(d.backend.name)
            if health is None:
                continue
            transition = self._count(d, health, result)
            _, transitions = changed.setdefault(d.entry.owner, (d.entry, []))
            if transition is not None:
                transitions.append(transition)
        await self._resync()
        for owner, (entry, transitions) in changed.items():
            state = self.controller.health.get(owner)
            if state is None or not (transitions or state.signature() != state.shown):
                continue
            if await self._refresh(entry, transitions):
                state.shown = state.signature()
        return self._sleep()

    def _count(self, d: Due, health: BackendHealth, result: ProbeResult) -> Transition | None:
        if d.deployment is not None:
            health.replicas, health.ready_replicas = (
                d.deployment.replicas,
                d.deployment.ready_replicas,
            )
        fallback = d.svc.spec.fallback
        new_problem = result.reason in REPORTED and result.reason != health.reason
        first = not health.ever_healthy
        direction = health.observe(result, fallback.healthy_after, fallback.unhealthy_after)
        if direction is None:
            if new_problem:
                return Transition(d.backend.name, None, result.reason, result.message)
            return None
        logger.info(
            "backend %s of %s/%s %s the route: %s",
            d.backend.name,
            *d.entry.owner,
            "entered" if direction == "in" else "left",
            result.message or result.reason,
            extra=fields(d.entry.owner, backend=d.backend.name, reason=result.reason),
        )
        return Transition(d.backend.name, direction, result.reason, result.message, first)

    async def _observe(self, d: Due) -> ProbeResult:
        ready = d.deployment.ready_replicas if d.deployment else 0
        not_ready = readiness(d.backend, ready)
        if not_ready is not None:
            return not_ready
        return await self.prober.probe(d.svc, d.backend)

    async def _refresh(self, entry: Entry, transitions: list[Transition]) -> bool:
        if not self.controller.active:
            return False
        try:
            await self.controller.refresh(entry, transitions)
        except ApiError as e:
            logger.warning(
                "refreshing %s/%s failed, will retry: %s",
                *entry.owner,
                e,
                extra=fields(entry.owner),
            )
            return False
        return True

    async def _resync(self) -> None:
        for owner in sorted(self.controller.dirty):
            entry = lookup(self.controller.services, owner)
            self.controller.dirty.discard(owner)
            if entry is None or not self.controller.active:
                continue
            try:
                await self.controller.resync(entry)
            except ApiError as e:
                logger.warning("re-applying %s/%s failed, will retry: %s", *owner, e)
                self.controller.dirty.add(owner)

    def _sleep(self) -> float:
        now = self._clock()
        nexts = [t for s in self.controller.health.values() for t in s.due.values()]
        if not nexts:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(MIN_SLEEP, min(nexts) - now))

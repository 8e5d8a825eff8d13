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
import contextlib
import logging
import time
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
from ballast.controller.services import Entry, all_entries
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
        kick = self.controller.kick
        while True:
            try:
                delay = await self.tick()
            except Exception:  # a bug in one tick must not stop health checking for everyone
                logger.exception("health tick failed")
                delay = MAX_SLEEP
            await asyncio.sleep(MIN_SLEEP)  # batch what became due meanwhile into one round
            if not kick.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), max(0.0, delay - MIN_SLEEP))
            kick.clear()

    def _due(self, now: float) -> tuple[list[Entry], list[Due]]:
        """Every valid service (and forgetting those gone), and the backends due a probe."""
        entries = all_entries(self.controller.services)
        present = {e.owner for e in entries}
        for owner in self.controller.records.owners() - present:
            self.controller.forget(owner)
        valid, due = [], []
        for entry in entries:
            svc = entry.svc
            if svc is None:
                continue
            valid.append(entry)
            record = self.controller.record_of(entry)
            state = record.health
            if state is None:
                continue
            backends = [b for b in svc.spec.backends if state.due.get(b.name, 0.0) <= now]
            if not backends:
                continue
            children = self.controller.observed(record)
            for b in backends:
                state.due[b.name] = now + period(b)
                dep = children.get(("Deployment", backend_name(svc.name, b.name)))
                due.append(Due(entry, svc, state, b, dep))
        return valid, due

    async def tick(self) -> float:
        """One round; returns how long to sleep until the next probe is due."""
        entries, due = self._due(self._clock())
        results = await asyncio.gather(*(self._observe(d) for d in due))
        transitions: dict[tuple[str, str], list[Transition]] = {}
        for d, result in zip(due, results, strict=True):
            health = d.state.backends.get(d.backend.name)
            if health is None:
                continue
            transition = self._count(d, health, result)
            if transition is not None:
                transitions.setdefault(d.entry.owner, []).append(transition)
        await self._retry()
        await self.controller.retry_loaders()
        await self.controller.rescale(entries)
        for entry in entries:
            record = self.controller.records.get(entry.owner)
            state = record.health if record is not None else None
            if record is None or state is None:
                continue
            moved = transitions.get(entry.owner, [])
            if not (moved or record.status_due or state.signature() != state.shown):
                continue
            if await self._refresh(entry, moved):
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
            return await self.controller.refresh(entry, transitions)
        except ApiError as e:
            logger.warning(
                "refreshing %s/%s failed, will retry: %s",
                *entry.owner,
                e,
                extra=fields(entry.owner),
            )
            return False

    async def _retry(self) -> None:
        """Retry the failing applies whose backoff has run out (see :mod:`.retry`)."""
        if not self.controller.active:
            return
        now = time.monotonic()
        for record in self.controller.backoff.due(self.controller.records, now):
            await self.controller.retry(record)

    def _sleep(self) -> float:
        now = self._clock()
        nexts = [t for r in self.controller.records if r.health for t in r.health.due.values()]
        if not nexts:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(MIN_SLEEP, min(nexts) - now))

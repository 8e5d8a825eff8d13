"""Holding requests for a backend at zero replicas until its first pod is ready.

A table's backend with ``hold`` (it scales to zero, or is a standby warming up) whose
EndpointSlices are readable but list no ready pod is *cold*: the proxy skips it without an
attempt. When no other candidate gives an answer, the request waits here, in one FIFO per
(model, backend), for the first backend with ``hold`` in priority order: at most
``hold.maxPending`` requests per gateway (more: refused at once, :attr:`Wait.FULL`), each
for at most ``hold.timeoutSeconds`` (:attr:`Wait.TIMEOUT`). The queue is released, in
order, by the EndpointSlice event that lists a ready pod (:meth:`Endpoints.subscribe`),
never by polling. A request that leaves (its client disconnected, so its task is
cancelled) leaves the queue at once. Without readable slices (no discovery, or no
permission) nothing is held: there would be no event to wait for.

While a request waits, ``tick`` is awaited every ``interval`` seconds (the proxy sends a
held stream's SSE keep-alive comments from it). The gauge, histogram and rejection
counter of :mod:`~ballast.gateway.metrics` and the demand counts follow every queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from ballast.gateway.demand import Counts
from ballast.gateway.endpoints import Endpoints, ServiceKey
from ballast.gateway.metrics import Metrics
from ballast.routing import RouteBackend, RoutingTable, ServiceRef

log = logging.getLogger(__name__)


class Wait(Enum):
    """How a hold ended."""

    #: A ready pod appeared: send the request.
    RELEASED = "released"
    #: The queue was at ``maxPending``: the request was not held.
    FULL = "full"
    #: No ready pod within ``timeoutSeconds``.
    TIMEOUT = "timeout"


@dataclass
class _Queue:
    """The requests waiting for one backend, oldest first."""

    ref: ServiceRef
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def release(self) -> int:
        n = 0
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # wake-ups run in this order: FIFO
                n += 1
        return n


class Holds:
    """Every hold queue of one gateway."""

    def __init__(self, endpoints: Endpoints | None, metrics: Metrics) -> None:
        self.endpoints, self.metrics = endpoints, metrics
        self._queues: dict[tuple[str, str], _Queue] = {}
        if endpoints is not None:
            endpoints.subscribe(self._changed)

    def cold(self, backend: RouteBackend) -> bool:
        """True for a backend with ``hold`` whose slices are readable and list no ready pod."""
        ref, endpoints = backend.service, self.endpoints
        if backend.hold is None or ref is None or endpoints is None:
            return False
        return endpoints.readable(ref.namespace) and endpoints.pods(ref) is None

    def target(self, table: RoutingTable) -> RouteBackend | None:
        """The backend a request nothing else served waits for: the first with ``hold`` in
        priority order (in the route or not, circuit open or not), when its slices can be
        read; None when there is none."""
        endpoints = self.endpoints
        if endpoints is None:
            return None
        for b in sorted(table.backends, key=lambda b: b.priority):
            if b.hold is not None:
                ok = b.service is not None and endpoints.readable(b.service.namespace)
                return b if ok else None
        return None

    def held(self, model: str, backend: str) -> int:
        """Requests waiting for ``backend`` of ``model`` now."""
        queue = self._queues.get((model, backend))
        return 0 if queue is None else len(queue.waiters)

    async def wait(
        self,
        model: str,
        backend: RouteBackend,
        counts: Counts,
        *,
        joined: Callable[[], object] | None = None,
        tick: Callable[[], Awaitable[None]] | None = None,
        interval: float = 10.0,
    ) -> tuple[Wait, float]:
        """Wait for a ready pod of ``backend`` (which has ``hold`` and a Service); how it
        ended and the seconds waited. ``joined`` is called once the request is queued."""
        hold, ref = backend.hold, backend.service
        if hold is None or ref is None:
            raise ValueError(f"backend {backend.name} has no hold or no Service")
        queue = self._queues.get((model, backend.name))
        if queue is None:
            queue = self._queues[(model, backend.name)] = _Queue(ref)
        queue.ref = ref
        if self.held(model, backend.name) >= hold.max_pending:
            self.metrics.hold_rejected(model, backend.name, Wait.FULL.value)
            return Wait.FULL, 0.0
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        queue.waiters.append(fut)
        start = loop.time()
        counts.held += 1
        self.metrics.holding(model, backend.name, 1)
        if joined is not None:
            joined()
        try:
            ended = await self._until(fut, start + hold.timeout_seconds, tick, interval)
        finally:
            if not fut.done():
                fut.cancel()
            if fut in queue.waiters:
                queue.waiters.remove(fut)
            counts.held -= 1
            self.metrics.holding(model, backend.name, -1)
        waited = loop.time() - start
        if ended is Wait.RELEASED:
            self.metrics.released(model, backend.name, waited)
        else:
            self.metrics.hold_rejected(model, backend.name, ended.value)
        return ended, waited

    @staticmethod
    async def _until(
        fut: asyncio.Future[None],
        deadline: float,
        tick: Callable[[], Awaitable[None]] | None,
        interval: float,
    ) -> Wait:
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return Wait.TIMEOUT
            await asyncio.wait((fut,), timeout=left if tick is None else min(left, interval))
            if fut.done():
                return Wait.RELEASED
            if tick is not None and loop.time() < deadline:
                await tick()

    def _changed(self, service: ServiceKey | None) -> None:
        """Slices changed: release every queue whose backend now has a ready pod."""
        endpoints = self.endpoints
        if endpoints is None:
            return
        for (model, backend), queue in self._queues.items():
            ref = queue.ref
            if not queue.waiters or (service is not None and service != (ref.namespace, ref.name)):
                continue
            if endpoints.readable(ref.namespace) and endpoints.pods(ref) is not None:
                n = queue.release()
                log.info("model %s: backend %s has a ready pod: %d held request(s) sent",
                         model, backend, n)  # fmt: skip

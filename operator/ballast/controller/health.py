"""Backend health with hysteresis: the pure state machine between probe results and the route.

A backend enters the route after ``fallback.healthyAfter`` consecutive good
observations and leaves it after ``fallback.unhealthyAfter`` consecutive bad ones.
An observation of a self-hosted backend is good only when its Deployment has a
ready replica *and* the probe through its Service succeeds, so a backend still
loading its model (startup probe not passed, no ready pod) is never in the route.
State starts from the stored status, so an operator restart does not flap the
route. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ballast.api import Backend, BackendStatus, LLMService, LLMServiceStatus
from ballast.controller.probes import ProbeResult

Direction = Literal["in", "out"]
AWAITING = "AwaitingHealthChecks"
AWAITING_MESSAGE = "waiting for consecutive successful health checks"


@dataclass(frozen=True)
class Transition:
    """A backend entering or leaving the route, or (``direction`` None) a new problem to report."""

    backend: str
    direction: Direction | None
    reason: str
    message: str
    #: The backend's first entry into the route (start-up, not a failover: no Event, no metric).
    first: bool = False


#: Problems reported with an Event as soon as they appear (not only when the route changes).
REPORTED = frozenset({"SecretNotFound", "SecretUnreadable"})


@dataclass
class BackendHealth:
    """What the operator believes about one backend."""

    healthy: bool = False
    #: Healthy at least once (a backend that never was is "starting", not "failing").
    ever_healthy: bool = False
    successes: int = 0
    failures: int = 0
    probed: bool = False
    reason: str = AWAITING
    message: str = AWAITING_MESSAGE
    replicas: int = 0
    ready_replicas: int = 0

    @property
    def starting(self) -> bool:
        return not self.healthy and not self.ever_healthy

    def observe(
        self, result: ProbeResult, healthy_after: int, unhealthy_after: int
    ) -> Direction | None:
        """Count one observation; the direction when the backend crosses a threshold."""
        self.probed = True
        self.reason, self.message = result.reason, result.message
        if result.ok and not self.healthy:
            # Steady wording until the threshold: no status rewrite per good probe.
            self.reason, self.message = AWAITING, AWAITING_MESSAGE
        if result.ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.healthy and self.successes >= healthy_after:
                self.healthy = self.ever_healthy = True
                return "in"
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.healthy and self.failures >= unhealthy_after:
                self.healthy = False
                return "out"
        return None

    def signature(self) -> tuple[object, ...]:
        """What status shows of this backend; a change means status must be rewritten."""
        return (
            self.healthy,
            self.starting,
            self.reason,
            self.message,
            self.replicas,
            self.ready_replicas,
        )


def readiness(backend: Backend, ready_replicas: int) -> ProbeResult | None:
    """A failed observation when a self-hosted backend has no ready pod; None means probe it."""
    if backend.external or ready_replicas > 0:
        return None
    return ProbeResult(False, "NoReadyReplicas", "no ready replicas (starting or failing)")


@dataclass
class ServiceHealth:
    """Health of every backend of one LLMService incarnation."""

    uid: str | None
    #: The spec generation the backends were last synced with.
    generation: int | None = None
    backends: dict[str, BackendHealth] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    shown: tuple[object, ...] = ()

    @classmethod
    def start(cls, svc: LLMService, stored: LLMServiceStatus | None = None) -> ServiceHealth:
        """Fresh state, trusting the stored status for who is in the route (no flap on restart).

        ``stored`` is the status as stored (default: ``svc.status``).
        """
        state = cls(uid=svc.metadata.uid)
        state.sync(svc, stored=stored)
        return state

    def sync(
        self, svc: LLMService, now: float = 0.0, stored: LLMServiceStatus | None = None
    ) -> None:
        """Follow the spec: new backends start unknown (probed at once), removed ones go.

        A backend new to this process starts from what ``stored`` (default: ``svc.status``)
        says of it.
        """
        status = stored if stored is not None else svc.status
        known = {b.name: b for b in status.backends} if status else {}
        names = [b.name for b in svc.spec.backends]
        for name in names:
            if name not in self.backends:
                self.backends[name] = _from_status(known.get(name))
                self.due[name] = now
        for name in list(self.backends):
            if name not in names:
                del self.backends[name]
                self.due.pop(name, None)

    @property
    def observed_any(self) -> bool:
        """Some backend has had an observation in this process (a probe or its readiness)."""
        return any(h.probed for h in self.backends.values())

    def route(self) -> dict[str, bool]:
        """backend -> in the route."""
        return {name: h.healthy for name, h in self.backends.items()}

    def signature(self) -> tuple[object, ...]:
        return tuple((name, h.signature()) for name, h in sorted(self.backends.items()))


def _from_status(stored: BackendStatus | None) -> BackendHealth:
    """What the stored status says about a backend (nothing known: a fresh start)."""
    if stored is None:
        return BackendHealth()
    healthy = stored.healthy and stored.in_route
    health = BackendHealth(
        healthy=healthy,
        ever_healthy=healthy,
        replicas=stored.replicas,
        ready_replicas=stored.ready_replicas,
    )
    if not healthy and stored.message:
        health.message = stored.message
    return health

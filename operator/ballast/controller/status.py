"""LLMService status from the typed model: phase, the four conditions, per-backend observations.

Pure: :func:`observed` and :func:`rejected` build a :class:`~ballast.api.LLMServiceStatus`
from what the operator knows; the caller writes it only when its JSON differs.

* Ready: every backend is healthy and in the route.
* Available: at least one backend is healthy (the gateway can serve).
* Progressing: backends are still starting (no ready replica, never healthy yet).
* Degraded: a backend that is not starting is out of the route (probe failing,
  pods gone, Secret missing).

Phase: Failed (spec rejected), Ready, Degraded (something failing), Progressing
(only starting). ``lastTransitionTime`` moves only when a condition's status does.

CacheReady (only when a backend has a cache): True when every cache is filled,
else False with the state of the first that is not (DownloadFailed, ClaimPending,
Downloading). A backend whose loader failed counts as failing (Degraded); one
whose cache is filling counts as starting.

``backends[].inRoute`` and ``backendsInRoute`` say where the gateway sends requests
(:meth:`~ballast.routing.RoutingTable.eligible`): the healthy backends, or, when none
is healthy, every backend under ``whenAllUnhealthy: tryAll`` and none under ``reject``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ballast.api import (
    Backend,
    BackendStatus,
    CacheState,
    CacheStatus,
    Condition,
    LLMService,
    LLMServiceStatus,
    Phase,
    SpecError,
    StandbyState,
    StandbyStatus,
)
from ballast.controller.health import BackendHealth, ServiceHealth
from ballast.controller.scaler import ASLEEP, AT_ZERO, COMING_UP, STANDBY_UP, Power
from ballast.routing import table_for

SECRET_REASONS = frozenset({"SecretNotFound", "SecretUnreadable"})


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    type_: str, ok: bool | None, reason: str, message: str, generation: int | None
) -> Condition:
    status = "Unknown" if ok is None else "True" if ok else "False"
    return Condition(
        type=type_, status=status, reason=reason, message=message, observed_generation=generation
    )


def _keep_times(
    conditions: Sequence[Condition], previous: LLMServiceStatus | None, now: str
) -> list[Condition]:
    out = []
    for c in conditions:
        before = previous.condition(c.type) if previous else None
        same = before is not None and before.status == c.status and before.last_transition_time
        stamp = before.last_transition_time if same and before else now
        out.append(c.model_copy(update={"last_transition_time": stamp}))
    return out


def _starting(h: BackendHealth, external: bool) -> bool:
    """Never healthy yet and not known to be broken (an external API has no start-up)."""
    return h.starting and h.reason not in SECRET_REASONS and not (external and h.probed)


def _listing(items: Sequence[tuple[str, BackendHealth]]) -> str:
    return "; ".join(f"{name}: {h.message or h.reason}" for name, h in items)


@dataclass(frozen=True)
class _Split:
    """Backends sorted by what status says about them."""

    total: int
    healthy: list[str]
    starting: list[tuple[str, BackendHealth]]
    failing: list[tuple[str, BackendHealth]]

    download_failed: bool = False
    #: At 0 on purpose (scaled to zero, cold standby): neither failing nor starting.
    resting: tuple[str, ...] = ()
    #: Of those, the ones a request wakes (scale to zero): the gateway holds for them.
    wakeable: bool = False

    @property
    def secret(self) -> bool:
        return any(h.reason in SECRET_REASONS for _, h in self.failing)

    @property
    def problem(self) -> str:
        if self.secret:
            return "SecretNotFound"
        return "DownloadFailed" if self.download_failed else "BackendsUnhealthy"


def _split(
    svc: LLMService,
    health: ServiceHealth,
    caches: Mapping[str, CacheStatus] | None = None,
    powers: Mapping[str, Power] | None = None,
) -> _Split:
    caches, powers = caches or {}, powers or {}
    failed = {n for n, c in caches.items() if c.state is CacheState.DOWNLOAD_FAILED}
    states = [(b, health.backends.get(b.name) or BackendHealth()) for b in svc.spec.backends]
    at_zero = {n for n, p in powers.items() if p.state in AT_ZERO}
    up = {n for n, p in powers.items() if p.state in COMING_UP}
    rest = [(b, h) for b, h in states if not h.healthy and b.name in at_zero]
    states = [(b, h) for b, h in states if h.healthy or b.name not in at_zero]

    def starting_(b: Backend, h: BackendHealth) -> bool:
        return b.name not in failed and (_starting(h, b.external) or b.name in up)

    starting = [(b.name, h) for b, h in states if starting_(b, h)]
    failing = [(b.name, h) for b, h in states if not h.healthy and not starting_(b, h)]
    healthy = [b.name for b, h in states if h.healthy]
    return _Split(
        len(states) + len(rest),
        healthy,
        starting,
        failing,
        bool(failed & {n for n, _ in failing}),
        tuple(b.name for b, _ in rest),
        any(powers[b.name].state == ASLEEP for b, _ in rest),
    )


def _cache_condition(caches: Mapping[str, CacheStatus], generation: int | None) -> Condition | None:
    if not caches:
        return None
    order = (CacheState.DOWNLOAD_FAILED, CacheState.CLAIM_PENDING, CacheState.DOWNLOADING)
    for state in order:
        names = [n for n, c in caches.items() if c.state is state]
        if names:
            listing = "; ".join(f"{n}: {caches[n].message or state.value}" for n in names)
            return _condition("CacheReady", False, state.value, listing, generation)
    filled = ", ".join(f"{n} ({c.revision or c.key})" for n, c in caches.items())
    return _condition("CacheReady", True, "Ready", f"filled: {filled}", generation)


def _message(h: BackendHealth, cache: CacheStatus | None) -> str:
    if h.healthy:
        return ""
    if (
        cache is not None
        and cache.state is not CacheState.READY
        and not cache.message.startswith("serving")
    ):
        detail = f": {cache.message}" if cache.message else ""
        return f"model cache {cache.state.value}{detail}"
    return h.message or h.reason


def _power_message(b: Backend, power: Power | None) -> str:
    if power is None:
        return ""
    if power.state == ASLEEP:
        return "scaled to zero: the next request brings it up"
    if power.state in AT_ZERO:
        return "cold standby: comes up when every backend of the tiers above fails"
    if power.state in COMING_UP:
        return f"scaling up from 0 ({power.reason}): waiting for a ready pod"
    return ""


def _power_fields(b: Backend, power: Power | None) -> dict[str, object]:
    if power is None:
        return {}
    if b.standby is not None:
        state = StandbyState(power.state)
        return {"standby": StandbyStatus(state=state, since=power.since, reason=power.reason)}
    asleep = power.state == ASLEEP
    return {"scaled_to_zero": asleep, "scaled_to_zero_since": power.since if asleep else None}


def _phase(split: _Split) -> tuple[Phase, str]:
    if len(split.healthy) + len(split.resting) == split.total:
        return Phase.READY, "BackendsAtZero" if split.resting else "AllBackendsInRoute"
    if split.failing:
        return Phase.DEGRADED, split.problem
    return Phase.PROGRESSING, "BackendsStarting"


def _conditions(split: _Split, policy: str, generation: int | None) -> list[Condition]:
    phase, ready_reason = _phase(split)
    healthy = len(split.healthy)
    if healthy:
        available = f"{healthy}/{split.total} backends in route"
    elif split.wakeable:
        available = "every backend is at 0: requests are held while one scales up"
    else:
        available = f"no backend is healthy; the gateway applies whenAllUnhealthy={policy}"
    can_serve = bool(healthy) or split.wakeable
    starting, failing = bool(split.starting), bool(split.failing)
    return [
        _condition(
            "Ready",
            phase is Phase.READY,
            ready_reason,
            _listing(split.failing + split.starting)
            or "; ".join(f"{n}: at 0 replicas" for n in split.resting),
            generation,
        ),
        _condition(
            "Available",
            can_serve,
            "BackendsInRoute" if healthy else "ScaledToZero" if can_serve else "NoBackendInRoute",
            available,
            generation,
        ),
        _condition(
            "Progressing",
            starting,
            "BackendsStarting" if starting else "Reconciled",
            _listing(split.starting),
            generation,
        ),
        _condition(
            "Degraded",
            failing,
            split.problem if failing else "AllBackendsHealthy",
            _listing(split.failing),
            generation,
        ),
    ]


def observed(
    svc: LLMService,
    health: ServiceHealth,
    generation: int | None,
    endpoint: str,
    previous: LLMServiceStatus | None = None,
    now: str | None = None,
    caches: Mapping[str, CacheStatus] | None = None,
    powers: Mapping[str, Power] | None = None,
) -> LLMServiceStatus:
    """Status of a valid LLMService whose children of ``generation`` are applied.

    ``caches``: ``status.backends[].cache`` of the backends with a cache; ``powers``: the
    state of the backends that can be at 0 (scale to zero, standby).
    """
    caches, powers = caches or {}, powers or {}
    split = _split(svc, health, caches, powers)
    conditions = _conditions(split, svc.spec.fallback.when_all_unhealthy.value, generation)
    cache_ready = _cache_condition(caches, generation)
    if cache_ready is not None:
        conditions.append(cache_ready)
    up = [n for n, p in powers.items() if p.state in STANDBY_UP]
    routed = {b.name for b in table_for(svc, health.route(), up).eligible()}
    backends = []
    for b in svc.spec.backends:
        h = health.backends.get(b.name) or BackendHealth()
        power = powers.get(b.name)
        backends.append(
            BackendStatus(
                name=b.name,
                engine=b.engine.value,
                replicas=h.replicas,
                ready_replicas=h.ready_replicas,
                healthy=h.healthy,
                in_route=b.name in routed,
                message=_power_message(b, power) or _message(h, caches.get(b.name)),
                cache=caches.get(b.name),
                **_power_fields(b, power),
            )
        )
    return LLMServiceStatus(
        observed_generation=generation,
        phase=_phase(split)[0],
        served_model_name=svc.served_model_name,
        endpoint=endpoint,
        backends_in_route=f"{len(routed)}/{split.total}",
        conditions=_keep_times(conditions, previous, now or now_rfc3339()),
        backends=backends,
    )


def rejected(
    error: SpecError,
    generation: int | None,
    endpoint: str,
    previous: LLMServiceStatus | None,
    now: str | None = None,
) -> LLMServiceStatus:
    """Status of an LLMService whose spec the operator rejects (children left as they were)."""
    now = now or now_rfc3339()
    message = "; ".join(str(p) for p in error.problems) or str(error)
    reason = error.reason
    kept = "children of the last valid spec, if any, are left as they are"
    conditions = [
        _condition("Ready", False, reason, message, generation),
        _condition("Available", None, reason, kept, generation),
        _condition("Progressing", False, reason, "fix the spec to continue", generation),
        _condition("Degraded", True, reason, message, generation),
    ]
    return LLMServiceStatus(
        observed_generation=generation,
        phase=Phase.FAILED,
        endpoint=endpoint,
        conditions=_keep_times(conditions, previous, now),
        backends=list(previous.backends) if previous else [],
    )


def apply_failed(status: LLMServiceStatus, message: str) -> LLMServiceStatus:
    """``status`` with Ready=False/ApplyFailed: the API refused a child (retried with backoff)."""
    ready = status.condition("Ready")
    if ready is None:
        return status
    failed = ready.model_copy(
        update={"status": "False", "reason": "ApplyFailed", "message": message[:1024]}
    )
    if ready.status != "False":
        failed = failed.model_copy(update={"last_transition_time": now_rfc3339()})
    conditions = [failed if c.type == "Ready" else c for c in status.conditions]
    phase = Phase.PROGRESSING if status.phase is Phase.READY else status.phase
    return status.model_copy(update={"conditions": conditions, "phase": phase})

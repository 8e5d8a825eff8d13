"""LLMService status from the typed model: phase, the four conditions, per-backend observations.

Pure: :func:`observed` and :func:`rejected` build a :class:`~ballast.api.LLMServiceStatus`
from what the operator knows; the caller writes it only when its JSON differs.

* Ready: every backend is in the route.
* Available: at least one backend is in the route (the gateway can serve).
* Progressing: backends are still starting (no ready replica, never healthy yet).
* Degraded: a backend that is not starting is out of the route (probe failing,
  pods gone, Secret missing).

Phase: Failed (spec rejected), Ready, Degraded (something failing), Progressing
(only starting). ``lastTransitionTime`` moves only when a condition's status does.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from ballast.api import BackendStatus, Condition, LLMService, LLMServiceStatus, Phase, SpecError
from ballast.controller.health import BackendHealth, ServiceHealth

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


def observed(
    svc: LLMService,
    health: ServiceHealth,
    generation: int | None,
    endpoint: str,
    previous: LLMServiceStatus | None = None,
    now: str | None = None,
) -> LLMServiceStatus:
    """Status of a valid LLMService whose children of ``generation`` are applied."""
    now = now or now_rfc3339()
    states = [(b.name, health.backends.get(b.name) or BackendHealth()) for b in svc.spec.backends]
    external = {b.name for b in svc.spec.backends if b.external}
    in_route = [n for n, h in states if h.healthy]
    starting = [(n, h) for n, h in states if _starting(h, n in external)]
    failing = [(n, h) for n, h in states if not h.healthy and not _starting(h, n in external)]
    secret = [(n, h) for n, h in failing if h.reason in SECRET_REASONS]
    total = len(states)
    if len(in_route) == total:
        phase, ready_reason = Phase.READY, "AllBackendsInRoute"
    elif failing:
        phase, ready_reason = Phase.DEGRADED, "SecretNotFound" if secret else "BackendsUnhealthy"
    else:
        phase, ready_reason = Phase.PROGRESSING, "BackendsStarting"
    out_of_route = _listing(failing + starting)
    policy = svc.spec.fallback.when_all_unhealthy.value
    conditions = [
        _condition("Ready", phase is Phase.READY, ready_reason, out_of_route, generation),
        _condition(
            "Available",
            bool(in_route),
            "BackendsInRoute" if in_route else "NoBackendInRoute",
            f"{len(in_route)}/{total} backends in route"
            if in_route
            else f"no backend is in the route; the gateway applies whenAllUnhealthy={policy}",
            generation,
        ),
        _condition(
            "Progressing",
            bool(starting),
            "BackendsStarting" if starting else "Reconciled",
            _listing(starting),
            generation,
        ),
        _condition(
            "Degraded",
            bool(failing),
            ("SecretNotFound" if secret else "BackendsUnhealthy")
            if failing
            else "AllBackendsHealthy",
            _listing(failing),
            generation,
        ),
    ]
    backends = [
        BackendStatus(
            name=b.name,
            engine=b.engine.value,
            replicas=h.replicas,
            ready_replicas=h.ready_replicas,
            healthy=h.healthy,
            in_route=h.healthy,
            message="" if h.healthy else (h.message or h.reason),
        )
        for b, (_, h) in zip(svc.spec.backends, states, strict=True)
    ]
    return LLMServiceStatus(
        observed_generation=generation,
        phase=phase,
        served_model_name=svc.served_model_name,
        endpoint=endpoint,
        backends_in_route=f"{len(in_route)}/{total}",
        conditions=_keep_times(conditions, previous, now),
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

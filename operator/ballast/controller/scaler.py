"""Scale to zero and cold standbys: when the controller sets a backend's replicas.

Two kinds of backend can be at 0 replicas, each with a small state machine kept in
its service's record (:class:`Power`), decided by the pure :func:`step`:

* **scale to zero** (``scaling.minReplicas: 0``): ``Asleep`` (pinned at 0) →
  ``Waking`` (pinned at 1) as soon as a gateway reports demand (a request held or
  sent) → ``Awake`` once a pod is ready (the pin goes, the HPA is created with
  ``minReplicas: 1``) → ``Asleep`` after ``idleAfterSeconds`` with nothing in flight
  or held in any gateway and no new request, confirmed a second time
  :data:`CONFIRM_SECONDS` later, and never while a gateway could not be read.
* **cold standby** (``standby``): ``Cold`` (pinned at 0, out of the route) →
  ``Warming`` (pinned at its replicas) when every backend of the tiers above has
  been out of the route or had its circuit open for ``activateAfterSeconds`` →
  ``Active`` once a pod is ready → ``Cooling`` when the tiers above are healthy
  again → ``Cold`` after ``cooldownSeconds`` of that (``Active`` again if they fail).

While pinned, the controller is the one writer of ``replicas`` and no HPA exists;
once a pod is ready the HPA owns it (see :mod:`ballast.render.scale`). On first
sight (a new service, an operator restart) the state is read from the children that
exist, so a restart neither writes nor moves a backend.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ballast.api import Backend, BackendStatus, LLMService, StandbyState
from ballast.controller.children import Child, ChildKey
from ballast.naming import backend_name
from ballast.render.scale import Scale

#: Seconds between the two idle observations that take a backend to 0.
CONFIRM_SECONDS: Final = 3.0

ASLEEP: Final = "Asleep"
WAKING: Final = "Waking"
AWAKE: Final = "Awake"
COLD: Final = StandbyState.COLD.value
WARMING: Final = StandbyState.WARMING.value
ACTIVE: Final = StandbyState.ACTIVE.value
COOLING: Final = StandbyState.COOLING.value
#: States with the Deployment pinned at 0, and pinned at the backend's up replicas.
AT_ZERO: Final = frozenset({ASLEEP, COLD})
COMING_UP: Final = frozenset({WAKING, WARMING})
STANDBY_UP: Final = frozenset({WARMING, ACTIVE, COOLING})
#: The standby states that look alike from the children (up, with a ready pod).
UP: Final = frozenset({ACTIVE, COOLING})


@dataclass
class Power:
    """Where one backend that can be at 0 is, since when (wall clock) and why."""

    state: str
    since: str
    reason: str = ""
    #: Monotonic time since which no gateway saw demand (None: demand now, or unknown).
    quiet_since: float | None = None
    #: Monotonic time of the first idle confirmation (scale to zero takes two).
    confirmed_at: float | None = None
    #: Monotonic time since which the tiers above have all been down (standby).
    trouble_since: float | None = None
    #: Monotonic time since which the tiers above have been healthy again (standby).
    calm_since: float | None = None


@dataclass(frozen=True)
class Demand:
    """What the gateways together say about one backend, this round."""

    held: int = 0
    in_flight: int = 0
    #: Requests sent to or held for the backend since the previous round.
    new: int = 0

    @property
    def active(self) -> bool:
        return bool(self.held or self.in_flight or self.new)


@dataclass(frozen=True)
class Signals:
    """Everything :func:`step` looks at for one backend."""

    #: None when some gateway could not be read this round (unknown: never scale down).
    demand: Demand | None
    #: Ready pods of the backend's Deployment.
    ready: int
    #: Standby: every backend of the tiers above is out of the route or has its circuit open.
    above_down: bool = False


@dataclass(frozen=True)
class Change:
    """A transition :func:`step` made, for the Event and the log."""

    backend: str
    before: str
    after: str
    message: str
    #: The Event's reason; a warning when something failed (a standby called up).
    reason: str
    warning: bool = False


def _age(stamp: str | None) -> float:
    """Seconds since an RFC 3339 time (0 when unknown or unreadable)."""
    if not stamp:
        return 0.0
    try:
        then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (datetime.datetime.now(datetime.UTC) - then).total_seconds())


def pin(backend: Backend, power: Power | None) -> int | None:
    """The replicas the controller sets in ``power``'s state; None: the spec's or the HPA's."""
    if power is None:
        return None
    if power.state in AT_ZERO:
        return 0
    if power.state in COMING_UP:
        return backend.up_replicas
    return None


def scale_of(svc: LLMService, powers: Mapping[str, Power]) -> Scale:
    """The :class:`~ballast.render.scale.Scale` to render ``svc`` with."""
    pins: dict[str, int] = {}
    for b in svc.spec.backends:
        if not b.holds:
            continue
        p = pin(b, powers.get(b.name))
        if p is not None:
            pins[b.name] = p
    up = frozenset(n for n, p in powers.items() if p.state in STANDBY_UP)
    return Scale(pins, up)


def infer(
    backend: Backend,
    name: str,
    observed: Mapping[ChildKey, Child],
    shown: BackendStatus | None,
    now: str,
) -> Power:
    """The state of a backend seen for the first time, from its children (and the status
    last written, for the time it entered that state)."""
    dep = observed.get(("Deployment", name))
    has_hpa = ("HorizontalPodAutoscaler", name) in observed
    replicas = dep.spec_replicas if dep is not None else 0
    up = has_hpa or (replicas is not None and replicas > 0)
    if backend.standby is not None:
        if not up:
            state = COLD
        elif has_hpa or (dep is not None and dep.ready_replicas > 0):
            state = ACTIVE
        else:
            state = WARMING
        was = shown.standby if shown is not None else None
        if was is not None and (was.state.value == state or {was.state.value, state} == UP):
            # a restart: the status stays as it was (Cooling looks like Active from the
            # children; its cooldown counts from when it began, by the wall clock)
            power = Power(was.state.value, was.since or now, was.reason)
            if power.state == COOLING:
                power.calm_since = time.monotonic() - _age(was.since)
            return power
        return Power(state, now, "seen at start-up")
    if has_hpa:
        state = AWAKE
    elif up:
        state = WAKING
    else:
        state = ASLEEP
    since = None
    if shown is not None and state == ASLEEP and shown.scaled_to_zero:
        since = shown.scaled_to_zero_since
    return Power(state, since or now, "seen at start-up")


def powers_for(
    svc: LLMService,
    powers: dict[str, Power],
    observed: Mapping[ChildKey, Child],
    shown: Mapping[str, BackendStatus],
    now: str,
) -> dict[str, Power]:
    """``powers`` with an entry for every backend of ``svc`` that can be at 0 (new ones
    inferred from the children) and none for the others."""
    wanted = {b.name: b for b in svc.spec.backends if b.holds}
    for name in [n for n in powers if n not in wanted]:
        del powers[name]
    for name, b in wanted.items():
        kind_ok = name in powers and (powers[name].state in (COLD, WARMING, ACTIVE, COOLING)) == (
            b.standby is not None
        )
        if not kind_ok:
            child = backend_name(svc.name, name)
            powers[name] = infer(b, child, observed, shown.get(name), now)
    return powers


def _move(power: Power, backend: Backend, after: str, message: str, reason: str, now: str,
          warning: bool = False) -> Change:  # fmt: skip
    before = power.state
    power.state, power.since, power.reason = after, now, message
    power.quiet_since = power.confirmed_at = None
    return Change(backend.name, before, after, message, reason, warning)


def step(backend: Backend, power: Power, signals: Signals, mono: float, now: str) -> Change | None:
    """Advance ``power`` by one observation (mutates it); the transition made, if any."""
    if backend.standby is not None:
        return _standby(backend, power, signals, mono, now)
    return _to_zero(backend, power, signals, mono, now)


def _to_zero(
    backend: Backend, power: Power, signals: Signals, mono: float, now: str
) -> Change | None:
    demand = signals.demand
    if power.state == ASLEEP:
        if demand is not None and demand.active:
            what = f"{demand.held} held" if demand.held else f"{demand.new} new"
            return _move(power, backend, WAKING,
                         f"demand ({what} request(s)): scaling from 0 to {backend.up_replicas}",
                         "ScalingFromZero", now)  # fmt: skip
        return None
    if power.state == WAKING:
        if signals.ready > 0:
            return _move(power, backend, AWAKE, "a pod is ready: the autoscaler owns replicas",
                         "ScaledFromZero", now)  # fmt: skip
        return None
    # AWAKE: go back to 0 after idleAfterSeconds with no demand, seen twice.
    if demand is None:
        power.confirmed_at = None  # unknown: never scale down on missing data
        return None
    if demand.active:
        power.quiet_since = power.confirmed_at = None
        return None
    if power.quiet_since is None:
        power.quiet_since = mono
        return None
    idle = backend.scaling.idle_after_seconds if backend.scaling else 0
    if mono - power.quiet_since < idle:
        return None
    if power.confirmed_at is None:
        power.confirmed_at = mono
        return None
    if mono - power.confirmed_at < CONFIRM_SECONDS:
        return None
    return _move(power, backend, ASLEEP, f"no request for {idle} s: scaled to 0",
                 "ScaledToZero", now)  # fmt: skip


def _standby(
    backend: Backend, power: Power, signals: Signals, mono: float, now: str
) -> Change | None:
    standby = backend.standby
    assert standby is not None
    if signals.above_down:
        power.calm_since = None
        if power.trouble_since is None:
            power.trouble_since = mono
    else:
        power.trouble_since = None
        if power.calm_since is None:
            power.calm_since = mono
    down_for = 0.0 if power.trouble_since is None else mono - power.trouble_since
    calm_for = 0.0 if power.calm_since is None else mono - power.calm_since
    if power.state == COLD:
        if signals.above_down and down_for >= standby.activate_after_seconds:
            return _move(power, backend, WARMING,
                         f"every backend of the tiers above is down for {down_for:.0f} s: "
                         f"scaling to {backend.up_replicas}", "StandbyWarming", now, warning=True)  # fmt: skip
        return None
    if power.state == WARMING:
        if signals.ready > 0:
            return _move(power, backend, ACTIVE, "a pod is ready: in the route",
                         "StandbyActive", now)  # fmt: skip
        return None
    if power.state == ACTIVE:
        if not signals.above_down:
            return _move(power, backend, COOLING,
                         f"the tiers above are healthy again: back to 0 in "
                         f"{standby.cooldown_seconds} s unless they fail", "StandbyCooling", now)  # fmt: skip
        return None
    # COOLING
    if signals.above_down:
        return _move(power, backend, ACTIVE, "the tiers above failed again", "StandbyActive", now,
                     warning=True)  # fmt: skip
    if calm_for >= standby.cooldown_seconds:
        return _move(power, backend, COLD,
                     f"the tiers above have been healthy for {calm_for:.0f} s: scaled to 0",
                     "StandbyCold", now)  # fmt: skip
    return None

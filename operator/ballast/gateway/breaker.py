"""Per-backend circuit breakers with an injectable clock.

A breaker is closed until ``consecutiveFailures`` attempts in a row fail; then it is open
and the backend gets no traffic. After ``openSeconds`` it lets exactly one trial request
through (half-open): a successful trial closes it, a failed one opens it for another
``openSeconds``. Results of requests admitted before the circuit opened do not decide
anything once it is open; only the trial does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import Enum, StrEnum

Clock = Callable[[], float]
#: Called with (model, backend, is_open) whenever a breaker opens or closes.
#: (model, backend, open): True/False when a breaker opens or closes (False too when it is
#: created), None when its backend left the tables.
OnChange = Callable[[str, str, bool | None], None]


class Admission(Enum):
    """What :meth:`CircuitBreaker.admit` granted an attempt."""

    CLOSED = "closed"
    TRIAL = "trial"
    DENIED = "denied"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The breaker of one backend."""

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        clock: Clock = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._trial_in_flight or self._clock() >= self._opened_at + self.open_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def is_open(self) -> bool:
        """True while the circuit is not closed (open or half-open)."""
        return self._opened_at is not None

    def allows(self) -> bool:
        """Whether an attempt would be admitted now (does not take the trial)."""
        if self._opened_at is None:
            return True
        return not self._trial_in_flight and self._clock() >= self._opened_at + self.open_seconds

    def admit(self) -> Admission:
        """Admit an attempt; the one that takes the half-open trial gets ``TRIAL``."""
        if self._opened_at is None:
            return Admission.CLOSED
        if self.allows():
            self._trial_in_flight = True
            return Admission.TRIAL
        return Admission.DENIED

    def success(self, admission: Admission) -> None:
        if admission is Admission.TRIAL:
            self._trial_in_flight = False
            self._close()
        elif self._opened_at is None:
            self._failures = 0

    def failure(self, admission: Admission) -> None:
        if admission is Admission.TRIAL:
            self._trial_in_flight = False
            self._opened_at = self._clock()
        elif self._opened_at is None:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open()

    def abandon(self, admission: Admission) -> None:
        """An admitted attempt ended without a verdict (the client left): free the trial."""
        if admission is Admission.TRIAL:
            self._trial_in_flight = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        if self._on_change is not None:
            self._on_change(True)

    def _close(self) -> None:
        self._failures = 0
        self._opened_at = None
        if self._on_change is not None:
            self._on_change(False)


class BreakerBoard:
    """Every backend's breaker, keyed by (model, backend name), kept across table reloads."""

    def __init__(self, clock: Clock = time.monotonic, on_change: OnChange | None = None) -> None:
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def allows(self, model: str, backend: str) -> bool:
        breaker = self._breakers.get((model, backend))
        return breaker is None or breaker.allows()

    def is_open(self, model: str, backend: str) -> bool:
        """Whether the backend's circuit is open or half-open (False for one never seen)."""
        breaker = self._breakers.get((model, backend))
        return breaker is not None and breaker.is_open

    def get(self, model: str, backend: str) -> CircuitBreaker:
        """The breaker of a backend (created closed with defaults if unknown)."""
        breaker = self._breakers.get((model, backend))
        if breaker is None:
            breaker = self._make(model, backend, 5, 30)
        return breaker

    def sync(self, backends: Iterable[tuple[str, str, int, float]]) -> None:
        """Make the board match (model, backend, threshold, openSeconds) rows; drop the rest."""
        keep: set[tuple[str, str]] = set()
        for model, backend, threshold, open_seconds in backends:
            keep.add((model, backend))
            breaker = self._breakers.get((model, backend))
            if breaker is None:
                self._make(model, backend, threshold, open_seconds)
            else:
                breaker.threshold, breaker.open_seconds = threshold, open_seconds
        for key in set(self._breakers) - keep:
            self._breakers.pop(key)
            if self._on_change is not None:
                self._on_change(key[0], key[1], None)

    def _make(
        self, model: str, backend: str, threshold: int, open_seconds: float
    ) -> CircuitBreaker:
        on_change = self._on_change

        def changed(is_open: bool) -> None:
            if on_change is not None:
                on_change(model, backend, is_open)

        breaker = CircuitBreaker(threshold, open_seconds, self._clock, changed)
        self._breakers[(model, backend)] = breaker
        changed(False)
        return breaker

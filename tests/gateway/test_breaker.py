"""Circuit breaker semantics with an injected clock."""

from __future__ import annotations

from ballast.gateway.breaker import Admission, BreakerBoard, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        b.failure(b.admit())


def test_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(3, 10, Clock())
    fail(b, 2)
    b.success(b.admit())  # a success resets the count
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b, 1)
    assert b.state is BreakerState.OPEN
    assert b.admit() is Admission.DENIED


def test_one_trial_after_open_seconds_and_success_closes() -> None:
    clock = Clock()
    changes: list[bool] = []
    b = CircuitBreaker(1, 10, clock, changes.append)
    fail(b, 1)
    clock.now = 9.9
    assert not b.allows()
    clock.now = 10
    assert b.state is BreakerState.HALF_OPEN
    trial = b.admit()
    assert trial is Admission.TRIAL
    assert b.admit() is Admission.DENIED  # only one trial at a time
    b.success(trial)
    assert b.state is BreakerState.CLOSED
    assert changes == [True, False]


def test_failed_trial_reopens_for_another_period() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 10, clock)
    fail(b, 1)
    clock.now = 15
    b.failure(b.admit())
    clock.now = 24
    assert b.admit() is Admission.DENIED
    clock.now = 25
    assert b.admit() is Admission.TRIAL


def test_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 10, clock)
    fail(b, 1)
    clock.now = 10
    b.abandon(b.admit())
    assert b.admit() is Admission.TRIAL


def test_results_of_requests_admitted_before_opening_do_not_close_it() -> None:
    b = CircuitBreaker(2, 10, Clock())
    early = b.admit()
    fail(b, 2)
    b.success(early)
    assert b.state is BreakerState.OPEN


def test_board_keeps_state_across_syncs_and_drops_removed_backends() -> None:
    changes: list[tuple[str, str, bool | None]] = []
    board = BreakerBoard(Clock(), lambda m, b, o: changes.append((m, b, o)))
    board.sync([("m", "a", 1, 10), ("m", "b", 1, 10)])
    fail(board.get("m", "a"), 1)
    board.sync([("m", "a", 5, 10)])
    assert not board.allows("m", "a")
    assert board.get("m", "a").threshold == 5
    fail(board.get("m", "a"), 0)
    board.sync([])
    assert board.allows("m", "a")
    # created closed (False), a opened, b left with the second sync (None), then a left
    assert changes == [
        ("m", "a", False), ("m", "b", False), ("m", "a", True), ("m", "b", None), ("m", "a", None)
    ]  # fmt: skip

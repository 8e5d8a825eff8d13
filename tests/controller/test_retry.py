"""The shared backoff of refused applies: one canary per cause, doubling, peers released together."""

from __future__ import annotations

from ballast.controller.record import Failure, ServiceRecord
from ballast.controller.retry import PER_ROUND, Backoff

CAUSE = "ai 403 Forbidden"


def failing(name: str, cause: str = CAUSE, next_at: float = 0.0) -> ServiceRecord:
    record = ServiceRecord(("ai", name), f"uid-{name}")
    record.failure = Failure(cause, "exceeded quota", 403, next_at=next_at)
    return record


def test_many_services_failing_at_once_open_one_gate_with_the_base_delay() -> None:
    backoff = Backoff(base=1.0, cap=300.0, rng=lambda: 0.5)
    opens = {backoff.failed(CAUSE, now=10.0) for _ in range(750)}
    assert opens == {11.0}  # no doubling per service: one gate, 1 s
    records = [failing(f"s{i}", next_at=11.0) for i in range(750)]
    assert backoff.due(records, now=10.5) == []
    assert len(backoff.due(records, now=11.0)) == 1  # one canary for all 750


def test_a_failed_canary_doubles_the_delay_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=lambda: 0.5)
    now, delays = 0.0, []
    for _ in range(6):
        opens = backoff.failed(CAUSE, now)
        delays.append(opens - now)
        now = opens
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_the_canary_is_the_service_that_waited_longest() -> None:
    backoff = Backoff(rng=lambda: 0.5)
    backoff.failed(CAUSE, now=0.0)
    records = [failing("a", next_at=5.0), failing("b", next_at=1.0), failing("c", next_at=3.0)]
    assert [r.owner for r in backoff.due(records, now=2.0)] == [("ai", "b")]


def test_a_success_releases_every_peer_of_the_cause_but_not_other_causes() -> None:
    backoff = Backoff(rng=lambda: 0.5)
    backoff.failed(CAUSE, now=0.0)
    backoff.failed("ai 500 InternalError", now=0.0)
    peers = [failing(f"p{i}") for i in range(3)]
    other = failing("o", cause="ai 500 InternalError")
    backoff.succeeded(CAUSE)
    due = backoff.due([*peers, other], now=0.1)
    assert {r.owner[1] for r in due} == {"p0", "p1", "p2"}


def test_a_round_retries_a_bounded_number_and_forgets_causes_nobody_has() -> None:
    backoff = Backoff()
    records = [failing(f"s{i}") for i in range(PER_ROUND * 3)]
    assert len(backoff.due(records, now=0.0)) == PER_ROUND
    backoff.failed("gone 500 InternalError", now=0.0)
    backoff.due(records, now=0.0)
    assert "gone 500 InternalError" not in backoff.gates

"""Pod choice as a plain unit: least loaded, ejection, the bounded-load ring, affinity keys."""

from __future__ import annotations

import random
from collections import Counter

from ballast.gateway.balancer import affinity_key, prompt_text
from ballast.gateway.failures import FailureKind
from ballast.gateway.pods import Pod, Ring, available, bounded_pick, key_hash, least_loaded
from ballast.routing import RouteLoadBalancing


def pods(n: int) -> list[Pod]:
    return [Pod(f"pod-{i}", f"10.0.0.{i + 1}", 8000) for i in range(n)]


def test_least_loaded_never_picks_the_busiest_of_two() -> None:
    a, b = pods(2)
    a.in_flight = 5
    assert {least_loaded([a, b], random.Random(i)) for i in range(50)} == {b}


def test_least_loaded_avoids_a_busy_pod_among_four() -> None:
    fleet = pods(4)
    fleet[0].in_flight = 10
    picks = Counter(least_loaded(fleet, random.Random(i)).name for i in range(400))
    assert picks["pod-0"] == 0
    assert all(picks[f"pod-{i}"] > 80 for i in (1, 2, 3))  # ties: each of the idle ones


def test_least_loaded_takes_the_fewest_of_all_not_the_lesser_of_two() -> None:
    # Two sampled pods (the power of two choices) would often be the busier pair here.
    fleet = pods(4)
    for pod, n in zip(fleet, (3, 1, 2, 4), strict=True):
        pod.in_flight = n
    assert {least_loaded(fleet, random.Random(i)).name for i in range(200)} == {"pod-1"}


def test_a_refused_connection_ejects_at_once_and_the_time_grows() -> None:
    pod = pods(1)[0]
    assert pod.failed(FailureKind.CONNECT_FAILURE, now=100.0)
    assert pod.ejected(100.5)
    assert not pod.ejected(101.0)
    assert pod.failed(FailureKind.CONNECT_FAILURE, now=200.0)
    assert pod.ejected(201.5)
    assert not pod.ejected(202.0)
    pod.succeeded()
    assert pod.failed(FailureKind.CONNECT_FAILURE, now=300.0)
    assert not pod.ejected(301.0)  # a success forgave the earlier ejections


def test_5xx_ejects_after_three_in_a_row_and_timeouts_never() -> None:
    pod = pods(1)[0]
    assert not pod.failed(FailureKind.SERVER_ERROR, 0.0)
    assert not pod.failed(FailureKind.SERVER_ERROR, 0.0)
    assert pod.failed(FailureKind.SERVER_ERROR, 0.0)
    other = pods(1)[0]
    assert not any(other.failed(FailureKind.TIMEOUT, 0.0) for _ in range(10))
    assert not any(other.failed(FailureKind.TOO_MANY_REQUESTS, 0.0) for _ in range(10))


def test_available_skips_tried_and_ejected_but_never_leaves_nothing() -> None:
    a, b, c = pods(3)
    b.failed(FailureKind.CONNECT_FAILURE, now=0.0)
    assert available([a, b, c], [a], now=0.1) == [c]
    assert available([a, b, c], [a, c], now=0.1) == [b]  # only the ejected one is left
    assert available([a, b, c], [a, b, c], now=0.1) == []


def test_the_ring_is_the_same_in_every_process_and_gateway() -> None:
    assert key_hash("prefix") == 0x82B93A7C4D34DBB0  # blake2b: no per-process seed, unlike hash()
    one, two = Ring(pods(4)), Ring(list(reversed(pods(4))))
    for i in range(100):
        assert list(one.walk(f"k{i}")) == list(two.walk(f"k{i}"))


def test_the_ring_spreads_keys_and_a_removed_pod_moves_only_its_keys() -> None:
    fleet = pods(4)
    ring = Ring(fleet)
    home = {f"k{i}": next(ring.walk(f"k{i}")) for i in range(4000)}
    shares = Counter(home.values())
    assert max(shares.values()) / min(shares.values()) < 1.5
    smaller = Ring(fleet[:3])
    gone = fleet[3].address
    moved = [k for k, a in home.items() if next(smaller.walk(k)) != a]
    assert moved
    assert all(home[k] == gone for k in moved)


def test_bounded_pick_keeps_a_key_on_its_pod_until_the_bound_then_spills() -> None:
    fleet = pods(4)
    ring = Ring(fleet)
    pod, hit = bounded_pick(ring, "session-1", fleet, fleet, 1.25) or (None, False)
    assert pod is not None
    assert hit
    by = {p.address: p for p in fleet}
    home = by[next(ring.walk("session-1"))]
    assert pod is home
    # 2 in flight on each other pod, 3 at home: cap = ceil(1.25 * (9 + 1) / 4) = 4, 3 + 1 fits.
    for p in fleet:
        p.in_flight = 2
    home.in_flight = 3
    assert bounded_pick(ring, "session-1", fleet, fleet, 1.25) == (home, True)
    home.in_flight = 4  # cap ceil(1.25 * 11 / 4) = 4: a fifth would exceed it
    spilled, hit = bounded_pick(ring, "session-1", fleet, fleet, 1.25) or (None, True)
    assert spilled is not home
    assert not hit


def test_bounded_load_holds_under_one_hot_key() -> None:
    fleet = pods(4)
    ring = Ring(fleet)
    for _ in range(40):  # 40 concurrent requests of one key, none finishing
        pod, _ = bounded_pick(ring, "hot", fleet, fleet, 1.25) or (fleet[0], False)
        pod.in_flight += 1
    mean = sum(p.in_flight for p in fleet) / 4
    assert max(p.in_flight for p in fleet) <= 1.25 * mean + 1


def test_prefix_key_reads_chat_completion_and_embedding_prompts() -> None:
    chat = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}  # fmt: skip
    assert prompt_text(chat, 100) == "system:be brief\nuser:hi\n"
    assert prompt_text(chat, 6) == "system"
    assert prompt_text({"prompt": "abc"}, 2) == "ab"
    assert prompt_text({"input": ["x", "y"]}, 10) == "xy"


def test_affinity_key_by_strategy() -> None:
    doc = {"messages": [{"role": "user", "content": "hello"}]}
    prefix = RouteLoadBalancing(strategy="prefixHash", prefix_chars=4)
    session = RouteLoadBalancing(strategy="sessionHeader", header="X-Session-Id")
    assert affinity_key(prefix, doc, {}) == "user"
    assert affinity_key(session, doc, {"X-Session-Id": "s1"}) == "s1"
    assert affinity_key(session, doc, {}) is None
    assert affinity_key(RouteLoadBalancing(), doc, {"X-Session-Id": "s1"}) is None
    assert affinity_key(RouteLoadBalancing(strategy="future"), doc, {}) is None

"""The routing decision as a plain function: tiers, weights, health, breakers, policies."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from ballast.gateway.strategy import candidates
from ballast.routing import RoutingTable


class Breakers:
    def __init__(self, *closed_out: str) -> None:
        self.open = set(closed_out)

    def allows(self, model: str, backend: str) -> bool:
        return backend not in self.open


def make_table(*backends: tuple[str, int, int, bool], **fallback: Any) -> RoutingTable:
    """Backends as (name, priority, weight, in_route)."""
    rows = [
        {"name": n, "engine": "vllm", "url": f"http://{n}:8000/v1", "upstreamModel": n,
         "priority": p, "weight": w, "inRoute": r}
        for n, p, w, r in backends
    ]  # fmt: skip
    all_unhealthy = not any(r for *_, r in backends)
    return RoutingTable.model_validate(
        {"model": "m", "backends": rows, "fallback": fallback, "allUnhealthy": all_unhealthy}
    )


def names(table: RoutingTable, breakers: Breakers | None = None, seed: int = 0) -> list[str]:
    return [b.name for b in candidates(table, breakers or Breakers(), random.Random(seed))]


def test_lowest_tier_first_then_the_rest_of_the_tier_then_next_tiers() -> None:
    t = make_table(
        ("c", 2, 100, True), ("a1", 0, 100, True), ("b", 1, 100, True), ("a2", 0, 100, True)
    )
    for seed in range(20):
        order = names(t, seed=seed)
        assert sorted(order[:2]) == ["a1", "a2"]
        assert order[2:] == ["b", "c"]


def test_weighted_pick_inside_a_tier() -> None:
    t = make_table(("heavy", 0, 300, True), ("light", 0, 100, True))
    firsts = Counter(names(t, seed=s)[0] for s in range(4000))
    assert 0.70 < firsts["heavy"] / 4000 < 0.80


def test_zero_weight_backend_only_after_the_others() -> None:
    t = make_table(("spare", 0, 0, True), ("main", 0, 10, True))
    assert {tuple(names(t, seed=s)) for s in range(50)} == {("main", "spare")}


def test_out_of_route_backends_are_skipped_while_another_is_healthy() -> None:
    t = make_table(("a", 0, 100, False), ("b", 1, 100, True), ("c", 2, 100, False))
    assert names(t) == ["b"]


def test_all_unhealthy_try_all_uses_every_backend_in_tier_order() -> None:
    t = make_table(("c", 1, 100, False), ("a", 0, 100, False), whenAllUnhealthy="tryAll")
    assert names(t) == ["a", "c"]


def test_all_unhealthy_reject_gives_no_candidate() -> None:
    t = make_table(("a", 0, 100, False), whenAllUnhealthy="reject")
    assert names(t) == []


def test_open_breakers_are_skipped_and_the_next_tier_leads() -> None:
    t = make_table(("a", 0, 100, True), ("b", 1, 100, True))
    assert names(t, Breakers("a")) == ["b"]
    assert names(t, Breakers("a", "b")) == []

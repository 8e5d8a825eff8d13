"""The routing decision: which backends a request tries, in which order.

A plain unit over typed inputs (a routing table, a view of the circuit breakers, a random
source); it knows nothing of HTTP. The order is: the lowest-priority tier that has an
eligible backend first, a weighted pick inside it, then the rest of that tier (weighted
order), then the next tiers the same way. Eligible means "in the route" and admitted by
its breaker. When the table has no backend in the route, ``whenAllUnhealthy: tryAll``
makes every backend eligible (tier order as above) and ``reject`` makes none.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import groupby
from typing import Protocol

from ballast.routing import RouteBackend, RoutingTable


class BreakerView(Protocol):
    """What the strategy needs to know of the breakers."""

    def allows(self, model: str, backend: str) -> bool: ...


def eligible(table: RoutingTable) -> list[RouteBackend]:
    """Backends a request may use before breakers are consulted (:meth:`RoutingTable.eligible`)."""
    return table.eligible()


def tiers(backends: Sequence[RouteBackend]) -> tuple[tuple[RouteBackend, ...], ...]:
    """Backends grouped by priority, lowest (preferred) first; table order inside a tier."""
    ordered = sorted(backends, key=lambda b: b.priority)
    return tuple(tuple(group) for _, group in groupby(ordered, key=lambda b: b.priority))


def weighted_order(backends: Sequence[RouteBackend], rng: random.Random) -> list[RouteBackend]:
    """A weighted random order: the first is a pick by weight, the rest a weighted shuffle.

    Efraimidis-Spirakis sampling without replacement; weight-0 backends come last, in
    table order, so they only take traffic when the others cannot.
    """
    if len(backends) == 1:
        return [backends[0]]
    weighted = [b for b in backends if b.weight > 0]
    keyed = sorted(weighted, key=lambda b: rng.random() ** (1.0 / b.weight), reverse=True)
    return keyed + [b for b in backends if b.weight <= 0]


class Router:
    """The strategy for one table, with its tiers computed once."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.tiers = tiers(eligible(table))

    def candidates(self, breakers: BreakerView, rng: random.Random) -> list[RouteBackend]:
        """Every backend to try, in order; empty means "no backend available"."""
        model = self.table.model
        out: list[RouteBackend] = []
        for tier in self.tiers:
            admitted = [b for b in tier if breakers.allows(model, b.name)]
            if admitted:
                out.extend(weighted_order(admitted, rng))
        return out


def candidates(
    table: RoutingTable, breakers: BreakerView, rng: random.Random
) -> list[RouteBackend]:
    """Every backend a request to ``table``'s model tries, in order (see module docs)."""
    return Router(table).candidates(breakers, rng)

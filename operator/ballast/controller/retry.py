"""Backoff for applies the API refuses, shared by every service that fails for one cause.

A failing apply is retried from the health loop, not by kopf (kopf would record
each retry in annotations on the LLMService: two writes per attempt). Failures
are grouped by cause — namespace, HTTP status and reason, e.g. ``ai 500
InternalError`` when the Service IP range is full or ``ai 403 Forbidden`` under a
quota — and each cause has one gate with an exponential delay (1 s doubling, with
jitter, up to ``cap``). When the gate opens, one service of that cause is retried
(the one that waited longest); if it succeeds the gate goes and every other
service of that cause is retried at once, if it fails the delay doubles. So 750
services behind one full IP range cost one refused request per delay, not 750,
and recover together when the cause goes away. A spec edit is always tried at
once (the user changed something); the health loop retries at most
:data:`PER_ROUND` services per round, so failing services never crowd out the
rest. Pure: the caller passes the clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ballast.controller.record import ServiceRecord

#: Most retries started in one health round.
PER_ROUND: Final = 16


@dataclass
class Gate:
    delay: float
    opens_at: float


class Backoff:
    """One gate per failure cause."""

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = max(base, cap)
        self.rng = rng
        self.gates: dict[str, Gate] = {}

    def failed(self, cause: str, now: float) -> float:
        """Note a failure of ``cause``; returns when the gate opens next.

        The delay doubles only when the gate was open (a retry failed), not for each
        of many services failing at once.
        """
        gate = self.gates.get(cause)
        if gate is not None and gate.opens_at > now:
            return gate.opens_at
        delay = self.base if gate is None else min(self.cap, gate.delay * 2)
        opens_at = now + delay * (0.8 + 0.4 * self.rng())
        self.gates[cause] = Gate(delay, opens_at)
        return opens_at

    def succeeded(self, cause: str) -> None:
        """A service of ``cause`` went through: its peers are retried at once."""
        self.gates.pop(cause, None)

    def due(self, records: Iterable[ServiceRecord], now: float) -> list[ServiceRecord]:
        """Failing services to retry now: one per open gate, all of a cause without a gate."""
        by_cause: dict[str, list[ServiceRecord]] = {}
        for record in records:
            if record.failure is not None:
                by_cause.setdefault(record.failure.cause, []).append(record)
        for cause in set(self.gates) - set(by_cause):
            del self.gates[cause]  # nobody fails for it any more
        out: list[ServiceRecord] = []
        for cause, members in sorted(by_cause.items()):
            gate = self.gates.get(cause)
            if gate is None:
                out.extend(members)
            elif gate.opens_at <= now:
                out.append(min(members, key=lambda r: r.failure.next_at if r.failure else 0.0))
        return out[:PER_ROUND]

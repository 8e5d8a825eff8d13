"""What this gateway counts of demand per backend, and the report the operator reads.

Per backend of a table with a ``source`` (an LLMService), keyed by (namespace, LLMService,
backend): requests in flight to it, requests held for it, and a counter of requests sent
to or held for it since the gateway started (each request counts once per backend). The
metrics listener serves them as a :class:`~ballast.routing.demand.DemandReport` at
:data:`~ballast.routing.demand.DEMAND_PATH`; the operator reads every gateway pod to decide
when a backend at zero must come up and when an idle one may go down. The gateway itself
writes nothing to the API.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ballast.gateway.breaker import BreakerBoard
from ballast.gateway.snapshot import Route
from ballast.routing import Source
from ballast.routing.demand import BackendDemand, DemandReport

DemandKey = tuple[str, str, str]


@dataclass
class Counts:
    """One backend's demand as this gateway sees it."""

    in_flight: int = 0
    held: int = 0
    requests: int = 0


def gateway_name() -> str:
    """This gateway's name in reports: its pod name (``$POD_ID``, as the chart sets it from
    the downward API, or ``$POD_NAME``), else ``$HOSTNAME``, else the host name."""
    env = os.environ
    return env.get("POD_ID") or env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()


class DemandBoard:
    """Every reported backend's :class:`Counts`; one per app."""

    def __init__(self, name: str | None = None, started: float | None = None) -> None:
        self.name = name or gateway_name()
        self.started = time.time() if started is None else started
        self._counts: dict[DemandKey, Counts] = {}

    def counts(self, source: Source | None, backend: str) -> Counts:
        """The counts of ``backend`` of the table from ``source``; for a table without a
        source, counts that are kept nowhere (so nothing needs to check)."""
        if source is None:
            return Counts()
        key = (source.namespace, source.name, backend)
        found = self._counts.get(key)
        if found is None:
            found = self._counts[key] = Counts()
        return found

    def get(self, namespace: str, service: str, backend: str) -> Counts | None:
        return self._counts.get((namespace, service, backend))

    def report(self, routes: Mapping[str, Route], board: BreakerBoard) -> DemandReport:
        """The report: backends that held or sent a request, or whose circuit is open."""
        open_now: set[DemandKey] = set()
        for model, route in routes.items():
            source = route.table.source
            if source is None:
                continue
            for b in route.table.backends:
                if board.is_open(model, b.name):
                    open_now.add((source.namespace, source.name, b.name))
        rows = []
        for key in sorted(set(self._counts) | open_now):
            c = self._counts.get(key) or Counts()
            if not (c.requests or c.held or c.in_flight or key in open_now):
                continue
            rows.append(
                BackendDemand(
                    namespace=key[0],
                    service=key[1],
                    backend=key[2],
                    in_flight=c.in_flight,
                    held=c.held,
                    requests=c.requests,
                    circuit_open=key in open_now,
                )
            )
        return DemandReport(gateway=self.name, started=self.started, backends=rows)

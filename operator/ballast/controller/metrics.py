"""The operator's Prometheus metrics (``ballast_`` prefix) and the ``/metrics`` endpoint.

Metrics live in their own :class:`prometheus_client.CollectorRegistry`, created
with the operator (no module-level state), and are served by a small aiohttp
server on ``--metrics-port`` (0 disables it).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

#: Label values of ballast_reconciles_total{result}.
RESULTS = ("success", "invalid", "error")


class Metrics:
    """Every metric the operator exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter(
            "ballast_reconciles",
            "LLMService reconciles by result (success, invalid, error).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "ballast_reconcile_duration_seconds",
            "Time one LLMService reconcile took.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "ballast_reconcile_errors",
            "Reconciles that failed with an API error (retried).",
            registry=self.registry,
        )
        self.backends_healthy = Gauge(
            "ballast_backends_healthy",
            "Backends of an LLMService that are healthy.",
            ["namespace", "service"],
            registry=self.registry,
        )
        self.backends_in_route = Gauge(
            "ballast_backends_in_route",
            "Backends of an LLMService the gateway routes to.",
            ["namespace", "service"],
            registry=self.registry,
        )
        self.backend_in_route = Gauge(
            "ballast_backend_in_route",
            "1 while this backend of an LLMService is in the gateway's route, else 0.",
            ["namespace", "service", "backend"],
            registry=self.registry,
        )
        #: The backends each service's series were last set for (to drop removed ones).
        self._backends: dict[tuple[str, str], frozenset[str]] = {}
        self.failover_transitions = Counter(
            "ballast_failover_transitions",
            "Backends leaving (out) or re-entering (in) the route.",
            ["direction"],
            registry=self.registry,
        )
        self.children_restored = Counter(
            "ballast_children_restored",
            "Children put back after a hand edit or deletion.",
            ["kind"],
            registry=self.registry,
        )
        self.scale_transitions = Counter(
            "ballast_scale_transitions",
            "Backends moving between 0 and up (scale to zero, cold standby), by the state entered.",
            ["state"],
            registry=self.registry,
        )
        self.demand_gateways = Gauge(
            "ballast_demand_gateways",
            "Gateways whose demand report was read in the last round (scale to zero, standby).",
            registry=self.registry,
        )
        self.demand_complete = Gauge(
            "ballast_demand_complete",
            "1 when every gateway answered the last demand round (else no backend goes to 0).",
            registry=self.registry,
        )
        for result in RESULTS:
            self.reconciles.labels(result)
        for direction in ("in", "out"):
            self.failover_transitions.labels(direction)

    def set_backends(
        self, namespace: str, service: str, healthy: int, in_route: dict[str, bool]
    ) -> None:
        """A service's backend gauges: ``healthy`` backends, and each backend's place in the
        route (``in_route``: every backend of the spec, by name)."""
        self.backends_healthy.labels(namespace, service).set(healthy)
        self.backends_in_route.labels(namespace, service).set(sum(in_route.values()))
        for name, routed in in_route.items():
            self.backend_in_route.labels(namespace, service, name).set(1 if routed else 0)
        names = frozenset(in_route)
        for gone in self._backends.get((namespace, service), frozenset()) - names:
            self._remove(self.backend_in_route, namespace, service, gone)
        self._backends[(namespace, service)] = names

    def forget(self, namespace: str, service: str) -> None:
        """Drop the series of a deleted LLMService."""
        for gauge in (self.backends_healthy, self.backends_in_route):
            self._remove(gauge, namespace, service)
        for name in self._backends.pop((namespace, service), frozenset()):
            self._remove(self.backend_in_route, namespace, service, name)

    @staticmethod
    def _remove(gauge: Gauge, *labels: str) -> None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

"""The operator's Prometheus metrics (``ballast_`` prefix) and the ``/metrics`` endpoint.

Metrics live in their own :class:`prometheus_client.CollectorRegistry`, created
with the operator (no module-level state), and are served by a small aiohttp
server on ``--metrics-port`` (0 disables it).
"""

from __future__ import annotations

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
        for result in RESULTS:
            self.reconciles.labels(result)
        for direction in ("in", "out"):
            self.failover_transitions.labels(direction)

    def set_backends(self, namespace: str, service: str, healthy: int, in_route: int) -> None:
        self.backends_healthy.labels(namespace, service).set(healthy)
        self.backends_in_route.labels(namespace, service).set(in_route)

    def forget(self, namespace: str, service: str) -> None:
        """Drop the series of a deleted LLMService."""
        for gauge in (self.backends_healthy, self.backends_in_route):
            try:
                gauge.remove(namespace, service)
            except KeyError:
                continue

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

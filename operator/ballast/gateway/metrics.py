"""The gateway's Prometheus metrics, in a registry of its own per app.

Names carry the ``ballast_gateway_`` prefix. Labelled children are cached so a request
pays a dict lookup, not prometheus_client's label validation. ``model`` is only ever a
served model (requests for unknown models are counted under ``-``), so label sets stay
bounded by the routing tables.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "ballast_gateway_"
#: LLM latencies: from a cached embedding (ms) to a long generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
UNKNOWN_MODEL = "-"


class Metrics:
    """Every gateway metric; one instance per app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            PREFIX + "requests",
            "Client requests by served model, answering backend and outcome.",
            ["model", "backend", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from request to the end of the answer (whole stream included).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Time from request to the first byte of the answer sent to the client.",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            PREFIX + "retries", "Attempts after a request's first.", ["model"], registry=r
        )
        self.fallbacks = Counter(
            PREFIX + "fallbacks",
            "Attempts that moved to a lower-preference (higher priority number) tier.",
            ["model"],
            registry=r,
        )
        self.circuit_open = Gauge(
            PREFIX + "circuit_open",
            "1 while a backend's circuit breaker is open (or half-open).",
            ["model", "backend"],
            registry=r,
        )
        self.in_flight = 0
        in_flight = Gauge(PREFIX + "in_flight", "Requests being answered.", registry=r)
        in_flight.set_function(lambda: self.in_flight)  # read at scrape time: no lock per request
        self.models = Gauge(PREFIX + "models", "Served models in the loaded tables.", registry=r)
        self.reload_errors = Counter(
            PREFIX + "routes_errors", "Routing tables that could not be loaded.", registry=r
        )
        self._counts: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._ttfts: dict[tuple[str, str], Histogram] = {}

    def request(self, model: str, backend: str, outcome: str, seconds: float) -> None:
        """Count one finished client request and observe its duration."""
        key = (model, backend, outcome)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = self.requests.labels(model, backend, outcome)
        count.inc()
        duration = self._durations.get(model)
        if duration is None:
            duration = self._durations[model] = self.duration.labels(model)
        duration.observe(seconds)

    def first_byte(self, model: str, backend: str, seconds: float) -> None:
        """Observe the time to the first byte sent to the client."""
        ttft = self._ttfts.get((model, backend))
        if ttft is None:
            ttft = self._ttfts[(model, backend)] = self.ttft.labels(model, backend)
        ttft.observe(seconds)

    def breaker_changed(self, model: str, backend: str, is_open: bool) -> None:
        self.circuit_open.labels(model, backend).set(1 if is_open else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

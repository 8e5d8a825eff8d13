"""The gateway's Prometheus metrics, in a registry of its own per app.

Names carry the ``ballast_gateway_`` prefix. Labelled children are cached so a request
pays a dict lookup, not prometheus_client's label validation. ``model`` is only ever a
served model (requests for unknown models are counted under ``-``), so label sets stay
bounded by the routing tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: (namespace, service, pod, requests sent, requests in flight) of each pod listed now.
PodRows = Callable[[], Iterable[tuple[str, str, str, int, int]]]

PREFIX = "ballast_gateway_"
#: LLM latencies: from a cached embedding (ms) to a long generation or a cold start
#: (minutes; OTel's GenAI buckets stop at 82 s, where every cold start would land in +Inf).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200,
)  # fmt: skip
#: Time to first token: a warm engine's tens of ms up to a model loading for ten minutes.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
#: Time per output token after the first: fast decode (1 ms) to a crawling one (2.5 s).
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)
#: How long held requests waited for a backend's first ready pod: up to the 600 s bound.
HOLD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600)
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
            "Time from request to the end of the answer (whole stream included), by served "
            "model and answering backend.",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Streams only: time from request to the first event carrying generated text.",
            ["model", "backend"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            PREFIX + "time_per_output_token_seconds",
            "Streams with usage only: time per completion token after the first.",
            ["model", "backend"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.token_usage = Counter(
            PREFIX + "tokens",
            "Tokens reported in answers' usage, by served model, backend and kind "
            "(prompt, completion).",
            ["model", "backend", "kind"],
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
        self.pod_ejections = Counter(
            PREFIX + "pod_ejections",
            "Pods taken out of a backend's choice for a while after failing (passive ejection).",
            ["model", "backend"],
            registry=r,
        )
        self.affinity_picks = Counter(
            PREFIX + "affinity",
            "Keyed requests (prefixHash, sessionHeader): hit = the key's own pod took it, "
            "spill = the next pod on the ring (own pod over loadFactor, tried or ejected).",
            ["model", "backend", "result"],
            registry=r,
        )
        self.backend_discovery = Gauge(
            PREFIX + "backend_discovery",
            "1 for the way a self-hosted backend is reached: endpoints (pods chosen from its "
            "EndpointSlices) or service (its Service URL: no ready endpoint, or slices unreadable).",
            ["model", "backend", "mode"],
            registry=r,
        )
        self.malformed = Counter(
            PREFIX + "malformed_requests",
            "Requests refused before routing because they were not valid HTTP.",
            registry=r,
        )
        self.auth_denials = Counter(
            PREFIX + "auth_denials",
            "Requests refused by client authentication: missing or unknown key (401), a model "
            "the key may not call (403), over the key's rate (429).",
            ["reason"],
            registry=r,
        )
        self._denials = {
            reason: self.auth_denials.labels(reason)
            for reason in ("missing", "unknown", "model", "rate")
        }
        self.client_keys = Gauge(
            PREFIX + "client_keys", "Client API keys loaded from key Secrets.", registry=r
        )
        self.held = Gauge(
            PREFIX + "held_requests",
            "Requests waiting for a backend at zero (or warming up) to get a ready pod.",
            ["model", "backend"],
            registry=r,
        )
        self.hold_seconds = Histogram(
            PREFIX + "hold_seconds",
            "How long released held requests waited for the backend's first ready pod.",
            ["model", "backend"],
            buckets=HOLD_BUCKETS,
            registry=r,
        )
        self.hold_rejections = Counter(
            PREFIX + "hold_rejections",
            "Requests not held to the end: full (the backend's hold queue was at maxPending, "
            "503) or timeout (no ready pod within timeoutSeconds, 504).",
            ["model", "backend", "reason"],
            registry=r,
        )
        #: Labelled children of the per-request metrics, looked up once per label set.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Gauge | Histogram, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, model: str, backend: str, outcome: str, seconds: float) -> None:
        """Count one finished client request and observe its duration."""
        self._child(self.requests, model, backend, outcome).inc()
        self._child(self.duration, model, backend).observe(seconds)

    def tokens(self, model: str, backend: str, kind: str, count: int) -> None:
        """Add ``count`` tokens of ``kind`` (prompt, completion) from an answer's usage."""
        self._child(self.token_usage, model, backend, kind).inc(count)

    def first_token(self, model: str, backend: str, seconds: float) -> None:
        """Observe a stream's time to its first generated token."""
        self._child(self.ttft, model, backend).observe(seconds)

    def per_output_token(self, model: str, backend: str, seconds: float) -> None:
        """Observe a stream's time per output token after the first."""
        self._child(self.tpot, model, backend).observe(seconds)

    def holding(self, model: str, backend: str, change: int) -> None:
        """One more (``change`` 1) or one fewer (-1) request held for ``backend``."""
        self._child(self.held, model, backend).inc(change)

    def released(self, model: str, backend: str, seconds: float) -> None:
        """A held request was released after waiting ``seconds``."""
        self._child(self.hold_seconds, model, backend).observe(seconds)

    def hold_rejected(self, model: str, backend: str, reason: str) -> None:
        """A request was refused a hold (``full``) or waited in vain (``timeout``)."""
        self._child(self.hold_rejections, model, backend, reason).inc()

    def auth_denied(self, reason: str) -> None:
        self._denials[reason].inc()

    def affinity(self, model: str, backend: str, hit: bool) -> None:
        self._child(self.affinity_picks, model, backend, "hit" if hit else "spill").inc()

    def discovery(self, model: str, backend: str, mode: str, old: str | None) -> None:
        if old is not None:
            self.backend_discovery.labels(model, backend, old).set(0)
        self.backend_discovery.labels(model, backend, mode).set(1)

    def breaker_changed(self, model: str, backend: str, is_open: bool | None) -> None:
        """A breaker's state: 0 from its creation, 1 while open; its series goes with it."""
        if is_open is None:
            with contextlib.suppress(KeyError):
                self.circuit_open.remove(model, backend)
        else:
            self.circuit_open.labels(model, backend).set(1 if is_open else 0)

    def watch_pods(self, rows: PodRows) -> None:
        """Export requests and in-flight per pod, for the pods ``rows`` lists at scrape time
        (so the series are bounded by the pods that exist)."""
        self.registry.register(_PodCollector(rows))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PodCollector(Collector):
    def __init__(self, rows: PodRows) -> None:
        self.rows = rows

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["namespace", "service", "pod"]
        requests = CounterMetricFamily(
            PREFIX + "pod_requests", "Attempts sent to each listed pod.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            PREFIX + "pod_in_flight", "Attempts in flight per listed pod.", labels=labels
        )
        for namespace, service, pod, sent, active in self.rows():
            requests.add_metric([namespace, service, pod], sent)
            in_flight.add_metric([namespace, service, pod], active)
        yield requests
        yield in_flight

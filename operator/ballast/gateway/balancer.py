"""Which pod of a backend a request's next attempt goes to (``spec.loadBalancing``).

Between the routing strategy (which backend) and the attempt (one HTTP request): for a
self-hosted backend whose Service's EndpointSlices list ready pods, one of those pods;
otherwise None, and the attempt goes to the Service URL as before pod choice existed.
Which of the two a backend is in (``endpoints`` or ``service``) is logged once per change
and exported as ``ballast_gateway_backend_discovery``. The affinity key of a request
(its prompt prefix, or its session header) is computed once per request by
:func:`affinity_key`; requests without one are balanced as ``leastLoaded``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ballast.api import LoadBalancingStrategy
from ballast.gateway.endpoints import Endpoints, PodSet
from ballast.gateway.metrics import Metrics
from ballast.gateway.pods import Pod, available, bounded_pick, least_loaded
from ballast.routing import RouteBackend, RouteLoadBalancing

log = logging.getLogger(__name__)

ENDPOINTS, SERVICE = "endpoints", "service"
LEAST_LOADED = LoadBalancingStrategy.LEAST_LOADED.value


def affinity_key(
    lb: RouteLoadBalancing, doc: Mapping[str, Any], headers: Mapping[str, str]
) -> str | None:
    """The key that pins a request to a pod under ``lb``, or None (least loaded)."""
    if lb.strategy == LEAST_LOADED:
        return None
    strategy = lb.known_strategy
    if strategy is LoadBalancingStrategy.SESSION_HEADER and lb.header:
        return headers.get(lb.header) or None
    if strategy is LoadBalancingStrategy.PREFIX_HASH:
        text = prompt_text(doc, lb.prefix_length)
        return text or None
    return None


def prompt_text(doc: Mapping[str, Any], limit: int) -> str:
    """The first ``limit`` characters of a request's prompt: chat messages (role and text),
    a completion prompt, or an embedding input."""
    parts: list[str] = []
    size = 0
    for piece in _pieces(doc):
        parts.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return "".join(parts)[:limit]


def _pieces(doc: Mapping[str, Any]) -> list[str]:
    messages = doc.get("messages")
    if isinstance(messages, list):
        out = []
        for m in messages:
            if isinstance(m, dict):
                out.append(f"{m.get('role', '')}:{_text(m.get('content'))}\n")
        return out
    for key in ("prompt", "input"):
        value = doc.get(key)
        if value is not None:
            return [_text(value)]
    return []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(c.get("text") if isinstance(c, dict) else c) for c in content)
    return "" if content is None else str(content)


class Balancer:
    """Pod choice for every backend; one per app."""

    def __init__(
        self,
        endpoints: Endpoints | None,
        metrics: Metrics,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.endpoints, self.metrics, self.rng, self.clock = endpoints, metrics, rng, clock
        self._modes: dict[tuple[str, str], str] = {}

    def pods(self, model: str, backend: RouteBackend) -> PodSet | None:
        """The ready pods of ``backend`` to choose from, or None: use its Service URL."""
        ref = backend.service
        if ref is None:
            return None  # an external API: nothing to discover
        pods = None if self.endpoints is None else self.endpoints.pods(ref)
        self._note(model, backend.name, ENDPOINTS if pods is not None else SERVICE)
        return pods

    def choose(
        self,
        model: str,
        backend: str,
        pods: PodSet,
        lb: RouteLoadBalancing,
        key: str | None,
        tried: Sequence[Pod],
    ) -> Pod | None:
        """The pod for the next attempt; None when every ready pod was tried already."""
        candidates = available(pods.pods, tried, self.clock())
        if not candidates:
            return None
        if key is not None:
            picked = bounded_pick(pods.ring, key, pods.pods, candidates, lb.bound)
            if picked is not None:
                self.metrics.affinity(model, backend, hit=picked[1])
                return picked[0]
        return least_loaded(candidates, self.rng)

    def _note(self, model: str, backend: str, mode: str) -> None:
        old = self._modes.get((model, backend))
        if old == mode:
            return
        self._modes[(model, backend)] = mode
        self.metrics.discovery(model, backend, mode, old)
        if mode == SERVICE:
            log.warning(
                "model %s: backend %s: no ready pod in its EndpointSlices (or they cannot be "
                "read): sending to its Service URL", model, backend,
            )  # fmt: skip
        elif old is not None:
            log.info("model %s: backend %s: choosing pods from its EndpointSlices again",
                     model, backend)  # fmt: skip

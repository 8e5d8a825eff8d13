"""Reading demand from the gateways, about once a second.

The gateways count held and in-flight requests per backend and serve them as a
:class:`~ballast.routing.demand.DemandReport` on their metrics port; they have no
write access to the API. :class:`DemandReader` finds the gateway pods (the
EndpointSlices of the gateway Service, ``BALLAST_GATEWAY_SERVICE=<namespace>/<name>``,
on the port named ``metrics``; or fixed ``BALLAST_GATEWAY_DEMAND_URLS`` for local runs
and tests), reads every one each round, and keeps :class:`Round`: per backend the
held and in-flight sums and the requests since the previous round (from each
gateway's counter; a restarted gateway, seen by its ``started``, counts from 0).

A round in which some gateway did not answer is *incomplete*: the scaler may wake a
backend from what it has, but never takes one to 0 on it. The reader runs only while
some LLMService has a backend that can be at 0 (see :meth:`DemandReader.wanted`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from ballast.controller.kube import ApiError, Kind, KubeClient
from ballast.controller.scaler import Demand
from ballast.routing.demand import DEMAND_PATH, DemandReport

logger = logging.getLogger("ballast.demand")
ENDPOINT_SLICES: Final = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
#: The gateway Service's port that serves /metrics and the demand report.
METRICS_PORT_NAME: Final = "metrics"
#: Seconds between reads of the gateways, and between lookups of their pods.
INTERVAL: Final = 1.0
DISCOVERY_INTERVAL: Final = 10.0
READ_TIMEOUT: Final = 0.9

#: (namespace, LLMService, backend)
BackendKey = tuple[str, str, str]
#: Each gateway's request counters, by (gateway, started).
Counters = dict[tuple[str, float], dict[BackendKey, int]]


@dataclass(frozen=True)
class Round:
    """What every gateway said in one round."""

    demand: Mapping[BackendKey, Demand] = field(default_factory=dict)
    #: Circuits open in at least one gateway.
    open_circuits: frozenset[BackendKey] = frozenset()
    #: Every gateway answered (and at least one round has been read).
    complete: bool = False
    #: Gateways read.
    gateways: int = 0

    def of(self, key: BackendKey) -> Demand | None:
        """The backend's demand; None when the round is incomplete and shows none for it."""
        found = self.demand.get(key)
        if found is not None:
            return found
        return Demand() if self.complete else None


def gateway_urls(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """The demand URL of every ready gateway pod in the gateway Service's EndpointSlices."""
    urls = []
    for sl in slices:
        ports = {p.get("name"): p.get("port") for p in sl.get("ports") or ()}
        port = ports.get(METRICS_PORT_NAME)
        if port is None:
            continue
        for ep in sl.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in (ep.get("addresses") or [])[:1]:
                host = f"[{address}]" if ":" in address else address
                urls.append(f"http://{host}:{port}{DEMAND_PATH}")
    return sorted(set(urls))


def merge(
    reports: Sequence[DemandReport],
    before: Mapping[tuple[str, float], Mapping[BackendKey, int]],
) -> tuple[dict[BackendKey, Demand], frozenset[BackendKey], Counters]:
    """Sum the reports; requests since ``before`` (counters by gateway and start time)."""
    held: dict[BackendKey, int] = {}
    flight: dict[BackendKey, int] = {}
    new: dict[BackendKey, int] = {}
    opened: set[BackendKey] = set()
    counters: Counters = {}
    for r in reports:
        gw = (r.gateway, r.started)
        previous = before.get(gw)
        mine = counters.setdefault(gw, {})
        for b in r.backends:
            key = (b.namespace, b.service, b.backend)
            held[key] = held.get(key, 0) + b.held
            flight[key] = flight.get(key, 0) + b.in_flight
            mine[key] = b.requests
            # a gateway seen for the first time: its counter says nothing about this round
            moved = 0 if previous is None else max(0, b.requests - previous.get(key, 0))
            new[key] = new.get(key, 0) + moved
            if b.circuit_open:
                opened.add(key)
    keys = set(held) | set(flight) | set(new)
    demand = {k: Demand(held.get(k, 0), flight.get(k, 0), new.get(k, 0)) for k in keys}
    return demand, frozenset(opened), counters


class DemandReader:
    """Reads every gateway once per :data:`INTERVAL` while :attr:`wanted` says so."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        kube: KubeClient | None,
        *,
        service: tuple[str, str] | None = None,
        urls: Sequence[str] = (),
        wanted: Callable[[], bool] = lambda: True,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:
        self.session, self.kube = session, kube
        self.service, self.static = service, list(urls)
        self.wanted, self.on_round = wanted, on_round
        self.latest = Round()
        self._urls: list[str] = list(urls)
        self._found_at = -DISCOVERY_INTERVAL
        self._counters: Counters = {}
        self._said = ""

    @property
    def configured(self) -> bool:
        return bool(self.static or self.service)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            if self.wanted():
                try:
                    await self.read_once()
                except Exception:  # one bad round must not stop scaling for everyone
                    logger.exception("reading the gateways' demand failed")
            else:
                self.latest, self._counters = Round(), {}
            await asyncio.sleep(max(0.05, INTERVAL - (time.monotonic() - started)))

    async def read_once(self) -> Round:
        urls = await self._gateways()
        answers = await asyncio.gather(*(self._read(u) for u in urls))
        reports = [a for a in answers if a is not None]
        demand, opened, self._counters = merge(reports, self._counters)
        complete = bool(urls) and len(reports) == len(urls)
        self.latest = Round(demand, opened, complete, len(reports))
        self._say(
            ""
            if complete
            else f"demand: {len(reports)} of {len(urls)} gateway(s) answered; "
            "no backend is scaled to 0 until all do"
        )
        if self.on_round is not None:
            self.on_round(self.latest)
        return self.latest

    async def _gateways(self) -> list[str]:
        if self.service is None or self.kube is None:
            return self._urls
        now = time.monotonic()
        if now - self._found_at < DISCOVERY_INTERVAL:
            return self._urls
        namespace, name = self.service
        try:
            slices = await self.kube.list_matching(
                ENDPOINT_SLICES, namespace, f"{SERVICE_NAME_LABEL}={name}"
            )
        except ApiError as e:
            self._say(f"demand: cannot list the gateway's EndpointSlices ({e}); keeping the last")
            return self._urls
        self._found_at = now
        self._urls = gateway_urls(slices) + self.static
        return self._urls

    async def _read(self, url: str) -> DemandReport | None:
        try:
            timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT)
            async with self.session.get(url, timeout=timeout) as r:
                if r.status != 200:
                    return None
                return DemandReport.model_validate(json.loads(await r.read()))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            logger.debug("demand: %s: %s", url, e)
            return None

    def _say(self, text: str) -> None:
        if text != self._said:
            (logger.warning if text else logger.info)(text or "demand: every gateway answers")
            self._said = text

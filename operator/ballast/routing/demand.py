"""What a gateway tells the operator about demand: the second half of the contract.

Scale from zero needs to know that someone wants a backend, and scale to zero that
nobody has for a while. Only the gateways see requests, and they have no write access
to the API, so each gateway answers ``GET /internal/demand`` on its metrics port with
a :class:`DemandReport`; the operator reads every gateway pod (found through the
gateway Service's EndpointSlices) about once a second and decides.

``requests`` is a counter since the gateway started (``started`` tells a restart
apart): the operator compares it between two reads, so a request that came and went
between reads still counts as activity. Only backends of tables with a ``source``
(an LLMService) are reported, and only those that have held or sent a request, or
whose circuit is open.
"""

from __future__ import annotations

from pydantic import Field

from ballast.routing.table import RouteModel

#: Where a gateway serves its report, on its metrics port.
DEMAND_PATH = "/internal/demand"


class BackendDemand(RouteModel):
    """One backend as one gateway sees it now."""

    namespace: str
    #: The LLMService's name.
    service: str
    backend: str
    #: Requests sent to the backend and not finished yet.
    in_flight: int = 0
    #: Requests waiting for the backend's first ready pod.
    held: int = 0
    #: Requests sent to or held for the backend since the gateway started.
    requests: int = 0
    #: The gateway's circuit breaker for the backend is open.
    circuit_open: bool = False


class DemandReport(RouteModel):
    """A gateway's demand for every backend it has seen."""

    #: The gateway's name (its pod name in a cluster).
    gateway: str
    #: When the gateway started (Unix seconds): a change means the counters restarted.
    started: float
    backends: list[BackendDemand] = Field(default_factory=list)

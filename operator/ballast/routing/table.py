"""The routing table: what a routing ConfigMap holds and the gateway follows.

This is the contract between controller and gateway. The controller writes one
table per LLMService into ``<svc>-routes`` under ``routes.json``; the gateway
reads every such ConfigMap (or a local file) and routes by it. The table carries
references to credentials, never their values, and for a self-hosted backend the
Service whose EndpointSlices list its pods, never pod addresses (the gateway watches
those itself), so a table stays small and changes only when the spec or health does.
Every model ignores fields it does not know: a newer operator's tables still load in an
older gateway.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from ballast.api import (
    DEFAULT_LOAD_FACTOR,
    DEFAULT_PREFIX_CHARS,
    CircuitBreaker,
    Engine,
    Fallback,
    LLMService,
    LoadBalancingStrategy,
    WhenAllUnhealthy,
)
from ballast.engines import info
from ballast.naming import backend_name

#: Bumped on an incompatible change; the gateway refuses tables of a version it does not know.
FORMAT_VERSION = 1
#: The name of the engine port on every backend Service (and its EndpointSlices).
SERVICE_PORT_NAME = "http"


class RouteModel(BaseModel):
    """Base of the routing models: camelCase JSON, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretRef(RouteModel):
    """A key of a Secret, read through the Kubernetes API."""

    namespace: str
    name: str
    key: str


class CredentialRef(RouteModel):
    """Where a backend's API key comes from: exactly one of a Secret, an env var, a file."""

    secret: SecretRef | None = None
    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialRef:
        if sum(x is not None for x in (self.secret, self.env, self.file)) != 1:
            raise ValueError("credentials need exactly one of secret, env or file")
        return self


class ServiceRef(RouteModel):
    """The Kubernetes Service in front of a self-hosted backend's pods.

    The gateway finds the pods in the EndpointSlices labelled
    ``kubernetes.io/service-name: <name>`` in ``namespace``, on the port called ``portName``.
    """

    namespace: str
    name: str
    port_name: str = SERVICE_PORT_NAME


class RouteHold(RouteModel):
    """How requests wait for a backend that is at 0 replicas or warming up.

    The gateway holds a request here only when no other backend of the table can serve
    it, in a FIFO of at most ``max_pending`` per gateway replica, for ``timeout_seconds``
    at most, and sends it the moment a pod of the backend is ready.
    """

    max_pending: int
    timeout_seconds: int


class RouteBackend(RouteModel):
    """One backend as the gateway sees it."""

    name: str
    engine: Engine
    #: OpenAI base URL, e.g. http://chat-primary.ai.svc:8000/v1 or https://api.openai.com/v1.
    url: str
    #: The model name sent upstream in place of the client's.
    upstream_model: str
    priority: int = 0
    weight: int = 100
    #: False when the controller took the backend out of the route (unhealthy).
    in_route: bool = True
    credentials: CredentialRef | None = None
    #: Self-hosted backends: where the pods are listed (absent for external APIs).
    service: ServiceRef | None = None
    #: Present when the backend can be at 0 replicas and come up (scale to zero, a warming
    #: standby): requests nothing else can serve wait for its pods, and count as demand.
    hold: RouteHold | None = None


class Source(RouteModel):
    """The LLMService a table was built from."""

    namespace: str
    name: str
    uid: str | None = None
    generation: int | None = None


class RouteCircuitBreaker(CircuitBreaker):
    """The API's circuit breaker as a table carries it: unknown fields ignored."""

    model_config = ConfigDict(extra="ignore")


class RouteFallback(Fallback):
    """The API's fallback policy as a table carries it.

    Same fields and JSON as :class:`~ballast.api.Fallback`, but fields this version does not
    know are ignored rather than rejected, so a newer operator adding a policy field does not
    make older gateways refuse its tables.
    """

    model_config = ConfigDict(extra="ignore")

    circuit_breaker: RouteCircuitBreaker = Field(
        default_factory=RouteCircuitBreaker, description="Per-backend circuit breaker."
    )

    @classmethod
    def of(cls, fallback: Fallback) -> RouteFallback:
        return cls.model_validate(fallback.model_dump())


class RouteLoadBalancing(RouteModel):
    """``spec.loadBalancing`` as a table carries it; unset fields take the API's defaults.

    ``strategy`` is a plain string so a strategy this gateway does not know (from a newer
    operator) does not make the table unreadable: :attr:`known_strategy` reads it as
    ``leastLoaded``.
    """

    strategy: str = LoadBalancingStrategy.LEAST_LOADED.value
    header: str | None = None
    prefix_chars: int | None = None
    load_factor: float | None = None

    @property
    def known_strategy(self) -> LoadBalancingStrategy:
        try:
            return LoadBalancingStrategy(self.strategy)
        except ValueError:
            return LoadBalancingStrategy.LEAST_LOADED

    @property
    def prefix_length(self) -> int:
        return self.prefix_chars or DEFAULT_PREFIX_CHARS

    @property
    def bound(self) -> float:
        return self.load_factor or DEFAULT_LOAD_FACTOR


class RoutingTable(RouteModel):
    """Routes for one served model."""

    version: Literal[1] = 1
    model: str
    source: Source | None = None
    fallback: RouteFallback = Field(default_factory=RouteFallback)
    #: True when no backend is in the route; the gateway then applies fallback.whenAllUnhealthy.
    all_unhealthy: bool = False
    backends: list[RouteBackend] = Field(min_length=1)
    #: Pod choice inside self-hosted backends; absent means leastLoaded.
    load_balancing: RouteLoadBalancing | None = None

    @property
    def balancing(self) -> RouteLoadBalancing:
        """The table's load balancing with defaults filled in."""
        return self.load_balancing or RouteLoadBalancing()

    def eligible(self) -> list[RouteBackend]:
        """Backends the gateway may send a request to, before circuit breakers are consulted.

        Those in the route; when none is, every backend under ``whenAllUnhealthy: tryAll``
        and none under ``reject``. This is what "in the route" means in status and metrics.
        """
        healthy = [] if self.all_unhealthy else [b for b in self.backends if b.in_route]
        if healthy:
            return healthy
        if self.fallback.when_all_unhealthy is WhenAllUnhealthy.REJECT:
            return []
        return list(self.backends)

    def dumps(self) -> str:
        """Canonical JSON (sorted keys): equal tables give equal bytes."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def _backend_url(svc: LLMService, name: str, engine: Engine) -> str:
    facts = info(engine)
    return (
        f"http://{backend_name(svc.name, name)}.{svc.namespace}.svc:{facts.port}{facts.openai_base}"
    )


def holds(svc: LLMService, standby_up: Collection[str] = ()) -> dict[str, RouteHold]:
    """The hold of every backend requests may wait for: those that scale to zero, and the
    standbys in ``standby_up`` (warming or active; a cold standby is woken by the tiers
    above failing, not by demand)."""
    out = {}
    for b in svc.spec.backends:
        if b.to_zero or (b.standby is not None and b.name in standby_up):
            pending, timeout = b.hold_limits
            out[b.name] = RouteHold(max_pending=pending, timeout_seconds=timeout)
    return out


def table_for(
    svc: LLMService, health: Mapping[str, bool], standby_up: Collection[str] = ()
) -> RoutingTable:
    """The routing table of ``svc`` given each backend's health (missing means unhealthy)
    and which standby backends are up or coming up (see :func:`holds`)."""
    backends = []
    held = holds(svc, standby_up)
    for b in svc.spec.backends:
        creds = None
        if b.api_key_secret_ref is not None:
            ref = b.api_key_secret_ref
            creds = CredentialRef(
                secret=SecretRef(namespace=svc.namespace, name=ref.name, key=ref.key)
            )
        backends.append(
            RouteBackend(
                name=b.name,
                engine=b.engine,
                url=b.url.rstrip("/") if b.url else _backend_url(svc, b.name, b.engine),
                upstream_model=svc.served_model_name
                if info(b.engine).aliasable and not b.external
                else b.model,
                priority=b.priority,
                weight=b.weight,
                in_route=bool(health.get(b.name, False)),
                credentials=creds,
                service=None
                if b.external
                else ServiceRef(namespace=svc.namespace, name=backend_name(svc.name, b.name)),
                hold=held.get(b.name),
            )
        )
    lb = svc.spec.load_balancing
    return RoutingTable(
        model=svc.served_model_name,
        source=Source(
            namespace=svc.namespace,
            name=svc.name,
            uid=svc.metadata.uid,
            generation=svc.metadata.generation,
        ),
        fallback=RouteFallback.of(svc.spec.fallback),
        all_unhealthy=not any(b.in_route for b in backends),
        backends=backends,
        load_balancing=None if lb is None else RouteLoadBalancing.model_validate(lb.to_json()),
    )

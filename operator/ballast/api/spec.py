"""The LLMService spec (ballast.dev/v1alpha1): backends, scaling, health and fallback.

These models are the single source of truth for the API. The CRD in ``crds/``
is generated from them (``ballast crd``); the descriptions here are what
``kubectl explain llmservice.spec`` prints. Cross-field rules live in
:mod:`ballast.api.rules` and run here as well as in the API server.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

from ballast.api.balancing import LoadBalancing
from ballast.api.cache import Cache, Volume, VolumeMount
from ballast.api.ruled import RuledModel
from ballast.api.rules import Scope
from ballast.api.types import (
    ApiModel,
    EnvVar,
    Label,
    PassThrough,
    Quantity,
    Resources,
    SecretKeyRef,
    ShortString,
)


class Engine(StrEnum):
    """The software that serves a backend."""

    VLLM = "vllm"
    TGI = "tgi"
    OLLAMA = "ollama"
    LLAMACPP = "llamacpp"
    OPENAI = "openai"

    @property
    def self_hosted(self) -> bool:
        """True when Ballast runs pods for this engine (everything but external APIs)."""
        return self is not Engine.OPENAI


class RetryOn(StrEnum):
    """A failure on which the gateway tries the next backend."""

    CONNECT_FAILURE = "connect-failure"
    SERVER_ERROR = "5xx"
    TOO_MANY_REQUESTS = "429"
    TIMEOUT = "timeout"


class WhenAllUnhealthy(StrEnum):
    """What the gateway does when no backend of a service is healthy."""

    TRY_ALL = "tryAll"
    REJECT = "reject"


QuantityString = Annotated[str, StringConstraints(min_length=1, max_length=64)]


#: ``scaling.idleAfterSeconds`` when unset.
DEFAULT_IDLE_AFTER_SECONDS = 900
#: ``hold.maxPending`` when unset, per gateway replica.
DEFAULT_HOLD_MAX_PENDING = 100
#: The longest a request may be held (and ``hold.timeoutSeconds``' bound).
MAX_HOLD_SECONDS = 600


class Metric(RuledModel):
    """One autoscaling signal: a shorthand (cpu, memory, pods) or a raw autoscaling/v2 MetricSpec."""

    rule_scope: ClassVar[Scope] = "metric"

    type: Literal["cpu", "memory", "pods"] | None = Field(
        default=None,
        description=(
            "Shorthand kind: cpu or memory (resource utilization of the engine container, "
            "needs targetAverageUtilization), or pods (a per-pod custom metric such as "
            "vllm:num_requests_waiting served by a metrics adapter, needs name and "
            "targetAverageValue)."
        ),
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = Field(
        default=None, description="Metric name, for type pods."
    )
    target_average_utilization: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None,
        description="Target average utilization in percent of the request, for cpu and memory.",
    )
    target_average_value: Quantity | None = Field(
        default=None, description='Target average value per pod, for type pods, e.g. "5".'
    )
    raw: PassThrough | None = Field(
        default=None,
        description="A full autoscaling/v2 MetricSpec, copied into the HPA as is. Excludes type.",
    )


class Scaling(RuledModel):
    """Autoscaling of a self-hosted backend; becomes an autoscaling/v2 HorizontalPodAutoscaler."""

    rule_scope: ClassVar[Scope] = "scaling"

    min_replicas: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=1,
        description=(
            "Lowest replica count the autoscaler may choose. 0 scales the backend to zero "
            "after idleAfterSeconds without requests; the next request is held (see hold) "
            "while the controller brings one pod up."
        ),
    )
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="Highest replica count the autoscaler may choose."
    )
    metrics: Annotated[list[Metric], Field(min_length=1, max_length=8)] | None = Field(
        default=None,
        description=(
            "Signals to scale on. Unset means the HPA default: 80% average CPU utilization."
        ),
    )
    behavior: PassThrough | None = Field(
        default=None,
        description="autoscaling/v2 HorizontalPodAutoscalerBehavior, passed through to the HPA.",
    )
    idle_after_seconds: Annotated[int, Field(ge=10, le=604800)] = Field(
        default=DEFAULT_IDLE_AFTER_SECONDS,
        description=(
            "With minReplicas 0: seconds with no request in flight or held in any gateway "
            "before the backend goes back to 0 replicas."
        ),
    )

    @property
    def to_zero(self) -> bool:
        """The backend goes to 0 replicas when idle and comes back on demand."""
        return self.min_replicas == 0

    @property
    def floor(self) -> int:
        """The HPA's minReplicas: at least 1 (an HPA cannot scale a target from 0)."""
        return max(1, self.min_replicas)


class Hold(ApiModel):
    """Requests that wait in each gateway while a backend at 0 (or a warming standby) starts."""

    max_pending: Annotated[int, Field(ge=1, le=100000)] = Field(
        default=DEFAULT_HOLD_MAX_PENDING,
        description=(
            "Requests each gateway replica holds for this backend at once; more get 503 with "
            "Retry-After at once."
        ),
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=MAX_HOLD_SECONDS)] | None = Field(
        default=None,
        description=(
            "Seconds a held request waits for a ready pod before it gets 504. Defaults to "
            "health.startupTimeoutSeconds, at most 600."
        ),
    )


class StandbyMode(StrEnum):
    """How a standby backend waits."""

    COLD = "cold"  #: at 0 replicas, out of the route


class Standby(ApiModel):
    """A fallback tier that costs nothing until the tiers above it fail."""

    mode: StandbyMode = Field(
        default=StandbyMode.COLD,
        description="cold: 0 replicas and out of the route until the tiers above fail.",
    )
    activate_after_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        default=30,
        description=(
            "Seconds every backend of the tiers above must be out of the route or have its "
            "circuit open before this backend is scaled up."
        ),
    )
    cooldown_seconds: Annotated[int, Field(ge=0, le=604800)] = Field(
        default=600,
        description=(
            "Seconds the tiers above must be healthy again before this backend goes back to 0."
        ),
    )


class Health(ApiModel):
    """How a backend's health is checked. Unset fields come from the engine's defaults."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^/")] | None = (
        Field(
            default=None,
            description=(
                "HTTP path that answers 2xx when the backend can serve. Defaults to the engine's "
                "(vLLM /health, TGI /health, Ollama /api/version, llama.cpp /health, external /models)."
            ),
        )
    )
    period_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=5, description="Seconds between probes, for Kubernetes and the controller alike."
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=120)] = Field(
        default=5, description="Seconds a probe may take before it counts as failed."
    )
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3,
        description="Consecutive failed liveness/readiness probes before Kubernetes acts.",
    )
    startup_timeout_seconds: Annotated[int, Field(ge=10, le=86400)] = Field(
        default=1800,
        description=(
            "Budget for loading the model: a startupProbe allows this long before the liveness "
            "probe starts, so a slow model load is never a kill loop."
        ),
    )


class Backend(RuledModel):
    """One way to serve the model: a self-hosted engine or an external OpenAI-compatible API."""

    rule_scope: ClassVar[Scope] = "backend"

    name: Label = Field(
        description="Unique name inside the service (DNS-1123 label); names the child objects."
    )
    engine: Engine = Field(
        description=(
            "vllm, tgi, ollama or llamacpp run pods; openai is an external "
            "OpenAI-compatible API reached at url."
        )
    )
    model: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description=(
            "What the engine loads (a Hugging Face id, an Ollama tag, a GGUF path or URL) "
            "or, for openai, the upstream model name."
        )
    )
    url: (
        Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/]+(/\S*)?$")]
        | None
    ) = Field(
        default=None,
        description="Base URL of the external API including its version path, e.g. https://api.openai.com/v1. Only for openai.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the external API's key, sent as a Bearer token. Only for openai.",
    )
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None, description="Container image; each engine has a pinned default."
    )
    args: (
        Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=64)]
        | None
    ) = Field(
        default=None, description="Extra arguments appended to the engine's own command line."
    )
    env: Annotated[list[EnvVar], Field(max_length=64)] | None = Field(
        default=None, description="Environment variables for the engine container."
    )
    resources: Resources | None = Field(
        default=None, description="CPU, memory and accelerator requests and limits."
    )
    node_selector: Annotated[dict[str, ShortString], Field(max_length=32)] | None = Field(
        default=None, description="Node labels the pods must match."
    )
    tolerations: Annotated[list[PassThrough], Field(max_length=32)] | None = Field(
        default=None, description="core/v1 Tolerations, e.g. for GPU node taints."
    )
    affinity: PassThrough | None = Field(default=None, description="core/v1 Affinity.")
    runtime_class_name: Label | None = Field(
        default=None, description="RuntimeClass for the pods, e.g. nvidia."
    )
    priority: Annotated[int, Field(ge=0, le=100)] = Field(
        default=0,
        description="Fallback tier: traffic goes to the lowest tier that has a healthy backend.",
    )
    weight: Annotated[int, Field(ge=0, le=10000)] = Field(
        default=100, description="Share of traffic inside its tier, relative to the others."
    )
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = Field(
        default=None, description="Fixed replica count when scaling is unset. Defaults to 1."
    )
    scaling: Scaling | None = Field(
        default=None,
        description="Autoscaling; the HPA then owns the replica count. Excludes replicas.",
    )
    health: Health | None = Field(
        default=None, description="Health checking; unset fields come from the engine."
    )
    hold: Hold | None = Field(
        default=None,
        description=(
            "Bounds on requests held while the backend is at 0 (scaling.minReplicas 0) or a "
            "standby warms up. Unset: the defaults."
        ),
    )
    standby: Standby | None = Field(
        default=None,
        description=(
            "Keep this backend at 0 replicas and out of the route until every backend of the "
            "tiers above fails (cold standby)."
        ),
    )
    cache: Cache | None = Field(
        default=None,
        description=(
            "Download the model once per revision into a volume and serve every replica from "
            "it, read-only and offline. No serving pod starts until the cache is filled."
        ),
    )
    volumes: Annotated[list[Volume], Field(max_length=16)] | None = Field(
        default=None,
        description="core/v1 Volumes of your own for the engine pods (names must not be Ballast's own).",
    )
    volume_mounts: Annotated[list[VolumeMount], Field(max_length=16)] | None = Field(
        default=None,
        description="core/v1 VolumeMounts of those volumes into the engine container.",
    )

    @property
    def external(self) -> bool:
        """True for an external API (no pods, only a route)."""
        return not self.engine.self_hosted

    @property
    def to_zero(self) -> bool:
        """Scales to zero when idle and back up on demand (``scaling.minReplicas: 0``)."""
        return self.scaling is not None and self.scaling.to_zero

    @property
    def holds(self) -> bool:
        """Requests may be held for it: it can be at 0 and come up (to zero, or standby)."""
        return not self.external and (self.to_zero or self.standby is not None)

    @property
    def hold_limits(self) -> tuple[int, int]:
        """(maxPending, timeoutSeconds) with the defaults filled in."""
        hold = self.hold if self.hold is not None else Hold()
        if hold.timeout_seconds is not None:
            return hold.max_pending, hold.timeout_seconds
        startup = (self.health or Health()).startup_timeout_seconds
        return hold.max_pending, min(startup, MAX_HOLD_SECONDS)

    @property
    def up_replicas(self) -> int:
        """Replicas the controller sets when it brings the backend up from 0."""
        if self.scaling is not None:
            return self.scaling.floor
        return 1 if not self.replicas else self.replicas

    @property
    def max_replicas(self) -> int:
        """The most pods this backend can have at once."""
        if self.scaling is not None:
            return self.scaling.max_replicas
        return 1 if self.replicas is None else self.replicas


class CircuitBreaker(ApiModel):
    """Per-backend circuit breaker in the gateway."""

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5, description="Consecutive failed requests that open the circuit."
    )
    open_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=30, description="Seconds the circuit stays open before one trial request."
    )


def _int_429_to_string(value: Any) -> Any:
    """YAML reads an unquoted 429 as a number; accept it as the string "429"."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A retryOn entry; the integer 429 (unquoted in YAML) is accepted too.
RetryOnItem = Annotated[
    RetryOn,
    BeforeValidator(_int_429_to_string),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "enum": [*(r.value for r in RetryOn), 429],
        }
    ),
]


def _default_retry_on() -> list[RetryOn]:
    return list(RetryOn)


class Fallback(ApiModel):
    """Retry and failover policy, applied per request by the gateway and per probe by the controller."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3, description="Attempts per request, across backends, including the first."
    )
    per_try_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=60,
        description=(
            "Time a backend may take to accept one attempt: to connect and, for a streamed "
            "request, to send its first byte. Exceeding it is a failure of the backend "
            "(retried on timeout, counted by the circuit breaker)."
        ),
    )
    generation_timeout_seconds: Annotated[int, Field(ge=1, le=86400)] = Field(
        default=900,
        description=(
            "Time a whole non-streamed answer may take once the backend accepted the request "
            "(engines send its headers only when the generation is done). A generation that "
            "runs longer is answered 504 and is neither re-sent to another backend nor counted "
            "against the backend's circuit breaker."
        ),
    )
    retry_on: Annotated[list[RetryOnItem], Field(max_length=5)] = Field(
        default_factory=_default_retry_on,
        description="Failures that move a request to the next backend. Other 4xx never do.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    circuit_breaker: CircuitBreaker = Field(
        default_factory=CircuitBreaker, description="Per-backend circuit breaker."
    )
    healthy_after: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description="Consecutive successful probes before a backend re-enters the route."
    )
    unhealthy_after: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="Consecutive failed probes before a backend leaves the route."
    )
    when_all_unhealthy: WhenAllUnhealthy = Field(
        default=WhenAllUnhealthy.TRY_ALL,
        description=(
            "tryAll: with no healthy backend, try every backend in tier order anyway; "
            "reject: answer 503 at once."
        ),
    )


class LLMServiceSpec(RuledModel):
    """Desired state of an LLM service: its backends and fallback policy."""

    rule_scope: ClassVar[Scope] = "spec"

    served_model_name: (
        Annotated[
            str,
            StringConstraints(
                min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
            ),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            'What clients send as "model" to the gateway. Defaults to the LLMService name.'
        ),
    )
    backends: Annotated[list[Backend], Field(min_length=1, max_length=16)] = Field(
        description="1 to 16 backends; traffic goes by priority tier, then weight.",
    )
    fallback: Fallback = Field(
        default_factory=Fallback, description="Retry, failover and health hysteresis policy."
    )
    load_balancing: LoadBalancing | None = Field(
        default=None,
        description=(
            "How the gateway picks a pod of a self-hosted backend per request, from the "
            "backend Service's EndpointSlices. Unset means strategy leastLoaded."
        ),
    )

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; KeyError when there is none."""
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(name)


def spec_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The spec as the API server stores it after defaulting: parse, then dump."""
    return LLMServiceSpec.model_validate(data).to_json()

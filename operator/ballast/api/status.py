"""The LLMService status: phase, conditions and per-backend observations.

The controller builds a :class:`LLMServiceStatus` and writes it only when its
JSON differs from what is stored. Unknown fields are ignored on read so an older
controller can read a newer status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ballast.api.types import ApiModel


class Phase(StrEnum):
    """Summary of the service's state, for humans and printer columns."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


ConditionType = Literal["Ready", "Available", "Progressing", "Degraded", "CacheReady"]


class StatusModel(ApiModel):
    """Status models ignore unknown fields so older controllers read newer status."""

    model_config = ConfigDict(extra="ignore")


class Condition(StatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: Annotated[str, Field(max_length=316)] = Field(
        description="Ready, Available, Progressing or Degraded."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: Annotated[str, Field(max_length=1024)] = Field(
        default="", description="CamelCase machine-readable reason for the last transition."
    )
    message: Annotated[str, Field(max_length=32768)] = Field(
        default="", description="Human-readable details."
    )
    last_transition_time: str | None = Field(
        default=None,
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition was computed from."
    )


class CacheState(StrEnum):
    """Where a backend's model cache stands (also the CacheReady condition's reasons)."""

    CLAIM_PENDING = "ClaimPending"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    DOWNLOAD_FAILED = "DownloadFailed"


class CacheStatus(StatusModel):
    """The model cache of one backend: what its pods serve, or what is being filled."""

    key: str = Field(description="Cache key: a digest of engine, model and requested revision.")
    claim: str = Field(description="The PersistentVolumeClaim holding the cache directory.")
    state: CacheState = Field(description="ClaimPending, Downloading, Ready or DownloadFailed.")
    revision: str | None = Field(
        default=None, description="The commit the directory holds (resolved once by the loader)."
    )
    bytes: int | None = Field(default=None, description="Bytes in the cache directory.")
    ready_since: str | None = Field(
        default=None,
        description="When the loader finished (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    message: str = Field(default="", description="The loader's message when it failed.")


class StandbyState(StrEnum):
    """Where a cold-standby backend is in its cycle."""

    COLD = "Cold"  #: at 0 replicas, out of the route
    WARMING = "Warming"  #: the tiers above failed: scaled up, pods starting
    ACTIVE = "Active"  #: up and in the route
    COOLING = "Cooling"  #: the tiers above are healthy again: back to 0 after cooldownSeconds


class StandbyStatus(StatusModel):
    """A cold standby's state, since when and why."""

    state: StandbyState = Field(description="Cold, Warming, Active or Cooling.")
    since: str | None = Field(default=None, description="When it entered this state (RFC 3339).")
    reason: str = Field(default="", description="Why it is in this state.")


class BackendStatus(StatusModel):
    """What the controller observes of one backend."""

    name: str = Field(description="Backend name.")
    engine: str = Field(description="Backend engine.")
    replicas: int = Field(default=0, description="Pods that exist (0 for external backends).")
    ready_replicas: int = Field(default=0, description="Pods that are Ready.")
    healthy: bool = Field(default=False, description="Probes say it can serve (with hysteresis).")
    in_route: bool = Field(
        default=False,
        description="The gateway sends it requests: it is healthy, or no backend is and "
        "fallback.whenAllUnhealthy is tryAll.",
    )
    message: str = Field(default="", description="Why it is unhealthy or out of the route.")
    cache: CacheStatus | None = Field(
        default=None, description="The model cache, for a backend with spec cache."
    )
    scaled_to_zero: bool | None = Field(
        default=None,
        description=(
            "For a backend with scaling.minReplicas 0: true while it is at 0 replicas "
            "(the next request brings it up)."
        ),
    )
    scaled_to_zero_since: str | None = Field(
        default=None, description="When it last went to 0 replicas (RFC 3339)."
    )
    standby: StandbyStatus | None = Field(
        default=None, description="For a backend with spec standby: its state."
    )


class LLMServiceStatus(StatusModel):
    """Observed state of an LLM service. Written by the controller only."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation the controller last acted on."
    )
    phase: Phase | None = Field(
        default=None, description="Pending, Progressing, Ready, Degraded or Failed."
    )
    served_model_name: str | None = Field(
        default=None, description='The model name clients send to the gateway ("model").'
    )
    endpoint: str | None = Field(
        default=None, description="OpenAI-compatible base URL of the gateway serving this model."
    )
    backends_in_route: str | None = Field(
        default=None, description='Backends the gateway sends requests to, out of all, e.g. "2/3".'
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Available, Progressing and Degraded, and CacheReady when a backend has a cache.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    backends: list[BackendStatus] = Field(
        default_factory=list, description="Per-backend observations, in spec order."
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)

"""``spec.loadBalancing``: how the gateway picks a pod of a self-hosted backend per request.

The routing strategy (tiers, weights, breakers) picks the backend; this picks the pod inside
it from the backend Service's EndpointSlices. ``leastLoaded`` (the default) compares the
in-flight requests of two random ready pods; ``prefixHash`` and ``sessionHeader`` send
requests that share a prompt prefix or a session header to the same pod (its KV cache),
through consistent hashing with bounded loads. Cross-field rules are in :mod:`rules`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from ballast.api.ruled import RuledModel
from ballast.api.rules import Scope

#: The defaults the gateway applies to unset fields (not CRD defaults: they are strategy-specific).
DEFAULT_PREFIX_CHARS = 2048
DEFAULT_LOAD_FACTOR = 1.25

#: An HTTP header name (RFC 9110 token).
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
]


class LoadBalancingStrategy(StrEnum):
    """How the gateway picks a pod inside the backend the routing strategy chose."""

    LEAST_LOADED = "leastLoaded"
    PREFIX_HASH = "prefixHash"
    SESSION_HEADER = "sessionHeader"


class LoadBalancing(RuledModel):
    """Pod choice per request, for self-hosted backends (external APIs have no pods)."""

    rule_scope: ClassVar[Scope] = "loadBalancing"

    strategy: LoadBalancingStrategy = Field(
        default=LoadBalancingStrategy.LEAST_LOADED,
        description=(
            "leastLoaded: the less busy of two random ready pods (in-flight requests); "
            "prefixHash: requests whose prompts share the first prefixChars characters go to "
            "the same pod (reuses its KV cache); sessionHeader: requests with the same value "
            "of header go to the same pod. The two hashing strategies use consistent hashing "
            "with bounded loads, built from the set of ready pods only, so every gateway "
            "replica picks the same pod."
        ),
    )
    header: HeaderName | None = Field(
        default=None,
        description=(
            "Request header whose value keys the pod, for strategy sessionHeader (required "
            "there, e.g. X-Session-Id). Requests without it are balanced as leastLoaded."
        ),
    )
    prefix_chars: Annotated[int, Field(ge=1, le=1_048_576)] | None = Field(
        default=None,
        description=(
            "Characters of the prompt (chat messages, completion prompt or embedding input) "
            f"that key the pod, for strategy prefixHash. Default {DEFAULT_PREFIX_CHARS}."
        ),
    )
    load_factor: Annotated[float, Field(ge=1.0, le=10.0)] | None = Field(
        default=None,
        description=(
            "Bound on a pod's share for the hashing strategies: a pod takes a keyed request "
            "only while its in-flight requests stay within loadFactor times the mean; "
            f"otherwise the request spills to the next pod on the ring. Default {DEFAULT_LOAD_FACTOR}."
        ),
    )

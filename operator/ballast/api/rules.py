"""Cross-field rules of the LLMService API, written once and enforced twice.

Each rule carries a CEL expression that goes into the CRD as an
``x-kubernetes-validations`` entry (so the API server rejects bad objects) and a
Python predicate over the same plain-JSON shape that the pydantic models run (so
``ballast validate`` and the controller reject them too). Tests execute the CEL
with a real CEL implementation on a table of cases and check both agree, case by
case. The predicates take the camelCase JSON the API server sees, never models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["spec", "backend", "scaling", "metric", "loadBalancing", "cache"]

#: Fields that only make sense for a backend that runs pods.
POD_FIELDS: tuple[str, ...] = (
    "image",
    "args",
    "env",
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
    "runtimeClassName",
    "replicas",
    "scaling",
    "hold",
    "standby",
    "cache",
    "volumes",
    "volumeMounts",
)

#: Volume names Ballast's own pods use (engine scratch space, the model cache).
RESERVED_VOLUME_NAMES: tuple[str, ...] = ("home", "tmp", "shm", "data", "model-cache")
#: Mount paths Ballast's own pods use; nothing may be mounted at or under them.
RESERVED_MOUNT_PATHS: tuple[str, ...] = ("/home/ballast", "/tmp", "/dev/shm", "/data", "/ballast")


@dataclass(frozen=True)
class Rule:
    """One cross-field rule: where it lives in the schema, its CEL, its Python twin."""

    scope: Scope
    cel: str
    message: str
    check: Callable[[Mapping[str, Any]], bool]
    #: JSON path relative to the scope's object, reported with the error (``fieldPath`` in CEL).
    field: str = ""
    #: Short machine-readable reason used in conditions and events.
    reason: str = "Invalid"

    def as_validation(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry for this rule."""
        out = {"rule": self.cel, "message": self.message, "reason": "FieldValueInvalid"}
        if self.field:
            out["fieldPath"] = self.field
        return out


def _external(b: Mapping[str, Any]) -> bool:
    return b.get("engine") == "openai"


def _unique_names(spec: Mapping[str, Any]) -> bool:
    names = [b.get("name") for b in spec.get("backends", [])]
    return len(names) == len(set(names))


def _to_zero(b: Mapping[str, Any]) -> bool:
    scaling = b.get("scaling")
    return isinstance(scaling, Mapping) and int(scaling.get("minReplicas", 1)) == 0


def _standby_below(spec: Mapping[str, Any]) -> bool:
    backends: Sequence[Mapping[str, Any]] = spec.get("backends", [])
    prios = [int(b.get("priority", 0)) for b in backends]
    return all(
        "standby" not in b or any(p < int(b.get("priority", 0)) for p in prios) for b in backends
    )


def _every_tier_weighted(spec: Mapping[str, Any]) -> bool:
    backends: Sequence[Mapping[str, Any]] = spec.get("backends", [])
    tiers: dict[int, int] = {}
    for b in backends:
        prio = int(b.get("priority", 0))
        tiers[prio] = tiers.get(prio, 0) + int(b.get("weight", 100))
    return all(total > 0 for total in tiers.values())


RULES: tuple[Rule, ...] = (
    Rule(
        scope="spec",
        cel="self.backends.all(b, self.backends.exists_one(c, c.name == b.name))",
        message="backend names must be unique",
        field=".backends",
        check=_unique_names,
        reason="DuplicateBackendName",
    ),
    Rule(
        scope="spec",
        cel=(
            "self.backends.all(b, self.backends.exists(c, "
            "c.priority == b.priority && c.weight > 0))"
        ),
        message=(
            "every priority tier needs at least one backend with a weight above 0, "
            "or the tier could never receive traffic"
        ),
        field=".backends",
        check=_every_tier_weighted,
        reason="ZeroWeightTier",
    ),
    Rule(
        scope="backend",
        cel="self.engine != 'openai' || has(self.url)",
        message="engine openai (an external API) needs url",
        field=".url",
        check=lambda b: not _external(b) or "url" in b,
        reason="MissingURL",
    ),
    Rule(
        scope="backend",
        cel="self.engine == 'openai' || !has(self.url)",
        message="url is only for engine openai; self-hosted backends are reached through their Service",
        field=".url",
        check=lambda b: _external(b) or "url" not in b,
        reason="UnexpectedURL",
    ),
    *(
        Rule(
            scope="backend",
            cel=f"self.engine != 'openai' || !has(self.{f})",
            message=f"engine openai (an external API) runs no pods: remove {f}",
            field=f".{f}",
            check=lambda b, f=f: not _external(b) or f not in b,  # type: ignore[misc]
            reason="PodFieldsOnExternalBackend",
        )
        for f in POD_FIELDS
    ),
    Rule(
        scope="backend",
        cel="self.engine == 'openai' || !has(self.apiKeySecretRef)",
        message="apiKeySecretRef is only for engine openai",
        field=".apiKeySecretRef",
        check=lambda b: _external(b) or "apiKeySecretRef" not in b,
        reason="UnexpectedSecretRef",
    ),
    Rule(
        scope="backend",
        cel="!has(self.scaling) || !has(self.replicas)",
        message="set replicas or scaling, not both: with scaling the HPA owns the replica count",
        field=".replicas",
        check=lambda b: not ("scaling" in b and "replicas" in b),
        reason="ReplicasWithScaling",
    ),
    Rule(
        scope="backend",
        cel=(
            "!has(self.hold) || has(self.standby) || (has(self.scaling) && "
            "has(self.scaling.minReplicas) && self.scaling.minReplicas == 0)"
        ),
        message=(
            "hold applies to a backend that can be at 0 replicas: set scaling.minReplicas: 0 "
            "or standby"
        ),
        field=".hold",
        check=lambda b: "hold" not in b or "standby" in b or _to_zero(b),
        reason="HoldWithoutZero",
    ),
    Rule(
        scope="backend",
        cel=(
            "!has(self.standby) || !has(self.scaling) || !has(self.scaling.minReplicas) || "
            "self.scaling.minReplicas > 0"
        ),
        message=(
            "a standby comes up when the tiers above fail, not on demand: use standby or "
            "scaling.minReplicas: 0, not both"
        ),
        field=".standby",
        check=lambda b: "standby" not in b or not _to_zero(b),
        reason="StandbyScalesToZero",
    ),
    Rule(
        scope="backend",
        cel="!has(self.standby) || !has(self.replicas) || self.replicas > 0",
        message="a standby needs replicas above 0 to come up to",
        field=".replicas",
        check=lambda b: "standby" not in b or int(b.get("replicas", 1)) > 0,
        reason="StandbyWithoutReplicas",
    ),
    Rule(
        scope="spec",
        cel=(
            "self.backends.all(b, !has(b.standby) || self.backends.exists(c, "
            "c.priority < b.priority))"
        ),
        message=(
            "a standby backend needs a tier above it (a backend with a lower priority) to "
            "stand by for"
        ),
        field=".backends",
        check=_standby_below,
        reason="StandbyWithoutTierAbove",
    ),
    Rule(
        scope="scaling",
        cel="self.minReplicas <= self.maxReplicas",
        message="minReplicas must not exceed maxReplicas",
        field=".minReplicas",
        check=lambda s: int(s.get("minReplicas", 1)) <= int(s.get("maxReplicas", 0)),
        reason="MinAboveMax",
    ),
    Rule(
        scope="metric",
        cel="has(self.raw) != has(self.type)",
        message="a metric is either a shorthand (type: cpu|memory|pods) or raw, exactly one",
        check=lambda m: ("raw" in m) != ("type" in m),
        reason="MetricShape",
    ),
    Rule(
        scope="metric",
        cel=(
            "!has(self.type) || self.type == 'pods' || "
            "(has(self.targetAverageUtilization) && !has(self.name) && !has(self.targetAverageValue))"
        ),
        message="cpu and memory metrics take targetAverageUtilization only",
        field=".targetAverageUtilization",
        check=lambda m: (
            "type" not in m
            or m["type"] == "pods"
            or (
                "targetAverageUtilization" in m
                and "name" not in m
                and "targetAverageValue" not in m
            )
        ),
        reason="MetricShape",
    ),
    Rule(
        scope="metric",
        cel=(
            "!has(self.type) || self.type != 'pods' || "
            "(has(self.name) && has(self.targetAverageValue) && !has(self.targetAverageUtilization))"
        ),
        message="pods metrics need name and targetAverageValue",
        field=".name",
        check=lambda m: (
            m.get("type") != "pods"
            or ("name" in m and "targetAverageValue" in m and "targetAverageUtilization" not in m)
        ),
        reason="MetricShape",
    ),
)


def _path_model(model: str) -> bool:
    """A model that names a file already in the container (nothing to download)."""
    return not _URL.match(model) and (
        model.startswith(("/", "./", "../")) or model.endswith(".gguf")
    )


_URL = re.compile(r"^https?://")


def _mounts_declared(b: Mapping[str, Any]) -> bool:
    names = {v.get("name") for v in b.get("volumes") or ()}
    return all(m.get("name") in names for m in b.get("volumeMounts") or ())


def _reserved_path(path: str) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in RESERVED_MOUNT_PATHS)


def _cel_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


_RESERVED_PATH_CEL = " || ".join(
    f"m.mountPath == '{p}' || m.mountPath.startsWith('{p}/')" for p in RESERVED_MOUNT_PATHS
)

#: ``backends[].cache`` and the backend's own volumes.
CACHE_RULES: tuple[Rule, ...] = (
    Rule(
        scope="cache",
        cel="has(self.size) != has(self.existingClaim)",
        message=(
            "cache needs size (for the claim Ballast creates) or existingClaim (your own claim, "
            "whose size applies), exactly one"
        ),
        field=".size",
        check=lambda c: ("size" in c) != ("existingClaim" in c),
        reason="CacheClaim",
    ),
    Rule(
        scope="cache",
        cel="!has(self.existingClaim) || (!has(self.storageClassName) && !has(self.accessMode))",
        message=(
            "storageClassName and accessMode are for the claim Ballast creates; with "
            "existingClaim your claim's own apply: remove them"
        ),
        field=".existingClaim",
        check=lambda c: (
            "existingClaim" not in c or ("storageClassName" not in c and "accessMode" not in c)
        ),
        reason="CacheClaim",
    ),
    Rule(
        scope="backend",
        cel=(
            "!has(self.cache) || self.model.matches('^https?://') || !(self.model.startsWith('/') "
            "|| self.model.startsWith('./') || self.model.startsWith('../') "
            "|| self.model.endsWith('.gguf'))"
        ),
        message=(
            "cache downloads the model: model must be a Hugging Face id, an Ollama tag or an "
            "http(s) URL, not a file already in the container"
        ),
        field=".cache",
        check=lambda b: "cache" not in b or not _path_model(str(b.get("model", ""))),
        reason="CacheNeedsDownload",
    ),
    Rule(
        scope="backend",
        cel="!has(self.cache) || !self.model.matches('^https?://') || self.engine == 'llamacpp'",
        message="a cached model URL (a GGUF file) is only for engine llamacpp",
        field=".cache",
        check=lambda b: (
            "cache" not in b
            or not _URL.match(str(b.get("model", "")))
            or b.get("engine") == "llamacpp"
        ),
        reason="CacheNeedsDownload",
    ),
    Rule(
        scope="backend",
        cel=(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))"
        ),
        message="every volumeMounts[].name must name one of the backend's volumes",
        field=".volumeMounts",
        check=_mounts_declared,
        reason="UnknownVolume",
    ),
    Rule(
        scope="backend",
        cel="!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))",
        message="volume names must be unique",
        field=".volumes",
        check=lambda b: (
            len({v.get("name") for v in b.get("volumes") or ()}) == len(b.get("volumes") or ())
        ),
        reason="DuplicateVolume",
    ),
    Rule(
        scope="backend",
        cel=f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_cel_list(RESERVED_VOLUME_NAMES)}))",
        message=(
            "volume names "
            + ", ".join(RESERVED_VOLUME_NAMES)
            + " are Ballast's own (engine scratch space and the model cache): rename yours"
        ),
        field=".volumes",
        check=lambda b: all(
            v.get("name") not in RESERVED_VOLUME_NAMES for v in b.get("volumes") or ()
        ),
        reason="ReservedVolume",
    ),
    Rule(
        scope="backend",
        cel=f"!has(self.volumeMounts) || self.volumeMounts.all(m, !({_RESERVED_PATH_CEL}))",
        message=(
            "mount paths "
            + ", ".join(RESERVED_MOUNT_PATHS)
            + " (and below them) are Ballast's own (HOME, scratch space, the model cache): "
            "mount yours elsewhere"
        ),
        field=".volumeMounts",
        check=lambda b: (
            not any(
                _reserved_path(str(m.get("mountPath", ""))) for m in b.get("volumeMounts") or ()
            )
        ),
        reason="ReservedMountPath",
    ),
)


def _strategy(lb: Mapping[str, Any]) -> str:
    return str(lb.get("strategy", "leastLoaded"))


#: ``spec.loadBalancing``: each tuning field belongs to the strategy that reads it.
LOAD_BALANCING_RULES: tuple[Rule, ...] = (
    Rule(
        scope="loadBalancing",
        cel="self.strategy != 'sessionHeader' || has(self.header)",
        message="strategy sessionHeader needs header (the request header that keys the pod)",
        field=".header",
        check=lambda lb: _strategy(lb) != "sessionHeader" or "header" in lb,
        reason="MissingHeader",
    ),
    Rule(
        scope="loadBalancing",
        cel="self.strategy == 'sessionHeader' || !has(self.header)",
        message="header is only for strategy sessionHeader",
        field=".header",
        check=lambda lb: _strategy(lb) == "sessionHeader" or "header" not in lb,
        reason="UnusedLoadBalancingField",
    ),
    Rule(
        scope="loadBalancing",
        cel="self.strategy == 'prefixHash' || !has(self.prefixChars)",
        message="prefixChars is only for strategy prefixHash",
        field=".prefixChars",
        check=lambda lb: _strategy(lb) == "prefixHash" or "prefixChars" not in lb,
        reason="UnusedLoadBalancingField",
    ),
    Rule(
        scope="loadBalancing",
        cel="self.strategy != 'leastLoaded' || !has(self.loadFactor)",
        message="loadFactor is only for the hashing strategies (prefixHash, sessionHeader)",
        field=".loadFactor",
        check=lambda lb: _strategy(lb) != "leastLoaded" or "loadFactor" not in lb,
        reason="UnusedLoadBalancingField",
    ),
)

RULES = RULES + LOAD_BALANCING_RULES + CACHE_RULES


def rules_for(scope: Scope) -> tuple[Rule, ...]:
    """The rules attached to one level of the schema."""
    return tuple(r for r in RULES if r.scope == scope)

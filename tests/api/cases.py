"""A table of LLMService specs, valid and invalid, shared by the API tests.

Every invalid case names the field path its problem must be reported at, both
by the pydantic models and by the CRD (JSON schema + CEL) re-enacted offline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.factories import backend, external, llmservice_obj, vllm

Obj = dict[str, Any]


def without(obj: Obj, key: str) -> Obj:
    out = copy.deepcopy(obj)
    del out[key]
    return out


@dataclass(frozen=True)
class Case:
    id: str
    obj: Obj
    #: Field path the problem is reported at (a prefix match for rules without a fieldPath).
    path: str = ""


def _invalid_cache(b0: str, cached: Obj, llama: Obj, mine: Obj) -> list[Case]:
    """``cache``, ``volumes`` and ``volumeMounts``: each invalid case names its field."""
    return [
        Case("cache-without-size", llmservice_obj(vllm(cache={})), f"{b0}.cache.size"),
        Case(
            "cache-size-and-existing-claim",
            llmservice_obj(vllm(cache={"size": "1Gi", "existingClaim": "models"})),
            f"{b0}.cache.size",
        ),
        Case(
            "cache-existing-claim-with-class",
            llmservice_obj(vllm(cache={"existingClaim": "models", "storageClassName": "fast"})),
            f"{b0}.cache.existingClaim",
        ),
        Case(
            "cache-access-mode-unknown",
            llmservice_obj(vllm(cache={**cached, "accessMode": "ReadOnlyMany"})),
            f"{b0}.cache.accessMode",
        ),
        Case(
            "cache-size-not-quantity",
            llmservice_obj(vllm(cache={"size": "lots"})),
            f"{b0}.cache.size",
        ),
        Case(
            "cache-revision-spaces",
            llmservice_obj(vllm(cache={**cached, "revision": "my branch"})),
            f"{b0}.cache.revision",
        ),
        Case(
            "cache-token-without-key",
            llmservice_obj(vllm(cache={**cached, "tokenSecretRef": {"name": "hf"}})),
            f"{b0}.cache.tokenSecretRef.key",
        ),
        Case(
            "cache-on-external",
            llmservice_obj(external(priority=0, cache=cached)),
            f"{b0}.cache",
        ),
        Case(
            "cache-of-a-path",
            llmservice_obj(llama | {"model": "/models/x.gguf", "cache": cached}),
            f"{b0}.cache",
        ),
        Case(
            "cache-of-a-bare-gguf",
            llmservice_obj(llama | {"model": "x.gguf", "cache": cached}),
            f"{b0}.cache",
        ),
        Case(
            "cache-of-a-url-for-vllm",
            llmservice_obj(vllm(model="https://h/x.gguf", cache=cached)),
            f"{b0}.cache",
        ),
        Case(
            "mount-of-unknown-volume",
            llmservice_obj(vllm(volumeMounts=[{"name": "mine", "mountPath": "/mine"}])),
            f"{b0}.volumeMounts",
        ),
        Case(
            "volume-reserved-name",
            llmservice_obj(vllm(volumes=[{**mine, "name": "model-cache"}])),
            f"{b0}.volumes",
        ),
        Case(
            "volume-duplicate-name",
            llmservice_obj(vllm(volumes=[mine, mine])),
            f"{b0}.volumes",
        ),
        Case(
            "volume-without-name",
            llmservice_obj(vllm(volumes=[{"emptyDir": {}}])),
            f"{b0}.volumes[0]",
        ),
        Case(
            "mount-reserved-path",
            llmservice_obj(
                vllm(volumes=[mine], volumeMounts=[{"name": "mine", "mountPath": "/tmp"}])
            ),
            f"{b0}.volumeMounts",
        ),
        Case(
            "mount-under-reserved-path",
            llmservice_obj(
                vllm(volumes=[mine], volumeMounts=[{"name": "mine", "mountPath": "/ballast/x"}])
            ),
            f"{b0}.volumeMounts",
        ),
        Case(
            "mount-without-path",
            llmservice_obj(vllm(volumes=[mine], volumeMounts=[{"name": "mine"}])),
            f"{b0}.volumeMounts[0]",
        ),
        Case(
            "volumes-on-external",
            llmservice_obj(external(priority=0, volumes=[mine])),
            f"{b0}.volumes",
        ),
    ]


def _invalid() -> list[Case]:
    b0 = "spec.backends[0]"
    many = [vllm(f"b{i}") for i in range(17)]
    cached = {"size": "20Gi"}
    llama = backend("llamacpp")
    mine = {"name": "mine", "persistentVolumeClaim": {"claimName": "x"}}
    zero = {"minReplicas": 0, "maxReplicas": 2}
    return [
        *_invalid_cache(b0, cached, llama, mine),
        Case("no-backends", llmservice_obj(*[]) | {"spec": {"backends": []}}, "spec.backends"),
        Case("17-backends", llmservice_obj(*many), "spec.backends"),
        Case("duplicate-names", llmservice_obj(vllm("a"), vllm("a")), "spec.backends"),
        Case("name-uppercase", llmservice_obj(vllm("Primary")), f"{b0}.name"),
        Case("name-too-long", llmservice_obj(vllm("a" * 64)), f"{b0}.name"),
        Case("name-underscore", llmservice_obj(vllm("gpu_pool")), f"{b0}.name"),
        Case("unknown-engine", llmservice_obj(vllm() | {"engine": "triton"}), f"{b0}.engine"),
        Case("missing-model", llmservice_obj(without(vllm(), "model")), f"{b0}.model"),
        Case("empty-model", llmservice_obj(vllm(model="")), f"{b0}.model"),
        Case("missing-engine", llmservice_obj(without(vllm(), "engine")), f"{b0}.engine"),
        Case(
            "external-without-url",
            llmservice_obj(without(external(priority=0), "url")),
            f"{b0}.url",
        ),
        Case(
            "external-with-replicas",
            llmservice_obj(external(priority=0, replicas=2)),
            f"{b0}.replicas",
        ),
        Case(
            "external-with-scaling",
            llmservice_obj(external(priority=0, scaling={"maxReplicas": 2})),
            f"{b0}.scaling",
        ),
        Case(
            "external-with-image", llmservice_obj(external(priority=0, image="x:1")), f"{b0}.image"
        ),
        Case(
            "external-with-resources",
            llmservice_obj(external(priority=0, resources={"limits": {"cpu": 1}})),
            f"{b0}.resources",
        ),
        Case(
            "external-with-args", llmservice_obj(external(priority=0, args=["--x"])), f"{b0}.args"
        ),
        Case("self-hosted-with-url", llmservice_obj(vllm(url="http://x/v1")), f"{b0}.url"),
        Case(
            "self-hosted-with-secret",
            llmservice_obj(vllm(apiKeySecretRef={"name": "k", "key": "v"})),
            f"{b0}.apiKeySecretRef",
        ),
        Case(
            "secret-without-key",
            llmservice_obj(external(priority=0, apiKeySecretRef={"name": "k"})),
            f"{b0}.apiKeySecretRef.key",
        ),
        Case(
            "secret-without-name",
            llmservice_obj(external(priority=0, apiKeySecretRef={"key": "k"})),
            f"{b0}.apiKeySecretRef.name",
        ),
        Case(
            "min-above-max",
            llmservice_obj(vllm(scaling={"minReplicas": 5, "maxReplicas": 3})),
            f"{b0}.scaling.minReplicas",
        ),
        Case(
            "scaling-and-replicas",
            llmservice_obj(vllm(replicas=2, scaling={"maxReplicas": 3})),
            f"{b0}.replicas",
        ),
        Case(
            "hold-without-zero",
            llmservice_obj(vllm(scaling={"maxReplicas": 3}, hold={"maxPending": 5})),
            f"{b0}.hold",
        ),
        Case("hold-on-fixed-replicas", llmservice_obj(vllm(hold={})), f"{b0}.hold"),
        Case(
            "hold-timeout-over-600",
            llmservice_obj(vllm(scaling=zero, hold={"timeoutSeconds": 601})),
            f"{b0}.hold.timeoutSeconds",
        ),
        Case(
            "hold-max-pending-zero",
            llmservice_obj(vllm(scaling=zero, hold={"maxPending": 0})),
            f"{b0}.hold.maxPending",
        ),
        Case(
            "idle-after-too-short",
            llmservice_obj(vllm(scaling={**zero, "idleAfterSeconds": 1})),
            f"{b0}.scaling.idleAfterSeconds",
        ),
        Case(
            "standby-scales-to-zero",
            llmservice_obj(external(priority=0), vllm(priority=1, scaling=zero, standby={})),
            "spec.backends[1].standby",
        ),
        Case(
            "standby-without-tier-above",
            llmservice_obj(vllm(standby={}), external(priority=0)),
            "spec.backends",
        ),
        Case(
            "standby-zero-replicas",
            llmservice_obj(external(priority=0), vllm(priority=1, replicas=0, standby={})),
            "spec.backends[1].replicas",
        ),
        Case(
            "standby-unknown-mode",
            llmservice_obj(external(priority=0), vllm(priority=1, standby={"mode": "warm"})),
            "spec.backends[1].standby.mode",
        ),
        Case(
            "standby-on-external",
            llmservice_obj(vllm(), external(priority=1, standby={})),
            "spec.backends[1].standby",
        ),
        Case(
            "scaling-without-max",
            llmservice_obj(vllm(scaling={"minReplicas": 1})),
            f"{b0}.scaling.maxReplicas",
        ),
        Case(
            "scaling-max-zero",
            llmservice_obj(vllm(scaling={"maxReplicas": 0})),
            f"{b0}.scaling.maxReplicas",
        ),
        Case("priority-negative", llmservice_obj(vllm(priority=-1)), f"{b0}.priority"),
        Case("priority-too-high", llmservice_obj(vllm(priority=101)), f"{b0}.priority"),
        Case("weight-negative", llmservice_obj(vllm(weight=-5)), f"{b0}.weight"),
        Case("weight-too-high", llmservice_obj(vllm(weight=20000)), f"{b0}.weight"),
        Case(
            "zero-weight-tier",
            llmservice_obj(vllm("a", weight=0), vllm("b", weight=0)),
            "spec.backends",
        ),
        Case(
            "zero-weight-fallback-tier",
            llmservice_obj(vllm("a"), external("b", weight=0)),
            "spec.backends",
        ),
        Case(
            "max-attempts-zero",
            llmservice_obj(fallback={"maxAttempts": 0}),
            "spec.fallback.maxAttempts",
        ),
        Case(
            "max-attempts-11",
            llmservice_obj(fallback={"maxAttempts": 11}),
            "spec.fallback.maxAttempts",
        ),
        Case(
            "per-try-timeout-zero",
            llmservice_obj(fallback={"perTryTimeoutSeconds": 0}),
            "spec.fallback.perTryTimeoutSeconds",
        ),
        Case(
            "retry-on-unknown",
            llmservice_obj(fallback={"retryOn": ["4xx"]}),
            "spec.fallback.retryOn[0]",
        ),
        Case(
            "retry-on-500", llmservice_obj(fallback={"retryOn": [500]}), "spec.fallback.retryOn[0]"
        ),
        Case(
            "breaker-zero",
            llmservice_obj(fallback={"circuitBreaker": {"consecutiveFailures": 0}}),
            "spec.fallback.circuitBreaker.consecutiveFailures",
        ),
        Case(
            "healthy-after-zero",
            llmservice_obj(fallback={"healthyAfter": 0}),
            "spec.fallback.healthyAfter",
        ),
        Case(
            "unhealthy-after-zero",
            llmservice_obj(fallback={"unhealthyAfter": 0}),
            "spec.fallback.unhealthyAfter",
        ),
        Case(
            "when-all-unhealthy-unknown",
            llmservice_obj(fallback={"whenAllUnhealthy": "random"}),
            "spec.fallback.whenAllUnhealthy",
        ),
        Case(
            "health-period-zero",
            llmservice_obj(vllm(health={"periodSeconds": 0})),
            f"{b0}.health.periodSeconds",
        ),
        Case(
            "startup-too-short",
            llmservice_obj(vllm(health={"startupTimeoutSeconds": 5})),
            f"{b0}.health.startupTimeoutSeconds",
        ),
        Case(
            "health-path-relative",
            llmservice_obj(vllm(health={"path": "health"})),
            f"{b0}.health.path",
        ),
        Case("url-not-http", llmservice_obj(external(priority=0, url="ftp://x/v1")), f"{b0}.url"),
        Case(
            "cpu-metric-without-target",
            llmservice_obj(vllm(scaling={"maxReplicas": 2, "metrics": [{"type": "cpu"}]})),
            f"{b0}.scaling.metrics[0].targetAverageUtilization",
        ),
        Case(
            "pods-metric-without-name",
            llmservice_obj(
                vllm(
                    scaling={
                        "maxReplicas": 2,
                        "metrics": [{"type": "pods", "targetAverageValue": "5"}],
                    }
                )
            ),
            f"{b0}.scaling.metrics[0].name",
        ),
        Case(
            "metric-raw-and-type",
            llmservice_obj(
                vllm(
                    scaling={
                        "maxReplicas": 2,
                        "metrics": [
                            {
                                "type": "cpu",
                                "targetAverageUtilization": 50,
                                "raw": {"type": "Resource"},
                            }
                        ],
                    }
                )
            ),
            f"{b0}.scaling.metrics[0]",
        ),
        Case("typo-field", llmservice_obj(vllm(replica=2)), f"{b0}.replica"),
        Case("typo-spec-field", llmservice_obj(fallbacks={}), "spec.fallbacks"),
        Case("empty-served-model", llmservice_obj(servedModelName=""), "spec.servedModelName"),
        Case(
            "bad-quantity",
            llmservice_obj(vllm(resources={"limits": {"memory": "lots"}})),
            f"{b0}.resources.limits.memory",
        ),
        Case("replicas-negative", llmservice_obj(vllm(replicas=-1)), f"{b0}.replicas"),
        Case("env-without-name", llmservice_obj(vllm(env=[{"value": "1"}])), f"{b0}.env[0].name"),
        Case("args-not-a-list", llmservice_obj(vllm(args="--x")), f"{b0}.args"),
        Case(
            "session-header-without-header",
            llmservice_obj(loadBalancing={"strategy": "sessionHeader"}),
            "spec.loadBalancing.header",
        ),
        Case(
            "header-with-least-loaded",
            llmservice_obj(loadBalancing={"header": "X-Session-Id"}),
            "spec.loadBalancing.header",
        ),
        Case(
            "prefix-chars-with-session-header",
            llmservice_obj(
                loadBalancing={"strategy": "sessionHeader", "header": "X-S", "prefixChars": 64}
            ),
            "spec.loadBalancing.prefixChars",
        ),
        Case(
            "load-factor-with-least-loaded",
            llmservice_obj(loadBalancing={"loadFactor": 1.5}),
            "spec.loadBalancing.loadFactor",
        ),
        Case(
            "load-factor-below-one",
            llmservice_obj(loadBalancing={"strategy": "prefixHash", "loadFactor": 0.5}),
            "spec.loadBalancing.loadFactor",
        ),
        Case(
            "unknown-strategy",
            llmservice_obj(loadBalancing={"strategy": "roundRobin"}),
            "spec.loadBalancing.strategy",
        ),
    ]


def _valid() -> list[Case]:
    return [
        Case("default", llmservice_obj()),
        Case(
            "cache-full",
            llmservice_obj(
                vllm(
                    cache={
                        "size": "40Gi",
                        "storageClassName": "fast.example.com",
                        "accessMode": "ReadWriteOnce",
                        "revision": "0123abcd",
                        "tokenSecretRef": {"name": "hf", "key": "token"},
                    }
                )
            ),
        ),
        Case("cache-existing-claim", llmservice_obj(vllm(cache={"existingClaim": "models"}))),
        Case(
            "cache-every-engine",
            llmservice_obj(
                vllm(cache={"size": 1}),
                backend("tgi", cache={"size": "1Gi"}),
                backend("ollama", cache={"size": "1Gi"}),
                backend("llamacpp", cache={"size": "1Gi"}),
                backend("llamacpp", "url", model="https://h/m.gguf", cache={"size": "1Gi"}),
            ),
        ),
        Case(
            "own-volumes",
            llmservice_obj(
                vllm(
                    volumes=[
                        {"name": "mine", "persistentVolumeClaim": {"claimName": "x"}},
                        {"name": "templates", "configMap": {"name": "t"}},
                    ],
                    volumeMounts=[
                        {"name": "mine", "mountPath": "/mine", "readOnly": True},
                        {"name": "templates", "mountPath": "/templates/chat", "subPath": "c"},
                    ],
                )
            ),
        ),
        Case("single-vllm", llmservice_obj(vllm())),
        Case(
            "scale-to-zero",
            llmservice_obj(
                vllm(
                    scaling={"minReplicas": 0, "maxReplicas": 4, "idleAfterSeconds": 300},
                    hold={"maxPending": 20, "timeoutSeconds": 120},
                )
            ),
        ),
        Case(
            "scale-to-zero-defaults",
            llmservice_obj(vllm(scaling={"minReplicas": 0, "maxReplicas": 1})),
        ),
        Case(
            "cold-standby",
            llmservice_obj(
                external(priority=0),
                external("other", priority=1),
                vllm(
                    priority=2,
                    scaling={"minReplicas": 1, "maxReplicas": 2},
                    standby={"mode": "cold", "activateAfterSeconds": 10, "cooldownSeconds": 60},
                    hold={"maxPending": 50},
                ),
            ),
        ),
        Case(
            "cold-standby-fixed-replicas",
            llmservice_obj(external(priority=0), vllm(priority=1, replicas=2, standby={})),
        ),
        Case(
            "external-only",
            llmservice_obj(external(priority=0, apiKeySecretRef={"name": "k", "key": "v"})),
        ),
        Case("weight-zero-standby", llmservice_obj(vllm("a"), vllm("b", weight=0))),
        Case("retry-on-int-429", llmservice_obj(fallback={"retryOn": [429, "5xx"]})),
        Case(
            "scaling-full",
            llmservice_obj(
                vllm(
                    scaling={
                        "minReplicas": 1,
                        "maxReplicas": 4,
                        "metrics": [
                            {"type": "cpu", "targetAverageUtilization": 70},
                            {
                                "type": "pods",
                                "name": "vllm:num_requests_waiting",
                                "targetAverageValue": "5",
                            },
                            {"raw": {"type": "External", "external": {"metric": {"name": "q"}}}},
                        ],
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
                    }
                )
            ),
        ),
        Case(
            "quantities",
            llmservice_obj(
                vllm(resources={"limits": {"nvidia.com/gpu": 1, "memory": "32Gi", "cpu": "500m"}})
            ),
        ),
        Case(
            "all-engines",
            llmservice_obj(
                *(
                    backend(e, priority=i)
                    for i, e in enumerate(["vllm", "tgi", "ollama", "llamacpp"])
                )
            ),
        ),
        Case(
            "health-and-fallback",
            llmservice_obj(
                vllm(health={"path": "/ready", "periodSeconds": 2}),
                fallback={"whenAllUnhealthy": "reject", "maxAttempts": 10},
            ),
        ),
        Case("sixteen-backends", llmservice_obj(*[vllm(f"b{i}") for i in range(16)])),
        Case("least-loaded", llmservice_obj(loadBalancing={"strategy": "leastLoaded"})),
        Case(
            "prefix-hash",
            llmservice_obj(
                loadBalancing={"strategy": "prefixHash", "prefixChars": 512, "loadFactor": 1.5}
            ),
        ),
        Case(
            "session-header",
            llmservice_obj(
                loadBalancing={
                    "strategy": "sessionHeader",
                    "header": "X-Session-Id",
                    "loadFactor": 2,
                }
            ),
        ),
    ]


INVALID: list[Case] = _invalid()
VALID: list[Case] = _valid()

"""A table of LLMService specs, valid and invalid, shared by the API tests.

Every invalid case names the field path its problem must be reported at, both
by the pydantic models and by the CRD (JSON schema + CEL) re-enacted offline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


def vllm(name: str = "primary", **fields: Any) -> Obj:
    return {"name": name, "engine": "vllm", "model": "meta-llama/Llama-3.1-8B-Instruct", **fields}


def external(name: str = "cloud", **fields: Any) -> Obj:
    return {
        "name": name,
        "engine": "openai",
        "model": "gpt-4o-mini",
        "url": "https://api.example.com/v1",
        "priority": 1,
        **fields,
    }


def make_llmservice(*backends: Obj, name: str = "chat", **spec: Any) -> Obj:
    """A whole LLMService object; default backends: one vLLM primary and one external fallback."""
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": "ai"},
        "spec": {"backends": list(backends or (vllm(), external())), **spec},
    }


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


def _invalid() -> list[Case]:
    b0 = "spec.backends[0]"
    many = [vllm(f"b{i}") for i in range(17)]
    return [
        Case("no-backends", make_llmservice(*[]) | {"spec": {"backends": []}}, "spec.backends"),
        Case("17-backends", make_llmservice(*many), "spec.backends"),
        Case("duplicate-names", make_llmservice(vllm("a"), vllm("a")), "spec.backends"),
        Case("name-uppercase", make_llmservice(vllm("Primary")), f"{b0}.name"),
        Case("name-too-long", make_llmservice(vllm("a" * 64)), f"{b0}.name"),
        Case("name-underscore", make_llmservice(vllm("gpu_pool")), f"{b0}.name"),
        Case("unknown-engine", make_llmservice(vllm(engine="triton")), f"{b0}.engine"),
        Case("missing-model", make_llmservice(without(vllm(), "model")), f"{b0}.model"),
        Case("empty-model", make_llmservice(vllm(model="")), f"{b0}.model"),
        Case("missing-engine", make_llmservice(without(vllm(), "engine")), f"{b0}.engine"),
        Case(
            "external-without-url",
            make_llmservice(without(external(priority=0), "url")),
            f"{b0}.url",
        ),
        Case(
            "external-with-replicas",
            make_llmservice(external(priority=0, replicas=2)),
            f"{b0}.replicas",
        ),
        Case(
            "external-with-scaling",
            make_llmservice(external(priority=0, scaling={"maxReplicas": 2})),
            f"{b0}.scaling",
        ),
        Case(
            "external-with-image", make_llmservice(external(priority=0, image="x:1")), f"{b0}.image"
        ),
        Case(
            "external-with-resources",
            make_llmservice(external(priority=0, resources={"limits": {"cpu": 1}})),
            f"{b0}.resources",
        ),
        Case(
            "external-with-args", make_llmservice(external(priority=0, args=["--x"])), f"{b0}.args"
        ),
        Case("self-hosted-with-url", make_llmservice(vllm(url="http://x/v1")), f"{b0}.url"),
        Case(
            "self-hosted-with-secret",
            make_llmservice(vllm(apiKeySecretRef={"name": "k", "key": "v"})),
            f"{b0}.apiKeySecretRef",
        ),
        Case(
            "secret-without-key",
            make_llmservice(external(priority=0, apiKeySecretRef={"name": "k"})),
            f"{b0}.apiKeySecretRef.key",
        ),
        Case(
            "secret-without-name",
            make_llmservice(external(priority=0, apiKeySecretRef={"key": "k"})),
            f"{b0}.apiKeySecretRef.name",
        ),
        Case(
            "min-above-max",
            make_llmservice(vllm(scaling={"minReplicas": 5, "maxReplicas": 3})),
            f"{b0}.scaling.minReplicas",
        ),
        Case(
            "scaling-and-replicas",
            make_llmservice(vllm(replicas=2, scaling={"maxReplicas": 3})),
            f"{b0}.replicas",
        ),
        Case(
            "scaling-without-max",
            make_llmservice(vllm(scaling={"minReplicas": 1})),
            f"{b0}.scaling.maxReplicas",
        ),
        Case(
            "scaling-max-zero",
            make_llmservice(vllm(scaling={"maxReplicas": 0})),
            f"{b0}.scaling.maxReplicas",
        ),
        Case("priority-negative", make_llmservice(vllm(priority=-1)), f"{b0}.priority"),
        Case("priority-too-high", make_llmservice(vllm(priority=101)), f"{b0}.priority"),
        Case("weight-negative", make_llmservice(vllm(weight=-5)), f"{b0}.weight"),
        Case("weight-too-high", make_llmservice(vllm(weight=20000)), f"{b0}.weight"),
        Case(
            "zero-weight-tier",
            make_llmservice(vllm("a", weight=0), vllm("b", weight=0)),
            "spec.backends",
        ),
        Case(
            "zero-weight-fallback-tier",
            make_llmservice(vllm("a"), external("b", weight=0)),
            "spec.backends",
        ),
        Case(
            "max-attempts-zero",
            make_llmservice(fallback={"maxAttempts": 0}),
            "spec.fallback.maxAttempts",
        ),
        Case(
            "max-attempts-11",
            make_llmservice(fallback={"maxAttempts": 11}),
            "spec.fallback.maxAttempts",
        ),
        Case(
            "per-try-timeout-zero",
            make_llmservice(fallback={"perTryTimeoutSeconds": 0}),
            "spec.fallback.perTryTimeoutSeconds",
        ),
        Case(
            "retry-on-unknown",
            make_llmservice(fallback={"retryOn": ["4xx"]}),
            "spec.fallback.retryOn[0]",
        ),
        Case(
            "retry-on-500", make_llmservice(fallback={"retryOn": [500]}), "spec.fallback.retryOn[0]"
        ),
        Case(
            "breaker-zero",
            make_llmservice(fallback={"circuitBreaker": {"consecutiveFailures": 0}}),
            "spec.fallback.circuitBreaker.consecutiveFailures",
        ),
        Case(
            "healthy-after-zero",
            make_llmservice(fallback={"healthyAfter": 0}),
            "spec.fallback.healthyAfter",
        ),
        Case(
            "unhealthy-after-zero",
            make_llmservice(fallback={"unhealthyAfter": 0}),
            "spec.fallback.unhealthyAfter",
        ),
        Case(
            "when-all-unhealthy-unknown",
            make_llmservice(fallback={"whenAllUnhealthy": "random"}),
            "spec.fallback.whenAllUnhealthy",
        ),
        Case(
            "health-period-zero",
            make_llmservice(vllm(health={"periodSeconds": 0})),
            f"{b0}.health.periodSeconds",
        ),
        Case(
            "startup-too-short",
            make_llmservice(vllm(health={"startupTimeoutSeconds": 5})),
            f"{b0}.health.startupTimeoutSeconds",
        ),
        Case(
            "health-path-relative",
            make_llmservice(vllm(health={"path": "health"})),
            f"{b0}.health.path",
        ),
        Case("url-not-http", make_llmservice(external(priority=0, url="ftp://x/v1")), f"{b0}.url"),
        Case(
            "cpu-metric-without-target",
            make_llmservice(vllm(scaling={"maxReplicas": 2, "metrics": [{"type": "cpu"}]})),
            f"{b0}.scaling.metrics[0].targetAverageUtilization",
        ),
        Case(
            "pods-metric-without-name",
            make_llmservice(
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
            make_llmservice(
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
        Case("typo-field", make_llmservice(vllm(replica=2)), f"{b0}.replica"),
        Case("typo-spec-field", make_llmservice(fallbacks={}), "spec.fallbacks"),
        Case("empty-served-model", make_llmservice(servedModelName=""), "spec.servedModelName"),
        Case(
            "bad-quantity",
            make_llmservice(vllm(resources={"limits": {"memory": "lots"}})),
            f"{b0}.resources.limits.memory",
        ),
        Case("replicas-negative", make_llmservice(vllm(replicas=-1)), f"{b0}.replicas"),
        Case("env-without-name", make_llmservice(vllm(env=[{"value": "1"}])), f"{b0}.env[0].name"),
        Case("args-not-a-list", make_llmservice(vllm(args="--x")), f"{b0}.args"),
    ]


def _valid() -> list[Case]:
    return [
        Case("default", make_llmservice()),
        Case("single-vllm", make_llmservice(vllm())),
        Case(
            "external-only",
            make_llmservice(external(priority=0, apiKeySecretRef={"name": "k", "key": "v"})),
        ),
        Case("weight-zero-standby", make_llmservice(vllm("a"), vllm("b", weight=0))),
        Case("retry-on-int-429", make_llmservice(fallback={"retryOn": [429, "5xx"]})),
        Case(
            "scaling-full",
            make_llmservice(
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
            make_llmservice(
                vllm(resources={"limits": {"nvidia.com/gpu": 1, "memory": "32Gi", "cpu": "500m"}})
            ),
        ),
        Case(
            "all-engines",
            make_llmservice(
                *(
                    vllm(e, engine=e, priority=i)
                    for i, e in enumerate(["vllm", "tgi", "ollama", "llamacpp"])
                )
            ),
        ),
        Case(
            "health-and-fallback",
            make_llmservice(
                vllm(health={"path": "/ready", "periodSeconds": 2}),
                fallback={"whenAllUnhealthy": "reject", "maxAttempts": 10},
            ),
        ),
        Case("sixteen-backends", make_llmservice(*[vllm(f"b{i}") for i in range(16)])),
    ]


INVALID: list[Case] = _invalid()
VALID: list[Case] = _valid()

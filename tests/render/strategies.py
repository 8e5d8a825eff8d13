"""Hypothesis strategies for LLMService objects the API models accept.

They produce raw (camelCase) objects across every engine and optional field.
Pass-through fields (tolerations, affinity, raw metrics, behavior, valueFrom)
are generated well-formed: their content is validated by Kubernetes, not by
Ballast, so an arbitrary dict there would fail the schema check by design.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Obj = dict[str, Any]

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def dns_label(draw: st.DrawFn, max_size: int = 63) -> str:
    """A DNS-1123 label (lowercase alphanumerics and inner dashes)."""
    size = draw(st.integers(1, max_size))
    if size == 1:
        return draw(st.sampled_from(_ALNUM))
    inner = draw(st.text(_ALNUM + "-", min_size=size - 2, max_size=size - 2))
    return draw(st.sampled_from(_ALNUM)) + inner + draw(st.sampled_from(_ALNUM))


@st.composite
def dns_subdomain(draw: st.DrawFn) -> str:
    """A DNS-1123 subdomain (what metadata.name allows), up to 253 characters."""
    parts = draw(st.lists(dns_label(), min_size=1, max_size=4))
    return ".".join(parts)[:253].rstrip(".-")


quantities = st.one_of(
    st.integers(1, 64),
    st.sampled_from(["500m", "2", "4Gi", "512Mi", "1.5", "16G"]),
)
resources = st.fixed_dictionaries(
    {},
    optional={
        "limits": st.dictionaries(
            st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), quantities, max_size=3
        ),
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2),
    },
)
env_var = st.builds(
    lambda name, value, secret: (
        {"name": name, "value": value}
        if secret is None
        else {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}
    ),
    st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,20}\Z"),
    st.text(max_size=20),
    st.none() | dns_label(20),
)
toleration = st.builds(
    lambda key, effect: {"key": key, "operator": "Exists", "effect": effect},
    st.sampled_from(["nvidia.com/gpu", "dedicated"]),
    st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]),
)
health = st.fixed_dictionaries(
    {},
    optional={
        "path": st.from_regex(r"\A/[a-z/]{0,20}\Z"),
        "periodSeconds": st.integers(1, 300),
        "timeoutSeconds": st.integers(1, 120),
        "failureThreshold": st.integers(1, 100),
        "startupTimeoutSeconds": st.integers(10, 86400),
    },
)
metric = st.one_of(
    st.builds(
        lambda t, u: {"type": t, "targetAverageUtilization": u},
        st.sampled_from(["cpu", "memory"]),
        st.integers(1, 1000),
    ),
    st.builds(
        lambda n, v: {"type": "pods", "name": n, "targetAverageValue": v},
        st.sampled_from(["vllm:num_requests_waiting", "tgi_queue_size"]),
        quantities,
    ),
    st.just(
        {
            "raw": {
                "type": "External",
                "external": {
                    "metric": {"name": "queue_depth"},
                    "target": {"type": "AverageValue", "averageValue": "10"},
                },
            }
        }
    ),
)


@st.composite
def scaling(draw: st.DrawFn) -> Obj:
    low = draw(st.integers(1, 5))
    out: Obj = {"minReplicas": low, "maxReplicas": draw(st.integers(low, 10))}
    if draw(st.booleans()):
        out["metrics"] = draw(st.lists(metric, min_size=1, max_size=3))
    if draw(st.booleans()):
        out["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": draw(st.integers(0, 3600))}}
    return out


@st.composite
def self_hosted(draw: st.DrawFn, name: str) -> Obj:
    engine = draw(st.sampled_from(["vllm", "tgi", "ollama", "llamacpp"]))
    model = draw(st.text(min_size=1, max_size=60).filter(lambda s: s.strip() == s and s))
    out: Obj = {"name": name, "engine": engine, "model": model}
    optional = {
        "image": st.sampled_from(["registry.local/engine:v1", "ghcr.io/x/y@sha256:" + "a" * 64]),
        "args": st.lists(st.text(max_size=30), max_size=5),
        "env": st.lists(env_var, max_size=4),
        "resources": resources,
        "nodeSelector": st.dictionaries(
            st.sampled_from(["pool", "gpu"]), dns_label(10), max_size=2
        ),
        "tolerations": st.lists(toleration, max_size=2),
        "runtimeClassName": dns_label(20),
        "health": health,
        "priority": st.integers(0, 100),
        "weight": st.integers(1, 10000),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            out[key] = draw(strategy)
    choice = draw(st.sampled_from(["none", "replicas", "scaling"]))
    if choice == "replicas":
        out["replicas"] = draw(st.integers(0, 10))
    elif choice == "scaling":
        out["scaling"] = draw(scaling())
    return out


@st.composite
def external_backend(draw: st.DrawFn, name: str) -> Obj:
    out: Obj = {
        "name": name,
        "engine": "openai",
        "model": draw(st.sampled_from(["gpt-4o-mini", "claude", "Qwen/Qwen2.5-7B"])),
        "url": draw(st.sampled_from(["https://api.example.com/v1", "http://10.0.0.1:8080/v1/"])),
        "priority": draw(st.integers(0, 100)),
    }
    if draw(st.booleans()):
        out["apiKeySecretRef"] = {"name": draw(dns_label(20)), "key": "api-key"}
    return out


@st.composite
def llmservices(draw: st.DrawFn) -> Obj:
    """A raw LLMService object (parse it with ``parse_llmservice``)."""
    names = draw(st.lists(dns_label(), min_size=1, max_size=4, unique=True))
    backends = [
        draw(external_backend(n) if draw(st.integers(0, 4)) == 0 else self_hosted(n)) for n in names
    ]
    spec: Obj = {"backends": backends}
    if draw(st.booleans()):
        spec["servedModelName"] = draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,40}\Z"))
    metadata: Obj = {"name": draw(dns_subdomain()), "namespace": draw(dns_label())}
    if draw(st.booleans()):
        metadata["uid"] = str(draw(st.uuids()))
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": metadata,
        "spec": spec,
    }

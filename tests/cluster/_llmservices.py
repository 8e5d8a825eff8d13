"""LLMServices and their children as the tests see them through the API: paths, a
three-backend LLMService factory (one backend of each shape: fixed replicas,
autoscaled, external), the children the operator must create for it, and waits for
"Ready and settled" (phase, Deployments rolled out, status showing their counts)."""

from __future__ import annotations

from ballast.permissions import MANAGED_KINDS, ManagedKind

from ._operator import Fleet
from .kubeapi import JSON, ApiError, KubeApi
from .poll import wait_for

API_VERSION = "ballast.dev/v1alpha1"


KINDS = {k.kind: k for k in MANAGED_KINDS}


def kind_path(kind: ManagedKind, namespace: str, name: str = "") -> str:
    root = f"/apis/{kind.api_version}" if "/" in kind.api_version else f"/api/{kind.api_version}"
    return f"{root}/namespaces/{namespace}/{kind.plural}" + (f"/{name}" if name else "")


def llms_path(namespace: str, name: str = "") -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/llmservices" + (f"/{name}" if name else "")


def llmservice(name: str, namespace: str, fleet: Fleet) -> JSON:
    """Three backends: vllm with 2 replicas (PDB), llama.cpp autoscaled (HPA), external API."""
    fast = {"periodSeconds": 1}
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backends": [
                {
                    "name": "primary",
                    "engine": "vllm",
                    "model": "org/chat",
                    "replicas": 2,
                    # not in the API server's normal form (it stores "1", "1Gi", "500m"):
                    # drift detection must compare quantities by meaning, not as written
                    "resources": {
                        "limits": {"nvidia.com/gpu": 1, "memory": "1024Mi"},
                        "requests": {"cpu": "0.5"},
                    },
                    "health": fast,
                },
                {
                    "name": "pool",
                    "engine": "llamacpp",
                    "model": "org/chat-gguf:Q4_K_M",
                    "priority": 1,
                    "resources": {"requests": {"cpu": "1"}},
                    "scaling": {
                        "minReplicas": 1,
                        "maxReplicas": 4,
                        "metrics": [{"type": "cpu", "targetAverageUtilization": 70}],
                    },
                    "health": fast,
                },
                {
                    "name": "cloud",
                    "engine": "openai",
                    "model": "gpt-4o-mini",
                    "url": fleet.url(namespace, name, "cloud"),
                    "apiKeySecretRef": {"name": "llm-keys", "key": "openai"},
                    "priority": 2,
                    "health": fast,
                },
            ],
            "fallback": {"healthyAfter": 1, "unhealthyAfter": 2},
        },
    }


EXPECTED_CHILDREN = {
    ("ConfigMap", "{name}-routes"),
    ("NetworkPolicy", "{name}-engines"),  # the chart gives the operator its peers
    ("Service", "{name}-primary"),
    ("Deployment", "{name}-primary"),
    ("PodDisruptionBudget", "{name}-primary"),
    ("Service", "{name}-pool"),
    ("Deployment", "{name}-pool"),
    ("HorizontalPodAutoscaler", "{name}-pool"),
    ("PodDisruptionBudget", "{name}-pool"),  # maxReplicas > 1
}


def expected_children(name: str) -> set[tuple[str, str]]:
    return {(kind, child.format(name=name)) for kind, child in EXPECTED_CHILDREN}


def children(api: KubeApi, namespace: str, service: str) -> dict[tuple[str, str], JSON]:
    """(kind, name) -> object, for every managed kind labelled as a child of `service`."""
    out = {}
    for kind in MANAGED_KINDS:
        listed = api.get(kind_path(kind, namespace), labelSelector=f"ballast.dev/service={service}")
        for item in listed["items"]:
            out[kind.kind, item["metadata"]["name"]] = item
    return out


def all_children(
    api: KubeApi, namespace: str, service: str, expected: set[tuple[str, str]]
) -> dict[tuple[str, str], JSON] | None:
    """`children(...)` once they are exactly `expected` (by kind and name), else None."""
    found = children(api, namespace, service)
    return found if found.keys() == expected else None


def uids(objects: dict[tuple[str, str], JSON]) -> dict[tuple[str, str], str]:
    return {key: obj["metadata"]["uid"] for key, obj in objects.items()}


def phase(api: KubeApi, namespace: str, name: str) -> str:
    obj = api.get(llms_path(namespace, name))
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "Stale"
    return str(status.get("phase", ""))


def deployments_settled(api: KubeApi, namespace: str) -> bool:
    """Every Deployment rolled out: all replicas updated, ready and available."""
    for d in api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]:
        want, status = d["spec"].get("replicas", 1), d.get("status", {})
        if status.get("observedGeneration") != d["metadata"]["generation"]:
            return False
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        if any(status.get(c, 0) != want for c in counts):
            return False
    return True


def counts_shown(api: KubeApi, namespace: str, name: str) -> bool:
    """status.backends shows each Deployment's current replica counts."""
    shown = {
        b["name"]: (b.get("replicas", 0), b.get("readyReplicas", 0))
        for b in api.get(llms_path(namespace, name)).get("status", {}).get("backends", [])
    }
    for d in api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]:
        backend = d["metadata"]["labels"].get("ballast.dev/backend")
        if d["metadata"]["labels"].get("ballast.dev/service") != name or backend is None:
            continue
        status = d.get("status", {})
        if shown.get(backend) != (status.get("replicas", 0), status.get("readyReplicas", 0)):
            return False
    return True


def wait_ready(api: KubeApi, namespace: str, name: str, timeout: float = 90) -> JSON:
    """Wait for phase Ready at the current generation, every Deployment rolled out and
    status showing their replica counts (the operator refreshes those on its next probe)."""
    wait_for(
        lambda: (
            phase(api, namespace, name) == "Ready"
            and deployments_settled(api, namespace)
            and counts_shown(api, namespace, name)
        ),
        timeout=timeout,
        what=f"LLMService {namespace}/{name} Ready",
    )
    return api.get(llms_path(namespace, name))


def managers(obj: JSON) -> dict[str, JSON]:
    """manager -> its managedFields entry for the main resource (not a subresource)."""
    return {
        m["manager"]: m
        for m in obj["metadata"].get("managedFields", [])
        if not m.get("subresource")
    }


def listable(api: KubeApi) -> bool:
    try:
        api.get(f"/apis/{API_VERSION}/llmservices")
    except ApiError as err:
        if err.status == 429:  # storage of a just-Established CRD is still initializing
            return False
        raise
    return True


def settled_everywhere(api: KubeApi) -> bool:
    """Every LLMService Ready at its generation and every Deployment rolled out."""
    items = api.get(f"/apis/{API_VERSION}/llmservices")["items"]
    return all(
        phase(api, o["metadata"]["namespace"], o["metadata"]["name"]) == "Ready"
        and deployments_settled(api, o["metadata"]["namespace"])
        and counts_shown(api, o["metadata"]["namespace"], o["metadata"]["name"])
        for o in items
    )

"""The generated LLMService CRD against a real API server: it is accepted and
Established, the examples are valid, invalid objects are rejected by the server
with the offending field named, server-side defaults equal the pydantic models'
defaults, and `kubectl explain` / `kubectl get llms` show what users need."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api.spec import spec_defaults

from .binaries import REPO
from .controlplane import ControlPlane
from .kubeapi import JSON, ApiError
from .tools import Tool

CRD_NAME = "llmservices.ballast.dev"
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("llmservice_crd")


def backend(name: str = "primary", engine: str = "vllm", **fields: Any) -> JSON:
    return {"name": name, "engine": engine, "model": "org/model", **fields}


def external(name: str = "cloud", **fields: Any) -> JSON:
    return backend(name, "openai", url="https://api.example.com/v1", **fields)


def llmservice(name: str = "svc", backends: list[JSON] | None = None, **spec: Any) -> JSON:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": {"backends": backends if backends is not None else [backend()], **spec},
    }


def collection(namespace: str) -> str:
    return f"/apis/ballast.dev/v1alpha1/namespaces/{namespace}/llmservices"


def example_documents(path: Path, namespace: str) -> list[JSON]:
    """The LLMServices in one example file, moved into `namespace`."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def words(text: str) -> str:
    return " ".join(text.split())


def test_crd_is_established_without_warnings(
    llmservice_crd: subprocess.CompletedProcess[str], control_plane: ControlPlane, kubectl: Tool
) -> None:
    assert "warning" not in llmservice_crd.stderr.lower(), llmservice_crd.stderr
    crd = control_plane.api.get(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
    )
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NamesAccepted") == "True"
    assert "NonStructuralSchema" not in conditions
    assert crd["status"]["acceptedNames"]["shortNames"] == ["llms"]
    again = kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    assert again.stderr == ""


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_accepted_and_defaulted_like_the_models(
    example: Path, namespace: str, kubectl: Tool, control_plane: ControlPlane
) -> None:
    docs = example_documents(example, namespace)
    assert docs, f"{example} holds no LLMService"
    applied = kubectl(
        "apply", "--server-side", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(docs)
    )
    assert "warning" not in applied.stderr.lower(), applied.stderr
    for doc in docs:
        stored = control_plane.api.get(f"{collection(namespace)}/{doc['metadata']['name']}")
        assert stored["spec"] == spec_defaults(doc["spec"])


def test_minimal_object_gets_the_models_defaults(
    namespace: str, control_plane: ControlPlane
) -> None:
    obj = llmservice(backends=[backend(), external(priority=1)])
    spec = dict(obj["spec"])
    created = control_plane.api.post(collection(namespace), obj)
    assert created["spec"] == spec_defaults(spec)
    assert created["spec"]["fallback"]["retryOn"]  # defaults came from the server, not from us


INVALID: list[tuple[str, JSON, str, str]] = [
    (
        "duplicate-backend-names",
        llmservice(backends=[backend("a"), backend("a")]),
        "spec.backends",
        "backend names must be unique",
    ),
    (
        "min-above-max-replicas",
        llmservice(backends=[backend(scaling={"minReplicas": 3, "maxReplicas": 2})]),
        "spec.backends[0].scaling.minReplicas",
        "minReplicas must not exceed maxReplicas",
    ),
    (
        "external-without-url",
        llmservice(backends=[backend(engine="openai")]),
        "spec.backends[0].url",
        "needs url",
    ),
    (
        "pod-fields-on-external",
        llmservice(backends=[external(image="ghcr.io/x/y:1", replicas=2)]),
        "spec.backends[0].image",
        "runs no pods",
    ),
    (
        "seventeen-backends",
        llmservice(backends=[backend(f"b{i}") for i in range(17)]),
        "spec.backends",
        "must have at most 16 items",
    ),
    (
        "zero-weight-in-a-used-tier",
        llmservice(backends=[backend("a", weight=0), backend("b", priority=1)]),
        "spec.backends",
        "every priority tier",
    ),
    (
        "unknown-engine",
        llmservice(backends=[backend(engine="sglang")]),
        "spec.backends[0].engine",
        'Unsupported value: "sglang"',
    ),
]


@pytest.mark.parametrize(
    ("obj", "field", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_api_server_rejects_invalid_llmservice_naming_the_field(
    namespace: str, control_plane: ControlPlane, obj: JSON, field: str, message: str
) -> None:
    with pytest.raises(ApiError) as rejected:
        control_plane.api.post(collection(namespace), obj)
    err = rejected.value
    assert err.status == 422, err
    causes = err.body.get("details", {}).get("causes", [])
    assert field in {c.get("field") for c in causes}, causes
    assert message in str(err), str(err)
    assert control_plane.api.get(collection(namespace))["items"] == []


def test_kubectl_apply_shows_the_rejected_field(namespace: str, kubectl: Tool) -> None:
    obj = llmservice(backends=[backend(engine="openai")])
    result = kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    assert result.returncode != 0
    assert re.search(r"spec\.backends\[0\]\.url: .*needs url", result.stderr), result.stderr


def test_kubectl_rejects_unknown_fields_strictly(namespace: str, kubectl: Tool) -> None:
    obj = llmservice(backends=[backend(gpus=2)])
    result = kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    assert result.returncode != 0
    assert ".spec.backends[0].gpus: field not declared in schema" in result.stderr, result.stderr


def test_explain_prints_every_backend_field_description(kubectl: Tool) -> None:
    crd = yaml.safe_load((REPO / "crds" / f"{CRD_NAME}.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = schema["properties"]["spec"]["properties"]["backends"]["items"]["properties"]
    out = words(kubectl("explain", "llmservices.spec.backends").stdout)
    assert "DESCRIPTION:" in out
    for name, prop in fields.items():
        assert re.search(rf"\b{name}\b", out), f"{name} missing from kubectl explain"
        assert words(prop["description"])[:60] in out, f"{name}'s description missing"


def test_get_llms_shows_the_printer_columns(
    namespace: str, control_plane: ControlPlane, kubectl: Tool
) -> None:
    api = control_plane.api
    api.post(collection(namespace), llmservice("chat", [backend(), external(priority=1)]))
    status = {
        "servedModelName": "chat",
        "phase": "Ready",
        "backendsInRoute": "2/2",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllBackendsInRoute",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "CacheReady",
                "status": "False",
                "reason": "Downloading",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
    }
    api.merge_patch(f"{collection(namespace)}/chat/status", {"status": status})
    lines = kubectl("get", "llms", "-n", namespace).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == [
        "NAME",
        "MODEL",
        "PHASE",
        "READY",
        "IN ROUTE",
        "AGE",
    ]
    assert re.split(r"\s{2,}", lines[1].strip())[:5] == ["chat", "chat", "Ready", "True", "2/2"]
    wide = kubectl("get", "llms", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "CACHE" in re.split(r"\s{2,}", wide[0].strip())
    assert re.split(r"\s{2,}", wide[1].strip())[5] == "Downloading"

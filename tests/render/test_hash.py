"""The pod-template hash rolls pods for what changes the pods and never for routing-only edits."""

from __future__ import annotations

from typing import Any

import pytest

from ballast import render
from tests.factories import external, make_llmservice, vllm

Obj = dict[str, Any]
BASE: Obj = {
    "args": ["--max-model-len", "8192"],
    "env": [{"name": "A", "value": "1"}],
    "resources": {"limits": {"nvidia.com/gpu": 1}},
}


def spec_hash(backend_fields: Obj, **spec: Any) -> str:
    svc = make_llmservice(vllm(**{**BASE, **backend_fields}), external(), **spec)
    dep = render.deployment(svc, svc.spec.backends[0])
    value: str = dep["spec"]["template"]["metadata"]["annotations"][render.SPEC_HASH_ANNOTATION]
    return value


@pytest.mark.parametrize(
    "change",
    [
        {"image": "vllm/vllm-openai:v0.10.2"},
        {"args": ["--max-model-len", "4096"]},
        {"env": [{"name": "A", "value": "2"}]},
        {"resources": {"limits": {"nvidia.com/gpu": 2}}},
        {"model": "Qwen/Qwen2.5-7B-Instruct"},
        {"nodeSelector": {"pool": "gpu"}},
        {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        {"runtimeClassName": "nvidia"},
        {"health": {"periodSeconds": 10}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_changes_to_the_pods_change_the_spec_hash(change: Obj) -> None:
    assert spec_hash(change) != spec_hash({})


@pytest.mark.parametrize(
    ("change", "spec"),
    [
        ({"priority": 5}, {}),
        ({"weight": 7}, {}),
        ({"replicas": 3}, {}),
        ({}, {"fallback": {"maxAttempts": 5, "whenAllUnhealthy": "reject"}}),
    ],
    ids=["priority", "weight", "replicas", "fallback"],
)
def test_routing_only_edits_keep_the_spec_hash(change: Obj, spec: Obj) -> None:
    assert spec_hash(change, **spec) == spec_hash({})


def test_routing_only_edits_leave_every_workload_object_unchanged() -> None:
    before = render.objects(make_llmservice(vllm(**BASE), external()))
    after = render.objects(
        make_llmservice(vllm(**BASE, priority=2, weight=3), external(priority=0))
    )
    assert before[0] != after[0]  # the routing table does change
    assert before[1:] == after[1:]


def test_object_hash_ignores_only_its_own_annotation() -> None:
    obj = render.objects(make_llmservice())[1]
    stamped = obj["metadata"]["annotations"][render.APPLIED_HASH_ANNOTATION]
    assert render.object_hash(obj) == stamped
    obj["metadata"]["annotations"][render.APPLIED_HASH_ANNOTATION] = "something-else"
    assert render.object_hash(obj) == stamped
    obj["metadata"]["labels"]["extra"] = "x"
    assert render.object_hash(obj) != stamped

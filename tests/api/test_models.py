"""The pydantic models accept the valid table, reject the invalid one at the named field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ballast.api import LLMService, SpecError, parse_llmservice
from tests.api.cases import INVALID, VALID, Case
from tests.factories import llmservice_obj, vllm

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))


def test_the_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert len({c.id for c in INVALID + VALID}) == len(INVALID) + len(VALID)


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
def test_valid_specs_parse(case: Case) -> None:
    svc = parse_llmservice(case.obj)
    assert isinstance(svc, LLMService)
    assert [b.name for b in svc.spec.backends] == [b["name"] for b in case.obj["spec"]["backends"]]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_specs_name_the_field(case: Case) -> None:
    with pytest.raises(SpecError) as info:
        parse_llmservice(case.obj)
    paths = [p.path for p in info.value.problems]
    assert any(p == case.path or p.startswith(case.path + ".") for p in paths), paths
    assert all(p.message for p in info.value.problems)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert parse_llmservice(doc).spec.backends


def test_defaults_live_in_the_models() -> None:
    svc = parse_llmservice(llmservice_obj(vllm()))
    spec = svc.spec.to_json()
    assert spec["fallback"] == {
        "maxAttempts": 3,
        "perTryTimeoutSeconds": 60,
        "generationTimeoutSeconds": 900,
        "retryOn": ["connect-failure", "5xx", "429", "timeout"],
        "circuitBreaker": {"consecutiveFailures": 5, "openSeconds": 30},
        "healthyAfter": 2,
        "unhealthyAfter": 3,
        "whenAllUnhealthy": "tryAll",
    }
    assert spec["backends"][0]["priority"] == 0
    assert spec["backends"][0]["weight"] == 100
    assert "replicas" not in spec["backends"][0]  # unset: the engine default (1) applies in render
    assert svc.served_model_name == "chat"


def test_unquoted_429_is_normalised_to_the_string() -> None:
    svc = parse_llmservice(llmservice_obj(fallback={"retryOn": [429]}))
    assert svc.spec.fallback.to_json()["retryOn"] == ["429"]


def test_missing_metadata_name_is_a_problem_not_a_crash() -> None:
    obj = llmservice_obj()
    del obj["metadata"]["name"]
    with pytest.raises(SpecError) as info:
        parse_llmservice(obj)
    assert info.value.problems[0].path == "metadata.name"


def test_a_broken_status_does_not_reject_the_spec() -> None:
    obj = llmservice_obj() | {"status": {"phase": "Bogus", "backends": "nope"}}
    svc = parse_llmservice(obj)
    assert svc.status is None

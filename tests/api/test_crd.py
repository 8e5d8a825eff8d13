"""The generated CRD: structural, described, fresh, and in agreement with the models.

The CRD's JSON schema and its CEL rules are executed offline (jsonschema and
cel-python) on the same table of cases the models see, and must reach the same
verdict, case by case, at the same field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api import SpecError, parse_llmservice
from ballast.api.crd import crd, crd_yaml, openapi_schema
from tests.api import schema_tools as st
from tests.api.cases import INVALID, VALID, Case

ROOT = Path(__file__).parents[2]
CRD_FILE = ROOT / "crds" / "llmservices.ballast.dev.yaml"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def api_server_verdict(obj: dict[str, Any]) -> list[str]:
    """Paths the API server would reject ``obj`` at (empty: accepted), re-enacted offline."""
    schema = openapi_schema()
    problems = list(st.unknown_fields(schema, obj))
    defaulted = st.apply_defaults(schema, obj)
    problems += st.schema_errors(schema, defaulted)
    if not problems:  # CEL runs on objects that passed the schema
        problems += [path for path, _ in st.cel_violations(schema, defaulted)]
    return problems


def models_verdict(obj: dict[str, Any]) -> list[str]:
    try:
        parse_llmservice(obj)
    except SpecError as e:
        return [p.path for p in e.problems]
    return []


def test_committed_crd_is_fresh() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ is stale: run `make generate` and commit"


def test_schema_is_structural_and_described() -> None:
    schema = openapi_schema()
    problems = [
        p
        for p in st.structural_problems(schema)
        # only spec is read by CEL rules, so only spec needs bounded strings and lists
        if p.startswith("spec") or not ("maxLength" in p or "maxItems" in p)
    ]
    assert problems == ["metadata: no description"]  # the API server forbids one there


def test_crd_carries_subresource_printer_columns_and_short_name() -> None:
    spec = crd()["spec"]
    version = spec["versions"][0]
    assert spec["names"]["shortNames"] == ["llms"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Phase",
        "Ready",
        "In route",
        "Cache",
        "Age",
    ]


def test_every_cross_field_rule_is_in_the_crd() -> None:
    from ballast.api.rules import RULES

    found: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            found.extend(v["rule"] for v in node.get("x-kubernetes-validations", []))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(yaml.safe_load(CRD_FILE.read_text()))
    assert sorted(found) == sorted(r.cel for r in RULES)


def test_defaults_match_the_models() -> None:
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            defaulted = st.apply_defaults(openapi_schema(), doc)
            assert defaulted["spec"] == parse_llmservice(doc).spec.to_json(), path.name


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
def test_valid_cases_pass_the_crd(case: Case) -> None:
    assert api_server_verdict(case.obj) == []
    assert models_verdict(case.obj) == []


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_cases_fail_the_crd_at_the_same_field(case: Case) -> None:
    crd_paths = api_server_verdict(case.obj)
    model_paths = models_verdict(case.obj)
    assert crd_paths, "the CRD accepts what the models reject"
    assert model_paths, "the models accept what the CRD rejects"
    assert any(p == case.path or p.startswith(case.path) for p in crd_paths), crd_paths


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_crd(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert api_server_verdict(doc) == []

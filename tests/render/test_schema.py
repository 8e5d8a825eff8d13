"""Every rendered object passes the official Kubernetes schemas, strict, 1.30 and the newest."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast import render
from tests.factories import make_llmservice, vllm
from tests.render.conftest import ENGINES, EXAMPLES, engine_service, example_services
from tests.render.schema import VERSIONS, all_schema_errors


def test_the_schema_versions_are_1_30_and_the_newest_shipped() -> None:
    assert VERSIONS[0] == "1.30"
    assert tuple(int(x) for x in VERSIONS[1].split(".")) >= (1, 30)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_objects_pass_the_schemas(engine: str) -> None:
    assert all_schema_errors(render.objects(engine_service(engine))) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_objects_pass_the_schemas(path: Path) -> None:
    objs = [o for svc in example_services(path) for o in render.objects(svc)]
    assert objs
    assert all_schema_errors(objs) == []


def test_the_schema_check_catches_an_unknown_field() -> None:
    objs = render.objects(make_llmservice(vllm()))
    objs[2]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    errors = all_schema_errors(objs)
    assert len(errors) == len(VERSIONS)
    assert "imagePullPolicyy" in errors[0]

"""Property test: for any LLMService the API accepts, render holds its rules."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings

from ballast import render
from ballast.api import Engine, SpecError, parse_llmservice
from ballast.engines import info
from tests.podsecurity import violations
from tests.render.conftest import dump
from tests.render.schema import all_schema_errors
from tests.render.strategies import llmservices

Obj = dict[str, Any]
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_names(objs: list[Obj]) -> None:
    for obj in objs:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Service":
            assert len(name) <= 63, name
            assert DNS1035.match(name), name
        else:
            assert len(name) <= 253, name
            assert DNS1123_SUBDOMAIN.match(name), name
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63, value
            assert LABEL_VALUE.match(value), value


def _check_replicas(objs: list[Obj]) -> None:
    scaled = {
        o["spec"]["scaleTargetRef"]["name"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"
    }
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        assert ("replicas" in dep["spec"]) != (dep["metadata"]["name"] in scaled)


def _check_pods(objs: list[Obj]) -> None:
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        engine = Engine(dep["metadata"]["labels"]["app.kubernetes.io/name"])
        allowed = info(engine).pod_security_exceptions
        assert violations(dep["spec"]["template"]["spec"], allow=allowed) == []


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=llmservices())
def test_render_holds_its_rules_for_any_accepted_spec(raw: Obj) -> None:
    try:
        svc = parse_llmservice(raw)
    except SpecError:
        assume(False)
        raise
    objs = render.objects(svc)
    assert dump(objs) == dump(render.objects(parse_llmservice(raw)))  # same input, same bytes
    self_hosted = [b for b in svc.spec.backends if not b.external]
    assert sum(o["kind"] == "Deployment" for o in objs) == len(self_hosted)
    assert len({(o["kind"], o["metadata"]["name"]) for o in objs}) == len(objs)
    _check_names(objs)
    _check_replicas(objs)
    _check_pods(objs)
    for obj in objs:
        assert obj["metadata"]["annotations"][render.APPLIED_HASH_ANNOTATION] == render.object_hash(
            obj
        )
    assert all_schema_errors(objs) == []

"""What `render.objects` and the per-kind builders produce, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from ballast import render
from ballast.naming import ROUTES_KEY, ROUTES_LABEL, selector_labels
from ballast.routing import RoutingTable, table_for
from tests.factories import SELF_HOSTED, backend, external, make_llmservice, vllm
from tests.render.conftest import UID

Obj = dict[str, Any]


def kinds(objs: list[Obj]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def test_objects_come_routes_first_then_each_backend_in_spec_order() -> None:
    svc = make_llmservice(
        vllm("gpu", scaling={"maxReplicas": 3}),
        external(),
        backend("llamacpp", "cpu", replicas=2, priority=1),
    )
    assert kinds(render.objects(svc)) == [
        ("ConfigMap", "chat-routes"),
        ("Service", "chat-gpu"),
        ("Deployment", "chat-gpu"),
        ("HorizontalPodAutoscaler", "chat-gpu"),
        ("PodDisruptionBudget", "chat-gpu"),
        ("Service", "chat-cpu"),
        ("Deployment", "chat-cpu"),
        ("PodDisruptionBudget", "chat-cpu"),
    ]


def test_an_external_backend_gets_only_its_route_with_a_secret_reference() -> None:
    svc = make_llmservice(external(priority=0))
    objs = render.objects(svc)
    assert kinds(objs) == [("ConfigMap", "chat-routes")]
    table = RoutingTable.model_validate_json(objs[0]["data"][ROUTES_KEY])
    assert table.backends[0].credentials is not None
    assert table.backends[0].credentials.secret is not None
    assert table.backends[0].credentials.secret.name == "llm-keys"
    b = svc.spec.backends[0]
    assert render.hpa(svc, b) is None
    assert render.pdb(svc, b) is None
    with pytest.raises(ValueError, match="external"):
        render.deployment(svc, b)
    with pytest.raises(ValueError, match="external"):
        render.service(svc, b)


def test_scaling_gives_an_hpa_and_a_deployment_without_replicas() -> None:
    svc = make_llmservice(vllm(scaling={"minReplicas": 2, "maxReplicas": 4}))
    b = svc.spec.backends[0]
    assert "replicas" not in render.deployment(svc, b)["spec"]
    hpa = render.hpa(svc, b)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "chat-primary",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert "metrics" not in hpa["spec"]  # the HPA default (80% CPU) applies


@pytest.mark.parametrize(
    ("fields", "replicas"), [({}, 1), ({"replicas": 3}, 3), ({"replicas": 0}, 0)]
)
def test_without_scaling_the_deployment_has_replicas_and_no_hpa(fields: Obj, replicas: int) -> None:
    svc = make_llmservice(vllm(**fields))
    b = svc.spec.backends[0]
    assert render.deployment(svc, b)["spec"]["replicas"] == replicas
    assert render.hpa(svc, b) is None


def test_hpa_metrics_translate_the_shorthands_and_pass_raw_and_behavior_through() -> None:
    raw = {
        "type": "External",
        "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}},
    }
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    metrics = [
        {"type": "cpu", "targetAverageUtilization": 70},
        {"type": "memory", "targetAverageUtilization": 80},
        {"type": "pods", "name": "vllm:num_requests_waiting", "targetAverageValue": 5},
        {"raw": raw},
    ]
    svc = make_llmservice(
        vllm(scaling={"maxReplicas": 8, "metrics": metrics, "behavior": behavior})
    )
    hpa = render.hpa(svc, svc.spec.backends[0])
    assert hpa is not None
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        },
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        },
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm:num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "5"},
            },
        },
        raw,
    ]
    assert hpa["spec"]["behavior"] == behavior


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"replicas": 1}, False),
        ({"replicas": 2}, True),
        ({"scaling": {"maxReplicas": 1}}, False),
        ({"scaling": {"maxReplicas": 2}}, True),
    ],
)
def test_a_pdb_exists_only_when_the_backend_can_have_more_than_one_replica(
    fields: Obj, expected: bool
) -> None:
    svc = make_llmservice(vllm(**fields))
    pdb = render.pdb(svc, svc.spec.backends[0])
    assert (pdb is not None) is expected
    if pdb is not None:
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == {"matchLabels": selector_labels("chat", "primary")}


def test_every_child_has_labels_namespace_owner_and_applied_hash() -> None:
    svc = make_llmservice(vllm(scaling={"maxReplicas": 2}), external(), uid=UID)
    owner = render.owner_reference(svc)
    assert owner == {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "name": "chat",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for obj in render.objects(svc):
        meta = obj["metadata"]
        assert meta["namespace"] == "ai"
        assert meta["ownerReferences"] == [owner]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "ballast"
        assert meta["labels"]["app.kubernetes.io/instance"] == "chat"
        assert meta["labels"]["ballast.dev/service"] == "chat"
        assert meta["annotations"][render.APPLIED_HASH_ANNOTATION] == render.object_hash(obj)
        assert "status" not in obj


def test_without_a_uid_children_carry_no_owner_reference() -> None:
    svc = make_llmservice()
    assert render.owner_reference(svc) is None
    assert all("ownerReferences" not in o["metadata"] for o in render.objects(svc))


def test_the_routes_configmap_holds_the_routing_table_and_its_label() -> None:
    svc = make_llmservice()
    table = table_for(svc, {"primary": True})
    cm = render.routes_configmap(svc, table)
    assert cm["metadata"]["name"] == "chat-routes"
    assert cm["metadata"]["labels"][ROUTES_LABEL] == "true"
    assert cm["data"] == {ROUTES_KEY: table.dumps()}


def test_health_none_means_no_backend_is_in_the_route_yet() -> None:
    svc = make_llmservice()
    none = render.objects(svc)[0]
    assert none == render.objects(svc, {})[0]
    table = RoutingTable.model_validate_json(none["data"][ROUTES_KEY])
    assert table.all_unhealthy
    healthy = RoutingTable.model_validate_json(
        render.objects(svc, {"primary": True})[0]["data"][ROUTES_KEY]
    )
    assert [b.in_route for b in healthy.backends] == [True, False]


def test_the_applied_hash_follows_the_content_of_the_object() -> None:
    svc = make_llmservice()
    unhealthy, healthy = render.objects(svc)[0], render.objects(svc, {"primary": True})[0]
    key = render.APPLIED_HASH_ANNOTATION
    assert unhealthy["metadata"]["annotations"][key] != healthy["metadata"]["annotations"][key]
    # Workloads do not change with health, so the controller writes nothing for them.
    assert render.objects(svc)[1:] == render.objects(svc, {"primary": True})[1:]


def test_services_select_the_deployment_pods_on_the_engine_port() -> None:
    for engine in SELF_HOSTED:
        svc = make_llmservice(backend(engine))
        b = svc.spec.backends[0]
        dep, service = render.deployment(svc, b), render.service(svc, b)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"] == selector_labels("chat", engine)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        container = dep["spec"]["template"]["spec"]["containers"][0]
        (port,) = container["ports"]
        (service_port,) = service["spec"]["ports"]
        assert port["name"] == service_port["targetPort"] == "http"
        assert service_port["port"] == port["containerPort"]


def test_long_names_are_shortened_to_valid_dns_labels() -> None:
    svc = make_llmservice(vllm("b" * 63), name="a" * 200)
    for obj in render.objects(svc):
        name = obj["metadata"]["name"]
        assert len(name) <= 63
        assert name[0].isalpha()

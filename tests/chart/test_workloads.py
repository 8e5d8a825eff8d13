"""The operator and gateway Deployments: restricted pod security, arguments the real CLI parses,
probes on declared ports, image reference, leader election and namespace scoping from values."""

from __future__ import annotations

import argparse
import shlex

import pytest
import yaml

from ballast.cli import build_parser
from tests.podsecurity import violations

from .conftest import CHART, NAMESPACE, Helm, Obj, container, of_kind, one

COMPONENTS = ["operator", "gateway"]
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def parse(args: list[str]) -> argparse.Namespace:
    """The container's args as `ballast` (the image's ENTRYPOINT) parses them."""
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`ballast {shlex.join(args)}` does not parse")


def test_every_workload_passes_the_restricted_pod_security_profile(rendered: list[Obj]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert len(deployments) == 2
    for d in deployments:
        assert violations(d["spec"]["template"]["spec"]) == [], d["metadata"]["name"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_containers_are_hardened_beyond_the_profile(rendered: list[Obj], component: str) -> None:
    pod = one(rendered, "Deployment", component)["spec"]["template"]["spec"]
    ctx = container(rendered, component)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert (ctx["runAsUser"], ctx["runAsGroup"]) == (65532, 65532)
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container(rendered, component)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("component", COMPONENTS)
def test_container_args_parse_with_the_ballast_cli(rendered: list[Obj], component: str) -> None:
    args = container(rendered, component)["args"]
    command = {"operator": "run", "gateway": "gateway"}[component]
    assert args[0] == command
    assert parse(args).command == command


@pytest.mark.parametrize("component", COMPONENTS)
def test_probes_target_declared_container_ports(rendered: list[Obj], component: str) -> None:
    c = container(rendered, component)
    ports = {p["name"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ports


def test_operator_probes_hit_the_kopf_liveness_endpoint_it_serves(rendered: list[Obj]) -> None:
    c = container(rendered, "operator")
    health = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
    assert f"--liveness=http://0.0.0.0:{health}/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_gateway_probes_and_port_match_its_arguments(rendered: list[Obj]) -> None:
    c = container(rendered, "gateway")
    http = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert f"--port={http}" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_image_tag_defaults_to_app_version(default_objects: list[Obj]) -> None:
    for component in COMPONENTS:
        image = container(default_objects, component)["image"]
        assert image == f"ghcr.io/ballast-dev/ballast:{APP_VERSION}"


def test_image_digest_pins_the_image(all_objects: list[Obj]) -> None:
    image = container(all_objects, "operator")["image"]
    assert image.startswith("registry.example.com/ballast:0.1.0@sha256:")


def test_single_operator_runs_standalone_and_points_status_at_the_gateway(
    default_objects: list[Obj],
) -> None:
    args = container(default_objects, "operator")["args"]
    assert "--standalone" in args
    assert not [a for a in args if a.startswith(("--leader-elect", "--lease"))]
    assert f"--gateway-endpoint=http://ballast-gateway.{NAMESPACE}.svc/v1" in args
    assert not [a for a in args if a.startswith("--namespace")]
    services = {
        o["metadata"]["name"]: o["spec"]
        for o in default_objects
        if o["kind"] == "Service"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    }
    assert set(services) == {"ballast-gateway", "ballast-gateway-internal"}
    # the internal one is headless, with only the metrics port: the operator reads each pod's
    # demand report through its EndpointSlices, and nothing else is exposed through it
    internal = services["ballast-gateway-internal"]
    assert internal["clusterIP"] == "None"
    assert [p["name"] for p in internal["ports"]] == ["metrics"]
    env = {e["name"]: e.get("value") for e in container(default_objects, "operator")["env"]}
    assert env["BALLAST_GATEWAY_SERVICE"] == f"{NAMESPACE}/ballast-gateway-internal"


def test_a_standalone_operator_is_replaced_not_rolled(default_objects: list[Obj]) -> None:
    spec = one(default_objects, "Deployment", "operator")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_two_operator_replicas_turn_on_leader_election_with_a_lease_role(helm: Helm) -> None:
    objects = helm.objects(set_=["operator.replicaCount=2"])
    assert "strategy" not in one(objects, "Deployment", "operator")["spec"]
    args = container(objects, "operator")["args"]
    assert "--leader-elect" in args
    assert "--lease-name=ballast-operator" in args
    assert "--standalone" not in args
    (role,) = [
        o for o in objects
        if o["kind"] == "Role" and o["metadata"]["name"] == "ballast-operator-leader-election"
    ]  # fmt: skip
    assert role["metadata"]["namespace"] == NAMESPACE  # the Lease lives beside the operator
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"leases"}


def test_watch_namespaces_become_namespace_arguments(all_objects: list[Obj]) -> None:
    for component in COMPONENTS:
        args = container(all_objects, component)["args"]
        assert [a for a in args if a.startswith("--namespace")] == [
            "--namespace=ai",
            "--namespace=team-b",
        ]


def test_gateway_autoscaling_leaves_replicas_to_the_hpa(all_objects: list[Obj]) -> None:
    assert "replicas" not in one(all_objects, "Deployment", "gateway")["spec"]
    hpa = one(all_objects, "HorizontalPodAutoscaler", "gateway")
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == one(all_objects, "Deployment", "gateway")["metadata"]["name"]
    )


def test_selectors_match_pod_labels(rendered: list[Obj]) -> None:
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"][
            "labels"
        ]
        for d in of_kind(rendered, "Deployment")
    }
    selectors = [
        (o["metadata"]["labels"]["app.kubernetes.io/component"], sel)
        for o in rendered
        for sel in [
            o["spec"].get("selector") if o["kind"] == "Service" else None,
            (o["spec"].get("selector") or {}).get("matchLabels")
            if o["kind"] in {"Deployment", "PodDisruptionBudget", "ServiceMonitor"}
            else None,
            o["spec"]["podSelector"]["matchLabels"] if o["kind"] == "NetworkPolicy" else None,
        ]
        if sel
    ]
    assert selectors
    for component, sel in selectors:
        if sel.keys() <= pods[component].keys():  # ServiceMonitors select Services, same labels
            assert all(pods[component][k] == v for k, v in sel.items()), component


def test_service_monitors_scrape_named_service_ports(all_objects: list[Obj]) -> None:
    for component in COMPONENTS:
        monitor = one(all_objects, "ServiceMonitor", component)
        services = [
            o for o in all_objects
            if o["kind"] == "Service"
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]  # fmt: skip
        ports = {p["name"] for s in services for p in s["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_gateway_can_be_turned_off(helm: Helm) -> None:
    objects = helm.objects(set_=["gateway.enabled=false"])
    names = [o["metadata"]["name"] for o in objects]
    assert not [n for n in names if "gateway" in n]
    assert not [a for a in container(objects, "operator")["args"] if "--gateway-endpoint" in a]


def test_operator_settings_from_the_chart_args_match_the_values(all_objects: list[Obj]) -> None:
    from ballast.controller.cli import settings_from

    settings = settings_from(parse(container(all_objects, "operator")["args"]))
    assert settings.namespaces == ("ai", "team-b")
    assert (settings.leader_election, settings.lease_name) == (True, "llm-lease")
    assert settings.metrics_port == 9191
    assert settings.liveness == "http://0.0.0.0:8181/healthz"
    assert settings.gateway_endpoint == "https://llm.example.com/v1"
    assert (settings.log_format, settings.verbose) == ("plain", True)


def test_gateway_flags_from_the_chart_args_match_the_values(all_objects: list[Obj]) -> None:
    args = parse(container(all_objects, "gateway")["args"])
    assert args.namespaces == ["ai", "team-b"]
    assert (args.port, args.max_body_bytes, args.shutdown_timeout) == (8088, 4194304, 45.0)
    assert args.routes is None

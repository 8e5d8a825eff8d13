"""The chart's engine NetworkPolicies select the pods the operator renders and admit only this
release's gateway and operator; the gateway's client-key settings reach its arguments."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from ballast import render
from tests.factories import make_llmservice, vllm

from .conftest import NAMESPACE, REPO, Helm, Obj

ENGINE_NAMESPACES = '["ai","team-b"]'


def pod_labels(objects: list[Obj], component: str) -> dict[str, str]:
    (deployment,) = [
        o for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]  # fmt: skip
    return deployment["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def engine_policies(objects: list[Obj]) -> list[Obj]:
    return [
        o for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-engines")
    ]  # fmt: skip


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_engine_policies_select_the_operators_engine_pods_only(helm: Helm) -> None:
    objects = helm.objects(set_json=[f"watchNamespaces={ENGINE_NAMESPACES}"])
    policies = engine_policies(objects)
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["ai", "team-b"]
    svc = make_llmservice(vllm("gpu"), namespace="ai")
    engine = next(o for o in render.objects(svc) if o["kind"] == "Deployment")
    engine_pod = engine["spec"]["template"]["metadata"]["labels"]
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert matches(spec["podSelector"], engine_pod)
        for chart_component in ("gateway", "operator"):  # never the chart's own pods
            assert not matches(spec["podSelector"], pod_labels(objects, chart_component))
        (rule,) = spec["ingress"]
        peers = rule["from"]
        allowed = {
            c for c in ("gateway", "operator")
            for peer in peers
            if matches(peer["podSelector"], pod_labels(objects, c))
            and peer["namespaceSelector"]["matchLabels"]
            == {"kubernetes.io/metadata.name": NAMESPACE}
        }  # fmt: skip
        assert allowed == {"gateway", "operator"}
        assert all("podSelector" in p for p in peers)  # nobody else: no bare namespace peer


def test_engine_policies_follow_their_own_namespace_list_and_allow_list(helm: Helm) -> None:
    objects = helm.objects(
        set_json=[
            'engineNetworkPolicy.namespaces=["llm"]',
            'engineNetworkPolicy.allowNamespaces=["batch"]',
        ]
    )
    (policy,) = engine_policies(objects)
    assert policy["metadata"]["namespace"] == "llm"
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "batch"}}} in peers
    assert not engine_policies(helm.objects(set_=["engineNetworkPolicy.enabled=false"]))


def test_without_engine_namespaces_the_notes_say_no_policy_was_rendered(helm: Helm) -> None:
    assert not engine_policies(helm.objects())
    notes = helm("template", "x", str(REPO / "charts" / "ballast"), "--show-only",
                 "templates/NOTES.txt", "--namespace", NAMESPACE)  # fmt: skip
    install = helm("install", "x", str(REPO / "charts" / "ballast"), "--dry-run=client",
                   "--namespace", NAMESPACE)  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert "no engine NetworkPolicy was rendered" in install.stdout, notes.stderr


def test_gateway_requires_keys_by_default_and_serves_metrics_on_its_own_port(helm: Helm) -> None:
    objects = helm.objects()
    gateway = next(
        o for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
    )  # fmt: skip
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert "--auth=keys" in container["args"]
    assert "--metrics-port=9090" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "metrics": 9090,
    }
    (key,) = [o for o in objects if o["kind"] == "Secret"]
    assert key["metadata"]["labels"]["ballast.dev/gateway-key"] == "true"
    assert key["metadata"]["namespace"] == NAMESPACE
    value = base64.b64decode(key["data"]["key"]).decode()
    assert value.startswith("sk-ballast-")
    assert len(value) == len("sk-ballast-") + 40
    off = helm.objects(set_=["gateway.auth.enabled=false"])
    assert not [o for o in off if o["kind"] == "Secret"]
    assert (
        "--auth=none"
        in next(
            o
            for o in off
            if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
        )["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_install_bundle_requires_keys_but_ships_none(helm: Helm) -> None:
    bundle = [
        d for d in yaml.safe_load_all(Path(REPO / "manifests" / "install.yaml").read_text()) if d
    ]
    assert not [o for o in bundle if o["kind"] == "Secret"]  # a key in a public file is no key
    gateway = next(
        o for o in bundle
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
    )  # fmt: skip
    assert "--auth=keys" in gateway["spec"]["template"]["spec"]["containers"][0]["args"]

"""The engine NetworkPolicies the chart has the operator create select the pods the operator
renders and admit only this release's gateway and operator; the gateway's client-key
settings reach its arguments."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from ballast import render
from ballast.controller.settings import parse_peers
from tests.factories import make_llmservice, vllm

from .conftest import NAMESPACE, REPO, Helm, Obj


def pod_labels(objects: list[Obj], component: str) -> dict[str, str]:
    (deployment,) = [
        o for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]  # fmt: skip
    return deployment["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def operator_env(objects: list[Obj]) -> dict[str, str]:
    container = next(
        o for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")
    )["spec"]["template"]["spec"]["containers"][0]  # fmt: skip
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def engine_policy(objects: list[Obj], namespace: str = "ai") -> Obj | None:
    """The policy the chart's operator would give an LLMService in ``namespace``."""
    text = operator_env(objects).get("BALLAST_ENGINE_POLICY_PEERS")
    peers = parse_peers(text)  # the operator's own parsing: it refuses what it cannot use
    return render.engine_policy(make_llmservice(vllm("gpu"), namespace=namespace), peers)


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_engine_policies_select_the_engine_pods_and_admit_the_gateway_and_operator_only(
    helm: Helm,
) -> None:
    objects = helm.objects()
    policy = engine_policy(objects)
    assert policy is not None
    svc = make_llmservice(vllm("gpu"), namespace="ai")
    engine = next(o for o in render.objects(svc) if o["kind"] == "Deployment")
    engine_pod = engine["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == "ai"
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
    assert len(peers) == 2  # nobody else: no bare namespace peer


def test_the_allow_list_adds_namespaces_and_disabled_means_no_policy(helm: Helm) -> None:
    objects = helm.objects(set_json=['engineNetworkPolicy.allowNamespaces=["batch"]'])
    policy = engine_policy(objects)
    assert policy is not None
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "batch"}}} in peers
    assert len(peers) == 3
    no_gateway = engine_policy(helm.objects(set_=["gateway.enabled=false"]))
    assert no_gateway is not None
    assert len(no_gateway["spec"]["ingress"][0]["from"]) == 1
    off = helm.objects(set_=["engineNetworkPolicy.enabled=false"])
    assert "BALLAST_ENGINE_POLICY_PEERS" not in operator_env(off)
    assert engine_policy(off) is None


def test_the_install_bundle_protects_engines_in_every_namespace() -> None:
    bundle = list(yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()))
    policy = engine_policy([o for o in bundle if o], namespace="any-namespace")
    assert policy is not None
    assert len(policy["spec"]["ingress"][0]["from"]) == 2


def test_the_deprecated_namespace_list_is_ignored_and_the_notes_say_so(helm: Helm) -> None:
    objects = helm.objects(set_json=['engineNetworkPolicy.namespaces=["llm"]'])
    assert (
        operator_env(objects)["BALLAST_ENGINE_POLICY_PEERS"]
        == operator_env(helm.objects())["BALLAST_ENGINE_POLICY_PEERS"]
    )
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"
                and o["metadata"]["name"].endswith("-engines")]  # fmt: skip
    install = helm("install", "x", str(REPO / "charts" / "ballast"), "--dry-run=client",
                   "--namespace", NAMESPACE, "--set-json",
                   'engineNetworkPolicy.namespaces=["llm"]')  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert "engineNetworkPolicy.namespaces is deprecated and ignored" in install.stdout


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

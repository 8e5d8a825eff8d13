"""The engines' NetworkPolicy: one per LLMService with pods, selecting exactly its engine
pods and admitting only the peers the operator was given; put back when deleted or edited,
deleted once the operator is no longer given peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.controller.conftest import NS, PEERS, Cluster, emulated, hosted, remote, service_obj
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


async def test_the_policy_selects_every_engine_pod_of_the_service_and_nothing_else(
    cluster: Cluster,
) -> None:
    cluster.create(service_obj("np-a", hosted("one"), hosted("two", priority=1)))
    cluster.create(service_obj("np-b", hosted("one")))
    await cluster.wait_phase("np-a", "Ready")
    await cluster.wait_phase("np-b", "Ready")
    policy = cluster.get("networkpolicies", "np-a-engines")
    assert policy is not None
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": PEERS}]  # no ports: those peers, every port
    selector = spec["podSelector"]["matchLabels"]
    pods = {
        name: cluster.get("deployments", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("np-a-one", "np-a-two", "np-b-one")
    }
    assert {n for n, labels in pods.items() if matches(selector, labels)} == {
        "np-a-one",
        "np-a-two",
    }
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("LLMService", "np-a")


async def test_a_service_with_only_external_backends_gets_no_policy(cluster: Cluster) -> None:
    cluster.create(service_obj("np-ext", remote(cluster.fleet, "np-ext")))
    await cluster.wait_phase("np-ext", "Ready")
    assert ("NetworkPolicy", "np-ext-engines") not in cluster.children("np-ext")


async def test_a_deleted_or_widened_policy_is_put_back(cluster: Cluster) -> None:
    cluster.create(service_obj("np-drift", hosted()))
    await cluster.wait_phase("np-drift", "Ready")
    status, _ = await cluster.user("DELETE", f"{POLICIES}/np-drift-engines")
    assert status == 200
    await eventually(lambda: cluster.get("networkpolicies", "np-drift-engines"), what="restored")
    # Someone opens the engines to everyone (an empty peer admits all): closed again.
    opened = {"spec": {"ingress": [{"from": [{"podSelector": {}}]}]}}
    status, _ = await cluster.user("PATCH", f"{POLICIES}/np-drift-engines", opened, merge=True)
    assert status == 200
    await eventually(
        lambda: (
            cluster.get("networkpolicies", "np-drift-engines")["spec"]["ingress"]
            == [{"from": PEERS}]
        ),
        what="peers put back",
    )


async def test_without_peers_the_operator_deletes_the_policies_it_made(tmp_path: Path) -> None:
    async with emulated(tmp_path) as cluster:
        cluster.create(service_obj("np-off", hosted()))
        await cluster.wait_phase("np-off", "Ready", seconds=20)
        assert cluster.get("networkpolicies", "np-off-engines") is not None
        assert cluster.operator is not None
        await cluster.operator.stop()
        cluster.operator.extra_env["BALLAST_ENGINE_POLICY_PEERS"] = ""
        await cluster.operator.start()
        await eventually(
            lambda: cluster.get("networkpolicies", "np-off-engines") is None, what="deleted"
        )
        assert ("Deployment", "np-off-primary") in cluster.children("np-off")

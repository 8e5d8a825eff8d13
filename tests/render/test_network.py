"""The engines' NetworkPolicy: selects the service's engine pods only, admits the peers only."""

from __future__ import annotations

from ballast import render
from tests.factories import external, make_llmservice, vllm

PEERS = ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}},)


def labels_of_pods(objects: list[dict]) -> list[dict[str, str]]:  # type: ignore[type-arg]
    return [
        o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] == "Deployment"
    ]


def test_the_policy_selects_the_engine_pods_of_its_service_and_not_another_service() -> None:
    mine = make_llmservice(vllm("a"), vllm("b", priority=1), name="chat")
    other = make_llmservice(vllm("a"), name="chat-two")
    policy = render.engine_policy(mine, PEERS)
    assert policy is not None
    selector = policy["spec"]["podSelector"]["matchLabels"]

    def selects(labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert all(selects(p) for p in labels_of_pods(render.objects(mine)))
    assert not any(selects(p) for p in labels_of_pods(render.objects(other)))
    assert policy["spec"]["ingress"] == [{"from": list(PEERS)}]
    assert policy["metadata"]["name"] == "chat-engines"
    assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ballast"


def test_no_peers_or_no_pods_means_no_policy() -> None:
    assert render.engine_policy(make_llmservice(vllm("a")), ()) is None
    assert render.engine_policy(make_llmservice(external()), PEERS) is None


def test_the_policy_comes_before_any_pod_in_the_rendering() -> None:
    kinds = [o["kind"] for o in render.objects(make_llmservice(vllm("a")), engine_peers=PEERS)]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")

"""One child rendered alone equals the same child in the full rendering, for every example."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast.api.manifests import check_document, load_documents
from ballast.controller.desired import Rendering, desired_all, desired_one
from ballast.controller.services import entry_from
from tests.factories import external, llmservice_obj, vllm

PEERED = Rendering(engine_peers=({"podSelector": {"matchLabels": {"app": "gw"}}},))
EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))


def examples() -> list[dict[str, object]]:
    out = []
    for path in EXAMPLES:
        for doc in load_documents(path.read_text(encoding="utf-8"), str(path)):
            if check_document(doc).service is not None:
                body = doc.body
                out.append(
                    {**body, "metadata": {**body["metadata"], "uid": "u-1", "generation": 1}}
                )
    return out


@pytest.mark.parametrize("obj", examples(), ids=lambda o: str(o["metadata"]["name"]))  # type: ignore[index]
@pytest.mark.parametrize("route", [{}, {"gpu": True, "primary": True}])
@pytest.mark.parametrize("rendering", [Rendering(), PEERED], ids=["no-peers", "peers"])
def test_one_child_equals_the_full_rendering(
    obj: dict[str, object], route: dict[str, bool], rendering: Rendering
) -> None:
    entry = entry_from(obj)
    assert entry is not None
    assert entry.svc is not None
    everything = desired_all(entry.svc, route, rendering=rendering)
    assert everything
    for child in everything:
        meta = child["metadata"]
        one = desired_one(entry.svc, child["kind"], meta["name"], route, rendering=rendering)
        assert one == child
    policies = [c for c in everything if c["kind"] == "NetworkPolicy"]
    hosted = any(not b.external for b in entry.svc.spec.backends)
    assert len(policies) == (1 if rendering.engine_peers and hosted else 0)


def test_children_that_should_not_exist_are_none() -> None:
    entry = entry_from(llmservice_obj(vllm(), external(), uid="u-1"))
    assert entry is not None
    svc = entry.svc
    assert svc is not None
    assert desired_one(svc, "HorizontalPodAutoscaler", "chat-primary", {}) is None  # no scaling
    assert desired_one(svc, "Deployment", "chat-cloud", {}) is None  # external: no pods
    assert desired_one(svc, "Service", "chat-gone", {}) is None
    assert desired_one(svc, "ConfigMap", "chat-other", {}) is None
    assert desired_one(svc, "NetworkPolicy", "chat-engines", {}) is None  # no peers given
    assert desired_one(svc, "NetworkPolicy", "chat-other", {}, rendering=PEERED) is None
    assert desired_one(svc, "NetworkPolicy", "chat-engines", {}, rendering=PEERED) is not None

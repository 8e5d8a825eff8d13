"""Where probes go, what they accept, and how a missing Secret is looked up (with backoff)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from ballast.controller.kube import Kind
from ballast.controller.probes import Prober, SecretMissing, Secrets, probe_url
from tests.controller.harness import Fleet
from tests.factories import external, make_llmservice, vllm


def test_self_hosted_backends_are_probed_at_their_service() -> None:
    svc = make_llmservice(vllm(health={"path": "/ready"}))
    assert probe_url(svc, svc.spec.backends[0], {}) == "http://chat-primary.ai.svc:8000/ready"


def test_the_override_replaces_scheme_host_and_port_only() -> None:
    svc = make_llmservice(vllm())
    b = svc.spec.backends[0]
    assert (
        probe_url(svc, b, {"ai/chat/primary": "http://127.0.0.1:9"}) == "http://127.0.0.1:9/health"
    )
    template = {"*": "http://127.0.0.1:9/{namespace}/{service}/{backend}"}
    assert probe_url(svc, b, template) == "http://127.0.0.1:9/ai/chat/primary/health"


def test_external_backends_are_probed_at_models() -> None:
    svc = make_llmservice(external(url="https://api.example.com/v1/"))
    assert (
        probe_url(svc, svc.spec.backends[0], {"*": "http://x"})
        == "https://api.example.com/v1/models"
    )


class FakeKube:
    """Answers Secret GETs from a dict and counts them."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.gets = 0

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return self.secrets.get(name)


async def test_a_missing_secret_is_looked_up_again_only_after_a_growing_backoff() -> None:
    kube = FakeKube()
    secrets = Secrets(kube, retry=0.2)  # type: ignore[arg-type]
    for _ in range(5):
        with pytest.raises(SecretMissing, match="Secret keys not found"):
            await secrets.get("ai", "keys", "k")
    assert kube.gets == 1
    kube.secrets["keys"] = {"data": {"k": base64.b64encode(b"sk-1\n").decode()}}
    await asyncio.sleep(0.25)
    assert await secrets.get("ai", "keys", "k") == "sk-1"
    assert await secrets.get("ai", "keys", "k") == "sk-1"
    assert kube.gets == 2


async def test_probes_send_the_key_and_accept_only_2xx() -> None:
    kube = FakeKube()
    kube.secrets["llm-keys"] = {"data": {"openai": base64.b64encode(b"sk-test").decode()}}
    async with Fleet("sk-test") as fleet, aiohttp.ClientSession() as session:
        prober = Prober(session, Secrets(kube, 1), fleet.override, 4, 2)  # type: ignore[arg-type]
        svc = make_llmservice(vllm(), external(url=fleet.url("ai", "chat", "cloud")))
        hosted, cloud = svc.spec.backends
        assert (await prober.probe(svc, hosted)).ok
        assert (await prober.probe(svc, cloud)).ok
        fleet.set("ai/chat/cloud", healthy=False)
        result = await prober.probe(svc, cloud)
        assert (result.ok, result.reason, result.message) == (
            False,
            "ProbeFailed",
            "health check answered HTTP 503",
        )
        kube.secrets["llm-keys"] = {"data": {"openai": base64.b64encode(b"wrong").decode()}}
        fleet.set("ai/chat/cloud", healthy=True)
        assert (await prober.probe(svc, cloud)).ok  # the cached key is still used for a minute

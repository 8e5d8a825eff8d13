"""Client authentication: keys from labelled Secrets, 401/403/429, rotation, no key leaks."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from ballast.gateway import keys as keys_module
from ballast.gateway.app import GATEWAY, create_app
from ballast.gateway.config import GatewayConfig
from ballast.gateway.keys import KEY_LABEL, KeyRing
from ballast.gateway.kube import ApiConfig, KubeApi
from ballast.gateway.server import start
from ballast.gateway.watch import ConfigMapSource
from ballast.naming import ROUTES_KEY, ROUTES_LABEL
from tests.gateway.conftest import BackendFactory, GatewayFactory
from tests.gateway.fakekube import TOKEN, FakeKube
from tests.gateway.harness import GatewayUnderTest, backend_row, eventually, table

KEY_A = "sk-team-a-0123456789abcdef"
KEY_B = "sk-team-b-fedcba9876543210"
MESSAGES = [{"role": "user", "content": "hi"}]


def secret(key: str, **extra: str) -> dict[str, Any]:
    """A key Secret object as the API returns it (data base64)."""
    import base64

    data = {"key": key, **extra}
    return {
        "metadata": {"namespace": "gw", "name": f"key-{key[3:9]}"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ring(*secrets: dict[str, Any], clock: Clock | None = None) -> KeyRing:
    keys = KeyRing(clock=clock or Clock())
    keys.reset(secrets)
    return keys


def client(gw: GatewayUnderTest, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=10)


async def chat(gw: GatewayUnderTest, key: str, model: str = "chat") -> Any:
    async with client(gw, key) as c:
        return await c.chat.completions.create(model=model, messages=MESSAGES)


async def status_of(gw: GatewayUnderTest, key: str, model: str = "chat") -> int:
    try:
        await chat(gw, key, model)
    except openai.APIStatusError as e:
        return e.status_code
    return 200


async def test_missing_or_unknown_key_is_401_in_openai_shape(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway(
        [table("chat", [backend_row("primary", primary.url)])], keys=ring(secret(KEY_A))
    )
    async with aiohttp.ClientSession() as http:
        body = {"model": "chat", "messages": MESSAGES}
        async with http.post(gw.base_url + "/chat/completions", json=body) as r:
            assert r.status == 401
            error = (await r.json())["error"]
            assert error["code"] == "invalid_api_key"
            assert error["type"] == "invalid_request_error"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(gw.base_url + "/models") as r:
            assert r.status == 401
        for path in ("/healthz", "/readyz"):  # probes never need a key
            async with http.get(gw.url + path) as r:
                assert r.status == 200
    with pytest.raises(openai.AuthenticationError):
        await chat(gw, KEY_A[:-1] + "X")  # one character off
    assert (await chat(gw, KEY_A)).choices[0].message.content == "hello from primary"
    assert primary.seen
    assert len(primary.seen) == 1
    assert gw.sample("ballast_gateway_auth_denials_total", reason="missing") == 2
    assert gw.sample("ballast_gateway_auth_denials_total", reason="unknown") == 1


async def test_key_limited_to_models_gets_403_for_others(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    rows = [backend_row("primary", primary.url)]
    keys = ring(secret(KEY_A, models="chat, embed"))
    gw = await gateway([table("chat", rows), table("other", rows)], keys=keys)
    assert await status_of(gw, KEY_A, "chat") == 200
    assert await status_of(gw, KEY_A, "other") == 403
    async with client(gw, KEY_A) as c:
        listed = [m.id async for m in c.models.list()]
    assert listed == ["chat"]
    assert gw.sample("ballast_gateway_auth_denials_total", reason="model") == 1


async def test_key_over_its_rate_gets_429_with_retry_after(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    clock = Clock()
    keys = ring(secret(KEY_A, requestsPerMinute="2"), secret(KEY_B), clock=clock)
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])], keys=keys)
    assert [await status_of(gw, KEY_A) for _ in range(2)] == [200, 200]
    with pytest.raises(openai.RateLimitError) as err:
        await chat(gw, KEY_A)
    assert err.value.response.headers["Retry-After"] == "30"  # 2/min: one token per 30 s
    assert err.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert await status_of(gw, KEY_B) == 200  # another key has its own budget
    clock.now += 30
    assert await status_of(gw, KEY_A) == 200
    assert len(primary.seen) == 4


def test_the_ring_holds_digests_only_and_compares_them_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    keys = ring(secret(KEY_A, models="chat"), secret(KEY_B))
    held = repr(keys.__dict__).encode() + b"".join(
        bytes(k.digest) for k in keys._by_secret.values()
    )
    assert KEY_A.encode() not in held
    assert KEY_B.encode() not in held
    found = keys.authenticate(f"Bearer {KEY_A}")
    assert getattr(found, "id", None) == "gw/key-team-a"
    for wrong in (KEY_A[:-1], KEY_A + "0", "X" + KEY_A[1:], KEY_A.upper(), ""):
        assert getattr(keys.authenticate(f"Bearer {wrong}"), "status", None) == 401
    assert getattr(keys.authenticate(f"Basic {KEY_A}"), "status", None) == 401
    # every accepted key was confirmed by the constant-time compare, on digests, never the key
    assert compared
    assert all(KEY_A.encode() not in a + b for a, b in compared)
    digest = hashlib.sha256(KEY_A.encode()).digest()
    assert (digest, digest) in compared  # the accepted key's digest against the one held
    # too short, bad rate: ignored, not half-loaded
    keys.reset([secret("sk-short"), secret(KEY_A, requestsPerMinute="zero")])
    assert len(keys) == 0


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    fake = await FakeKube().start()
    yield fake
    await fake.stop()


async def test_keys_follow_their_secrets_without_restart_and_never_leak(
    kube: FakeKube, backend: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    primary = await backend("primary")
    await kube.put_configmap(
        "ai", "chat-routes",
        {ROUTES_KEY: json.dumps([table("chat", [backend_row("primary", primary.url)])])},
        {ROUTES_LABEL: "true"},
    )  # fmt: skip
    await kube.put_key_secret("gw", "team-a", {"key": KEY_A}, {KEY_LABEL: "true"})
    await kube.put_key_secret("gw", "unlabelled", {"key": KEY_B}, {"app": "x"})
    await kube.put_key_secret("other", "elsewhere", {"key": KEY_B}, {KEY_LABEL: "true"})
    api = KubeApi(ApiConfig(host=kube.url, token=TOKEN))
    config = GatewayConfig(host="127.0.0.1", port=0, metrics_port=0, auth_namespace="gw")
    app = create_app(config, ConfigMapSource(api, ("ai",), max_backoff=0.2), kube=api)
    running = await start(app, shutdown_timeout=1)
    gw = GatewayUnderTest(
        f"http://127.0.0.1:{running.port}", None, running.api, app[GATEWAY], running
    )  # type: ignore[arg-type]
    try:
        await eventually(
            lambda: (
                gw.state.store.current.loaded
                and gw.state.keys is not None
                and len(gw.state.keys) == 1
            )
        )
        assert await status_of(gw, KEY_A) == 200
        assert await status_of(gw, KEY_B) == 401  # unlabelled, or in another namespace
        # rotate: a new key in the same Secret; the old one stops working at once
        await kube.put_key_secret("gw", "team-a", {"key": KEY_B}, {KEY_LABEL: "true"})
        await eventually(
            lambda: (
                gw.state.keys is not None
                and gw.state.keys.authenticate(f"Bearer {KEY_B}").__class__.__name__ == "ClientKey"
            )
        )
        assert await status_of(gw, KEY_B) == 200
        assert await status_of(gw, KEY_A) == 401
        await kube.delete_key_secret("gw", "team-a")  # revoke
        await eventually(lambda: gw.state.keys is not None and len(gw.state.keys) == 0)
        assert await status_of(gw, KEY_B) == 401
        async with aiohttp.ClientSession() as http, http.get(gw.metrics_url) as r:
            metrics = await r.text()
        assert "ballast_gateway_client_keys 0.0" in metrics
    finally:
        await running.stop()
    secret_reads = [(p, q) for m, p, q in kube.requests if "/secrets" in p]
    assert secret_reads
    assert all(p == "/api/v1/namespaces/gw/secrets" for p, _ in secret_reads)
    assert all(q.get("labelSelector") == KEY_LABEL for _, q in secret_reads)
    # the keys reached no backend, no log line and no metric
    for seen in primary.seen:
        assert KEY_A not in json.dumps(seen.headers)
        assert KEY_B not in json.dumps(seen.headers)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gw/team-a" in logged  # the key's id is what the log names
    for text in (logged, metrics):
        assert KEY_A not in text
        assert KEY_B not in text
        assert KEY_A[3:] not in text
        assert KEY_B[3:] not in text


async def test_not_ready_until_the_keys_were_read(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    rows = [table("chat", [backend_row("primary", primary.url)])]
    unread = await gateway(rows, keys=KeyRing())  # the key Secrets not listed yet
    read = await gateway(rows, keys=ring(secret(KEY_A)))
    async with aiohttp.ClientSession() as http:
        async with http.get(unread.url + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["status"] == "client keys not read yet"
        async with http.get(read.url + "/readyz") as r:
            assert r.status == 200

"""In-cluster mode against a fake API server: ConfigMap watch, Secret credentials, nothing else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from ballast.gateway import kube as kube_module
from ballast.gateway.app import GATEWAY, create_app
from ballast.gateway.config import GatewayConfig
from ballast.gateway.credentials import Credentials, CredentialsUnavailable
from ballast.gateway.kube import ApiConfig, KubeApi
from ballast.gateway.snapshot import TableStore
from ballast.gateway.watch import ConfigMapSource
from ballast.naming import ROUTES_KEY, ROUTES_LABEL
from ballast.routing import CredentialRef, SecretRef
from tests.gateway.backends import free_port
from tests.gateway.conftest import BackendFactory, async_client
from tests.gateway.fakekube import TOKEN, FakeKube
from tests.gateway.harness import GatewayUnderTest, backend_row, eventually, table

LABELS = {ROUTES_LABEL: "true"}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    fake = await FakeKube().start()
    yield fake
    await fake.stop()


async def start(kube: FakeKube, namespaces: tuple[str, ...] = (), **cfg: Any) -> GatewayUnderTest:
    api = KubeApi(ApiConfig(host=kube.url, token=TOKEN))
    config = GatewayConfig(host="127.0.0.1", port=0, namespaces=namespaces, **cfg)
    app = create_app(config, ConfigMapSource(api, namespaces, max_backoff=0.2), kube=api)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    gw = GatewayUnderTest(f"http://127.0.0.1:{runner.addresses[0][1]}", None, runner, app[GATEWAY])  # type: ignore[arg-type]
    return gw


def routes(*tables: dict[str, Any]) -> dict[str, str]:
    return {ROUTES_KEY: json.dumps(list(tables))}


async def test_configmap_tables_are_served_and_followed(
    kube: FakeKube, backend: BackendFactory
) -> None:
    old, new = await backend("old"), await backend("new")
    await kube.put_configmap(
        "ai", "chat-routes", routes(table("chat", [backend_row("old", old.url)])), LABELS
    )
    await kube.put_configmap(
        "ai", "other", {ROUTES_KEY: "[]"}, {"app": "x"}
    )  # not labelled: ignored
    gw = await start(kube)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        old.behave(delay=0.5)
        async with async_client(gw) as client:
            slow = asyncio.create_task(
                client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
            )
            await asyncio.sleep(0.1)
            await kube.put_configmap(
                "ai", "chat-routes", routes(table("chat", [backend_row("new", new.url)])), LABELS
            )
            await eventually(lambda: "new" in gw.state.store.current.routes["chat"].urls, within=1)
            assert (
                await client.chat.completions.with_raw_response.create(
                    model="chat", messages=MESSAGES
                )
            ).headers["x-ballast-backend"] == "new"
            assert (await slow).headers["x-ballast-backend"] == "old"  # in flight across the swap
            await kube.put_configmap("ai", "chat-routes", {ROUTES_KEY: "{broken"}, LABELS)
            await asyncio.sleep(0.2)
            assert "chat" in gw.state.store.current.routes
            await kube.delete_configmap("ai", "chat-routes")
            await eventually(lambda: not gw.state.store.current.loaded, within=1)
    finally:
        await gw.stop()
    assert {(m, p) for m, p, _ in kube.requests} <= {("GET", "/api/v1/configmaps")}


async def test_ready_once_listed_even_with_no_configmap(
    kube: FakeKube, backend: BackendFactory
) -> None:
    b = await backend("b")
    gw = await start(kube, namespaces=("ai", "ml"))
    try:
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: gw.state.store.ready)
            async with http.get(gw.url + "/readyz") as r:
                assert r.status == 200
            await kube.put_configmap(
                "ai", "r", routes(table("chat", [backend_row("b", b.url)])), LABELS
            )
            await eventually(lambda: gw.state.store.current.loaded)
            await kube.delete_configmap("ai", "r")  # the last LLMService is gone
            await eventually(lambda: not gw.state.store.current.loaded)
            async with http.get(gw.url + "/readyz") as r:
                assert r.status == 200  # still an endpoint: clients get 404, not refused
            async with http.post(gw.base_url + "/embeddings", json={"model": "chat"}) as r:
                assert r.status == 404
    finally:
        await gw.stop()


async def test_not_ready_while_the_api_refuses_the_list(kube: FakeKube) -> None:
    api = KubeApi(ApiConfig(host=kube.url, token="wrong"))
    app = create_app(
        GatewayConfig(host="127.0.0.1", port=0), ConfigMapSource(api, max_backoff=0.1), kube=api
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await asyncio.sleep(0.3)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/readyz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 503
    finally:
        await runner.cleanup()


async def test_namespaces_scope_and_conflicts(kube: FakeKube, backend: BackendFactory) -> None:
    b = await backend("b")
    await kube.put_configmap(
        "ai", "a-routes", routes(table("chat", [backend_row("a", b.url)])), LABELS
    )
    await kube.put_configmap(
        "ai", "z-routes", routes(table("chat", [backend_row("z", b.url)])), LABELS
    )
    await kube.put_configmap(
        "other", "x", routes(table("hidden", [backend_row("x", b.url)])), LABELS
    )
    gw = await start(kube, namespaces=("ai",))
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        routes_now = gw.state.store.current.routes
        assert set(routes_now) == {"chat"}
        assert set(routes_now["chat"].urls) == {"a"}  # the older ConfigMap wins
    finally:
        await gw.stop()
    assert {p for _, p, _ in kube.requests} == {"/api/v1/namespaces/ai/configmaps"}


def _secret_creds(ns: str, name: str = "admin-token", key: str = "token") -> dict[str, Any]:
    return {"secret": {"namespace": ns, "name": name, "key": key}}


async def test_configmap_cannot_reach_outside_its_namespace(
    kube: FakeKube, backend: BackendFactory
) -> None:
    attacker = await backend("attacker")
    kube.put_secret("kube-system", "admin-token", {"token": "TOP-SECRET"})
    foreign_secret = table(
        "steal", [backend_row("x", attacker.url, credentials=_secret_creds("kube-system"))]
    )
    foreign_source = table("spoof", [backend_row("x", attacker.url)]) | {
        "source": {"namespace": "ai", "name": "chat"}
    }
    gateway_file = table(
        "file", [backend_row("x", attacker.url, credentials={"file": "/etc/passwd"})]
    )
    gateway_env = table("env", [backend_row("x", attacker.url, credentials={"env": "HOME"})])
    own = table("own", [backend_row("x", attacker.url, credentials=_secret_creds("aaa", "k", "k"))])
    for name, t in [("a", foreign_secret), ("b", foreign_source), ("c", gateway_file),
                    ("d", gateway_env), ("e", own)]:  # fmt: skip
        await kube.put_configmap("aaa", name, routes(t), LABELS)
    kube.put_secret("aaa", "k", {"k": "tenant-key"})
    gw = await start(kube)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        assert set(gw.state.store.current.routes) == {"own"}
        assert gw.sample("ballast_gateway_routes_errors_total") >= 4
        async with async_client(gw) as client:
            for model in ("steal", "spoof", "file", "env"):
                with pytest.raises(openai.NotFoundError):
                    await client.embeddings.create(model=model, input="x")
            await client.embeddings.create(model="own", input="x")
    finally:
        await gw.stop()
    assert [s.headers["Authorization"] for s in attacker.seen] == ["Bearer tenant-key"]
    assert {p for _, p, _ in kube.requests if "/secrets/" in p} == {
        "/api/v1/namespaces/aaa/secrets/k"
    }


async def test_a_newcomer_never_takes_a_served_model_over(
    kube: FakeKube, backend: BackendFactory
) -> None:
    victim, attacker = await backend("victim"), await backend("attacker")
    await kube.put_configmap(
        "ai", "chat-routes", routes(table("chat", [backend_row("primary", victim.url)])), LABELS
    )
    gw = await start(kube)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        # created later, in a namespace that sorts first
        evil = routes(table("chat", [backend_row("x", attacker.url)]))
        await kube.put_configmap("aaa", "innocent", evil, LABELS)
        await eventually(lambda: gw.sample("ballast_gateway_routes_errors_total") == 1)
        await kube.put_configmap("aaa", "innocent", evil, LABELS)  # an update changes nothing
        await asyncio.sleep(0.1)
        assert set(gw.state.store.current.routes["chat"].urls) == {"primary"}
        assert gw.sample("ballast_gateway_routes_errors_total") == 1  # reported once
    finally:
        await gw.stop()
    fresh = await start(kube)  # a restarted gateway makes the same choice (oldest first)
    try:
        await eventually(lambda: fresh.state.store.current.loaded)
        assert set(fresh.state.store.current.routes["chat"].urls) == {"primary"}
        async with async_client(fresh) as client:
            raw = await client.embeddings.with_raw_response.create(model="chat", input="x")
        assert raw.headers["x-ballast-backend"] == "primary"
    finally:
        await fresh.stop()
    assert attacker.seen == []
    # the owner gone, the other ConfigMap serves the model
    await kube.delete_configmap("ai", "chat-routes")
    again = await start(kube)
    try:
        await eventually(lambda: again.state.store.current.loaded)
        assert set(again.state.store.current.routes["chat"].urls) == {"x"}
    finally:
        await again.stop()


async def test_expired_watch_relists(kube: FakeKube, backend: BackendFactory) -> None:
    b = await backend("b")
    kube.expire_watches = True
    gw = await start(kube)
    try:
        await kube.put_configmap(
            "ai", "r", routes(table("chat", [backend_row("b", b.url)])), LABELS
        )
        await eventually(lambda: gw.state.store.current.loaded, within=2)
    finally:
        await gw.stop()


async def test_secret_credentials_sent_upstream_and_refreshed(
    kube: FakeKube, backend: BackendFactory
) -> None:
    cloud = await backend("cloud")
    kube.put_secret("ai", "llm-keys", {"openai": "sk-first\n"})
    creds = {"secret": {"namespace": "ai", "name": "llm-keys", "key": "openai"}}
    row = backend_row("cloud", cloud.url, credentials=creds)
    await kube.put_configmap("ai", "chat-routes", routes(table("chat", [row])), LABELS)
    gw = await start(kube, secret_ttl=0.3)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        async with async_client(gw) as client:
            await asyncio.gather(
                *(client.embeddings.create(model="chat", input="x") for _ in range(5))
            )
            kube.put_secret("ai", "llm-keys", {"openai": "sk-second"})
            await asyncio.sleep(0.4)
            await client.embeddings.create(model="chat", input="x")  # stale: starts a refresh
            await eventually(lambda: len([r for r in kube.requests if "/secrets/" in r[1]]) == 2)
            await client.embeddings.create(model="chat", input="x")
    finally:
        await gw.stop()
    keys = [s.headers["Authorization"] for s in cloud.seen]
    assert keys == ["Bearer sk-first"] * 6 + ["Bearer sk-second"]
    secret_gets = [r for r in kube.requests if "/secrets/" in r[1]]
    assert len(secret_gets) == 2  # cached: one get per TTL, not per request
    assert {r[1] for r in secret_gets} == {"/api/v1/namespaces/ai/secrets/llm-keys"}


async def test_secret_refresh_during_an_api_outage_never_delays_requests(
    kube: FakeKube,
) -> None:
    now = [0.0]
    api = KubeApi(ApiConfig(host=kube.url, token=TOKEN))
    await api.start()
    creds = Credentials(api, ttl=60, clock=lambda: now[0])
    ref = CredentialRef(secret=SecretRef(namespace="ai", name="llm-keys", key="openai"))

    def gets() -> int:
        return len([r for r in kube.requests if "/secrets/" in r[1]])

    try:
        kube.put_secret("ai", "llm-keys", {"openai": "sk-1"})
        assert await creds.authorization(ref) == "Bearer sk-1"
        kube.secret_delay, kube.secret_status = 0.5, 503  # the API server is struggling
        now[0] = 61
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            assert await creds.authorization(ref) == "Bearer sk-1"
        assert loop.time() - started < 0.2  # cached value at once, no inline API call
        await eventually(lambda: gets() == 2)  # one refresh in the background, not 20
        await asyncio.sleep(0.6)  # it failed
        for _ in range(5):
            assert await creds.authorization(ref) == "Bearer sk-1"
        await asyncio.sleep(0.1)
        assert gets() == 2  # backing off: no new read yet
        now[0] = 63  # past the backoff
        kube.secret_delay, kube.secret_status = 0.0, 200
        kube.put_secret("ai", "llm-keys", {"openai": "sk-2"})
        assert await creds.authorization(ref) == "Bearer sk-1"
        await eventually(lambda: gets() == 3)
        await asyncio.sleep(0.05)
        assert await creds.authorization(ref) == "Bearer sk-2"
    finally:
        await creds.close()
        await api.close()


async def test_first_secret_read_is_awaited_and_a_failure_backs_off(kube: FakeKube) -> None:
    now = [0.0]
    api = KubeApi(ApiConfig(host=kube.url, token=TOKEN))
    await api.start()
    creds = Credentials(api, ttl=60, clock=lambda: now[0])
    ref = CredentialRef(secret=SecretRef(namespace="ai", name="late", key="k"))
    try:
        for _ in range(3):
            with pytest.raises(CredentialsUnavailable):
                await creds.authorization(ref)
        assert len([r for r in kube.requests if "/secrets/" in r[1]]) == 1
        kube.put_secret("ai", "late", {"k": "v"})
        now[0] = 1.5  # past the first backoff (1 s)
        assert await creds.authorization(ref) == "Bearer v"
    finally:
        await creds.close()
        await api.close()


async def test_missing_secret_fails_over(kube: FakeKube, backend: BackendFactory) -> None:
    cloud, local = await backend("cloud"), await backend("local")
    creds = {"secret": {"namespace": "ai", "name": "absent", "key": "k"}}
    rows = [
        backend_row("cloud", cloud.url, credentials=creds),
        backend_row("local", local.url, priority=1),
    ]
    await kube.put_configmap("ai", "r", routes(table("chat", rows)), LABELS)
    gw = await start(kube)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        async with async_client(gw) as client:
            raw = await client.embeddings.with_raw_response.create(model="chat", input="x")
    finally:
        await gw.stop()
    assert raw.headers["x-ballast-backend"] == "local"
    assert cloud.seen == []


async def test_give_up_answers_keep_internal_details_in_the_log(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    rows = [
        backend_row("local", f"http://127.0.0.1:{port}/v1"),
        backend_row("cloud", "http://127.0.0.1:1/v1", priority=1,
                    credentials=_secret_creds("ai", "llm-keys", "openai")),
    ]  # fmt: skip
    await kube.put_configmap("ai", "r", routes(table("chat", rows)), LABELS)
    gw = await start(kube)
    try:
        await eventually(lambda: gw.state.store.current.loaded)
        async with (
            aiohttp.ClientSession() as http,
            http.post(gw.base_url + "/embeddings", json={"model": "chat", "input": "x"}) as r,
        ):
            status, text, attempts = r.status, await r.text(), r.headers["x-ballast-attempts"]
    finally:
        await gw.stop()
    assert (status, attempts) == (503, "2")
    error = json.loads(text)["error"]
    assert error["code"] == "backend_unavailable"
    assert error["message"] == "model chat: no backend could be reached (2 attempt(s))"
    for detail in ("llm-keys", "secret", "127.0.0.1", str(port), "Errno", "connect to"):
        assert detail not in text
    logged = caplog.text
    assert "secret ai/llm-keys key openai" in logged
    assert f"127.0.0.1:{port}" in logged


def test_in_cluster_config_uses_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("tok")
    monkeypatch.setattr(kube_module, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = kube_module.in_cluster_config()
    assert cfg is not None
    assert cfg.host == "https://[fd00::1]:443"
    assert cfg.token_file == str(tmp_path / "token")
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert kube_module.in_cluster_config() is None


async def test_kubeconfig_reaches_the_api(kube: FakeKube, tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": kube.url}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    api = KubeApi(kube_module.kubeconfig_config(str(path)))
    await api.start()
    try:
        kube.put_secret("ai", "s", {"k": "v"})
        assert await api.get_secret_key("ai", "s", "k") == "v"
    finally:
        await api.close()


async def test_source_survives_unreadable_token_and_malformed_events(
    kube: FakeKube, backend: BackendFactory, tmp_path: Path
) -> None:
    b = await backend("b")
    token = tmp_path / "token"  # not there yet: the kubelet has not mounted it
    api = KubeApi(ApiConfig(host=kube.url, token_file=str(token)))
    app = create_app(
        GatewayConfig(host="127.0.0.1", port=0),
        ConfigMapSource(api, max_backoff=0.1),
        kube=api,
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state = app[GATEWAY]
    try:
        await kube.put_configmap(
            "ai", "r", routes(table("chat", [backend_row("b", b.url)])), LABELS
        )
        await asyncio.sleep(0.3)
        assert not state.store.current.loaded
        token.write_text(TOKEN)
        await eventually(lambda: state.store.current.loaded)
        for junk in (b'"just a string"', b'{"type": "ADDED", "object": 3}',
                     b'{"type": "ADDED", "object": {"metadata": 3}}'):  # fmt: skip
            await kube.emit_raw(junk)
        await kube.put_configmap(
            "ai", "s", routes(table("later", [backend_row("b", b.url)])), LABELS
        )
        await eventually(lambda: "later" in state.store.current.routes)
        assert not state.tasks[0].done()
    finally:
        await runner.cleanup()


class DyingSource:
    async def run(self, store: TableStore) -> None:
        raise RuntimeError("boom")


async def test_healthz_fails_once_the_table_source_died() -> None:
    app = create_app(GatewayConfig(host="127.0.0.1", port=0), DyingSource())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await eventually(lambda: app[GATEWAY].tasks[0].done())
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 503
    finally:
        await runner.cleanup()

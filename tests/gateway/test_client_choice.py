"""`--upstream-client auto` (the default): h1 for plain HTTP, aiohttp (proxy-aware) for HTTPS."""

from __future__ import annotations

import pytest
from aiohttp import web
from yarl import URL

from ballast.gateway.aioclient import AiohttpClient, EnvProxies
from ballast.gateway.app import SchemeClient, upstream_client
from ballast.gateway.config import GatewayConfig
from ballast.gateway.h1 import Pool


async def test_auto_is_the_default_and_splits_by_scheme() -> None:
    client = upstream_client(GatewayConfig())
    try:
        assert isinstance(client, SchemeClient)
        assert isinstance(client.plain, Pool)
        assert isinstance(client.tls, AiohttpClient)
        assert isinstance(client.tls.env_proxies, EnvProxies)  # HTTPS_PROXY / NO_PROXY honoured
    finally:
        await client.close()


async def test_auto_serves_plain_http_through_h1(unused_tcp_port: int) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    client = upstream_client(GatewayConfig(upstream_client="auto"))
    try:
        resp = await client.post(URL(f"http://127.0.0.1:{unused_tcp_port}/v1/echo"), b"{}", [])
        assert resp.status == 200
        assert await resp.read() == b"{}"
        resp.release()
    finally:
        await client.close()
        await runner.cleanup()


def test_env_proxies_follow_https_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", ".svc,.cluster.local,localhost")
    proxies = EnvProxies()
    assert proxies.for_url("https", "api.openai.com") == "http://proxy.internal:3128"
    assert proxies.for_url("https", "chat-primary.ai.svc") is None
    assert proxies.for_url("http", "chat-primary.ai.svc") is None  # no HTTP_PROXY set

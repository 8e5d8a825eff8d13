"""The OpenAI surface through the gateway: every endpoint, streaming, model rewrite."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client, sync_client
from tests.gateway.harness import backend_row, eventually, table


async def test_chat_completion_reaches_backend_with_rewritten_model(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with async_client(gw) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"top_k": 7, "guided_json": {"type": "object"}},
        )
    answer = raw.parse()
    assert answer.choices[0].message.content == "hello from primary"
    assert raw.headers["x-ballast-backend"] == "primary"
    assert raw.headers["x-ballast-attempts"] == "1"
    seen = primary.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "primary-upstream"
    assert seen.body["top_k"] == 7
    assert seen.body["guided_json"] == {"type": "object"}
    assert seen.body["messages"] == [{"role": "user", "content": "hi"}]


async def test_sync_client_gets_completions_and_embeddings(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])

    def call() -> tuple[str, list[float]]:
        with sync_client(gw) as client:
            text = client.completions.create(model="chat", prompt="once upon").choices[0].text
            vector = client.embeddings.create(model="chat", input="x").data[0].embedding
            return text, vector

    text, vector = await asyncio.to_thread(call)
    assert text == "hello from primary"
    assert vector == [0.25, 0.5]
    assert [s.path for s in primary.seen] == ["/v1/completions", "/v1/embeddings"]
    assert {s.body["model"] for s in primary.seen} == {"primary-upstream"}


async def test_stream_arrives_chunk_by_chunk(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    primary.behave(chunks=3, chunk_delay=0.2)
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    parts: list[str] = []
    async with async_client(gw) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for chunk in stream:
            arrivals.append(loop.time())
            parts.append(chunk.choices[0].delta.content or "")
    assert "".join(parts) == "primary-0 primary-1 primary-2 "
    # not buffered: the first chunk came well before the last was produced
    assert arrivals[-1] - arrivals[0] > 0.3


async def test_sync_stream(backend: BackendFactory, gateway: GatewayFactory) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])

    def call() -> str:
        with sync_client(gw) as client:
            stream = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream)

    assert await asyncio.to_thread(call) == "primary-0 primary-1 primary-2 "


async def test_models_lists_every_table(backend: BackendFactory, gateway: GatewayFactory) -> None:
    primary = await backend("primary")
    gw = await gateway(
        [table(m, [backend_row("primary", primary.url)]) for m in ("chat", "meta/llama-3", "embed")]
    )
    async with async_client(gw) as client:
        models = [m.id async for m in client.models.list()]
        one = await client.models.retrieve("meta/llama-3")
    assert sorted(models) == ["chat", "embed", "meta/llama-3"]
    assert one.id == "meta/llama-3"


async def test_probes_and_metrics(backend: BackendFactory, gateway: GatewayFactory) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with async_client(gw) as client:
        await client.embeddings.create(model="chat", input="x")
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(gw.url + path) as r:
                assert r.status == 200, path
        async with http.get(gw.url + "/metrics") as r:
            assert r.status == 404  # never on the API port
        async with http.get(gw.metrics_url) as r:
            text = await r.text()
    assert 'ballast_gateway_requests_total{backend="primary",model="chat",outcome="ok"} 1.0' in text
    for name in (
        "request_duration_seconds",
        "time_to_first_token_seconds",
        "in_flight",
        "circuit_open",
    ):
        assert f"ballast_gateway_{name}" in text


async def test_ready_with_zero_tables_unknown_models_are_404(gateway: GatewayFactory) -> None:
    gw = await gateway("[]")
    async with aiohttp.ClientSession() as http:
        await eventually(lambda: gw.state.store.ready)
        async with http.get(gw.url + "/readyz") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ready", "models": 0}
        async with http.post(gw.base_url + "/chat/completions", json={"model": "chat"}) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "model_not_found"


async def test_not_ready_until_the_routes_file_was_read(gateway: GatewayFactory) -> None:
    gw = await gateway("{broken")
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(0.2)
        async with http.get(gw.url + "/readyz") as r:
            assert r.status == 503
            assert r.headers["x-ballast-backend"] == "none"
        gw.write("[]")
        await eventually(lambda: gw.state.store.ready)
        async with http.get(gw.url + "/readyz") as r:
            assert r.status == 200

"""Bad requests get the documented 4xx with an OpenAI error body, and the gateway keeps serving."""

from __future__ import annotations

import gzip

import aiohttp
import openai
import pytest

from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, table

CASES = [
    # (content type, body, status, code)
    ("application/json", b'{"model": "chat", "messages": [', 400, "invalid_request"),
    ("application/json", b'["not", "an", "object"]', 400, "invalid_request"),
    ("application/json", b'{"messages": []}', 400, "invalid_request"),
    ("application/json", b'{"model": 42}', 400, "invalid_request"),
    ("application/json", b"\xff\xfe garbage", 400, "invalid_request"),
    ("text/plain", b'{"model": "chat"}', 415, "unsupported_media_type"),
    ("application/x-www-form-urlencoded", b"model=chat", 415, "unsupported_media_type"),
    ("application/json", b'{"model": "nope", "messages": []}', 404, "model_not_found"),
    (
        "application/json",
        b'{"model": "chat", "pad": "' + b"x" * 2000 + b'"}',
        413,
        "request_too_large",
    ),
]


@pytest.mark.parametrize(("content_type", "body", "status", "code"), CASES)
async def test_bad_request_gets_openai_error_and_gateway_keeps_serving(
    backend: BackendFactory,
    gateway: GatewayFactory,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])], max_body_bytes=1024)
    async with aiohttp.ClientSession() as http:
        url = gw.base_url + "/chat/completions"
        async with http.post(url, data=body, headers={"Content-Type": content_type}) as r:
            assert r.status == status
            error = (await r.json())["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == code
            assert error["type"] == "invalid_request_error"
            assert r.headers["x-ballast-backend"] == "none"
            assert r.headers["x-ballast-attempts"] == "0"
    assert primary.seen == []
    async with async_client(gw) as client:
        answer = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "hello from primary"


async def test_unknown_model_raises_not_found_in_sdk(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with async_client(gw) as client:
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.chat.completions.create(model="gpt-9", messages=[])
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-9")


async def test_unknown_path_and_method_are_openai_errors(
    gateway: GatewayFactory, backend: BackendFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.base_url + "/nothing") as r:
            assert r.status == 404
            assert "error" in await r.json()
        async with http.get(gw.base_url + "/chat/completions") as r:
            assert r.status == 405
            assert "error" in await r.json()


async def test_body_without_content_type_is_read_as_json(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http,
        http.post(gw.base_url + "/embeddings", data=b'{"model":"chat","input":"x"}') as r,
    ):
        assert r.status == 200
    assert primary.seen[0].headers["Content-Type"] == "application/json"


async def test_compressed_request_body_is_forwarded_plain(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    body = gzip.compress(b'{"model": "chat", "input": "x"}')
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.base_url + "/embeddings", data=body, headers=headers) as r,
    ):
        assert r.status == 200
    assert "Content-Encoding" not in primary.seen[0].headers
    assert primary.seen[0].body == {"model": "primary-upstream", "input": "x"}

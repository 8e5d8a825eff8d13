"""Headers both ways: what reaches the backend, what reaches the client."""

from __future__ import annotations

import aiohttp
import pytest

from tests.gateway.conftest import BackendFactory, GatewayFactory
from tests.gateway.harness import backend_row, table

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {
    "Authorization": "Bearer client-key-never-upstream",
    "Connection": "keep-alive, X-Hop-Custom",
    "X-Hop-Custom": "named in Connection",
    "Keep-Alive": "timeout=5",
    "TE": "trailers",
    "x-api-key": "client-x-api-key",
    "api-key": "client-azure-key",
    "OpenAI-Organization": "org-client",
    "OpenAI-Project": "proj-client",
    "X-Forwarded-For": "203.0.113.66",
    "Forwarded": "for=203.0.113.66",
    "X-Request-Id": "kept-1",
}


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_TEST_PROVIDER_KEY", "sk-provider")


async def test_requests_upstream_carry_no_client_credentials_or_hop_headers(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    keyed, plain = await backend("keyed"), await backend("plain")
    gw = await gateway([
        table("chat", [backend_row("keyed", keyed.url, credentials={"env": "BALLAST_TEST_PROVIDER_KEY"})]),
        table("self", [backend_row("plain", plain.url)]),
    ])  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for model in ("chat", "self"):
            async with http.post(
                gw.base_url + "/chat/completions",
                json=BODY | {"model": model},
                headers=CLIENT_HEADERS,
            ) as r:
                assert r.status == 200
                assert r.headers["Server"] == "ballast"
    with_key = {k.lower(): v for k, v in keyed.seen[0].headers.items()}
    without = {k.lower(): v for k, v in plain.seen[0].headers.items()}
    assert with_key["authorization"] == "Bearer sk-provider"
    assert "authorization" not in without
    for sent in (with_key, without):
        for name in ("x-hop-custom", "keep-alive", "te", "x-api-key", "api-key", "forwarded"):
            assert name not in sent, name
        assert sent["x-forwarded-for"] == "127.0.0.1"  # the gateway's view, not the client's
        assert sent["x-request-id"] == "kept-1"
    # billing selectors would pick the account the gateway's own key is charged to
    assert "openai-organization" not in with_key
    assert "openai-project" not in with_key
    assert without["openai-organization"] == "org-client"


async def test_retry_after_and_rate_limit_headers_survive_a_passed_through_error(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    primary.behave(
        "status",
        status=429,
        headers={"Retry-After": "7", "x-ratelimit-remaining-requests": "0", "X-Internal": "no"},
    )
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.base_url + "/chat/completions", json=BODY) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "7"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert "X-Internal" not in r.headers
            assert r.headers["x-ballast-backend"] == "primary"
            assert r.headers["Server"] == "ballast"
        async with http.get(gw.url + "/nowhere") as r:
            assert r.status == 404
            assert r.headers["Server"] == "ballast"  # no versions, on every answer

"""Failover through real backends: refused, 5xx, timeouts, 429/400 policy, breakers, broken streams."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.gateway.backends import free_port
from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, eventually, table

MESSAGES = [{"role": "user", "content": "hi"}]


async def chat(gw, **kw):  # type: ignore[no-untyped-def]
    async with async_client(gw) as client:
        return await client.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, **kw
        )


@pytest.fixture(params=["h1", "aiohttp"])
def client_kind(request: pytest.FixtureRequest) -> str:
    """Every failover behaviour holds with either upstream HTTP client."""
    return str(request.param)


async def two_tier(
    backend: BackendFactory,
    gateway: GatewayFactory,
    primary_url: str | None = None,
    client: str = "h1",
    **fallback,
):  # type: ignore[no-untyped-def]
    primary = await backend("primary")
    cloud = await backend("cloud")
    rows = [
        backend_row("primary", primary_url or primary.url),
        backend_row("cloud", cloud.url, priority=1),
    ]
    gw = await gateway([table("chat", rows, **fallback)], upstream_client=client)
    return primary, cloud, gw


async def test_refused_connection_falls_back(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    _, cloud, gw = await two_tier(
        backend, gateway, primary_url=f"http://127.0.0.1:{free_port()}/v1", client=client_kind
    )
    raw = await chat(gw)
    assert raw.parse().choices[0].message.content == "hello from cloud"
    assert raw.headers["x-ballast-backend"] == "cloud"
    assert raw.headers["x-ballast-attempts"] == "2"
    assert cloud.seen[0].body["model"] == "cloud-upstream"
    assert gw.sample("ballast_gateway_fallbacks_total", model="chat") == 1
    assert gw.sample("ballast_gateway_retries_total", model="chat") == 1


@pytest.mark.parametrize("mode", ["status", "drop"])
async def test_server_error_or_dropped_connection_falls_back(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str, mode: str
) -> None:
    primary, _, gw = await two_tier(backend, gateway, client=client_kind)
    primary.behave(mode, status=503)
    raw = await chat(gw)
    assert raw.headers["x-ballast-backend"] == "cloud"
    assert raw.headers["x-ballast-attempts"] == "2"
    assert len(primary.seen) == 1


async def test_stream_not_started_in_time_falls_back(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, _, gw = await two_tier(backend, gateway, client=client_kind, perTryTimeoutSeconds=1)
    primary.behave(delay=5)
    raw = await chat(gw, stream=True)
    assert raw.headers["x-ballast-backend"] == "cloud"
    assert raw.headers["x-ballast-attempts"] == "2"


async def test_every_attempt_timing_out_is_504(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, cloud, gw = await two_tier(
        backend, gateway, client=client_kind, perTryTimeoutSeconds=1
    )
    primary.behave(delay=3)
    cloud.behave(delay=3)
    with pytest.raises(openai.APIStatusError) as err:
        await chat(gw, stream=True)
    assert err.value.status_code == 504
    assert err.value.response.headers["x-ballast-attempts"] == "2"
    assert err.value.body["code"] == "upstream_timeout"  # type: ignore[index]


async def test_429_retried_only_when_listed(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, _, gw = await two_tier(backend, gateway, client=client_kind, retryOn=["429"])
    primary.behave("status", status=429)
    assert (await chat(gw)).headers["x-ballast-backend"] == "cloud"

    primary2, cloud2, gw2 = await two_tier(
        backend, gateway, client=client_kind, retryOn=["5xx", "connect-failure"]
    )
    primary2.behave("status", status=429)
    with pytest.raises(openai.RateLimitError) as err:
        await chat(gw2)
    assert err.value.response.headers["x-ballast-backend"] == "primary"
    assert "primary says 429" in str(err.value)
    assert cloud2.seen == []


async def test_400_is_never_retried(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, cloud, gw = await two_tier(backend, gateway, client=client_kind)
    primary.behave("status", status=400)
    with pytest.raises(openai.BadRequestError) as err:
        await chat(gw)
    assert err.value.response.headers["x-ballast-attempts"] == "1"
    assert cloud.seen == []
    # the client's mistake does not count against the backend
    assert gw.state.board.get("chat", "primary").state == "closed"


async def test_5xx_not_listed_goes_straight_back(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, cloud, gw = await two_tier(
        backend, gateway, client=client_kind, retryOn=["connect-failure"]
    )
    primary.behave("status", status=500)
    with pytest.raises(openai.InternalServerError):
        await chat(gw)
    assert cloud.seen == []


async def test_max_attempts_bounds_the_tries(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    a, b, c = await backend("a"), await backend("b"), await backend("c")
    for x in (a, b, c):
        x.behave("status", status=502)
    rows = [backend_row(x.name, x.url, priority=i) for i, x in enumerate((a, b, c))]
    gw = await gateway([table("chat", rows, maxAttempts=2)])
    with pytest.raises(openai.APIStatusError) as err:
        await chat(gw)
    assert err.value.status_code == 502  # the last upstream answer, passed through
    assert err.value.response.headers["x-ballast-attempts"] == "2"
    assert (len(a.seen), len(b.seen), len(c.seen)) == (1, 1, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_then_closes_after_open_seconds(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    clock = FakeClock()
    primary = await backend("primary")
    cloud = await backend("cloud")
    rows = [backend_row("primary", primary.url), backend_row("cloud", cloud.url, priority=1)]
    breaker = {"consecutiveFailures": 3, "openSeconds": 30}
    gw = await gateway([table("chat", rows, circuitBreaker=breaker)], clock=clock)
    primary.behave("status", status=503)
    for _ in range(3):
        assert (await chat(gw)).headers["x-ballast-attempts"] == "2"
    assert gw.sample("ballast_gateway_circuit_open", model="chat", backend="primary") == 1
    # open: the primary gets no traffic at all
    for _ in range(5):
        raw = await chat(gw)
        assert raw.headers["x-ballast-backend"] == "cloud"
        assert raw.headers["x-ballast-attempts"] == "1"
    assert len(primary.seen) == 3
    # the primary recovers; after openSeconds one trial closes the circuit
    primary.behave()
    clock.now += 31
    assert (await chat(gw)).headers["x-ballast-backend"] == "primary"
    assert gw.sample("ballast_gateway_circuit_open", model="chat", backend="primary") == 0
    assert (await chat(gw)).headers["x-ballast-backend"] == "primary"


async def test_stream_breaking_after_first_chunk_raises(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, cloud, gw = await two_tier(backend, gateway, client=client_kind)
    primary.behave("break", chunks=5, break_after=1, chunk_delay=0.05)
    received: list[str] = []
    async with async_client(gw) as client:
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)

        async def consume() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIError, match="broke off"):
            await consume()
    assert received == ["primary-0 "]
    assert cloud.seen == []  # the client had a byte: no retry
    assert (
        gw.sample(
            "ballast_gateway_requests_total", model="chat", backend="primary", outcome="broken"
        )
        == 1
    )


async def test_stream_broken_before_first_byte_is_retried(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str
) -> None:
    primary, _, gw = await two_tier(backend, gateway, client=client_kind)
    primary.behave("break", break_after=0)
    async with async_client(gw) as client:
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "cloud-0 cloud-1 cloud-2 "


async def test_reject_policy_answers_503_without_trying(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    rows = [backend_row("primary", primary.url, inRoute=False)]
    gw = await gateway([table("chat", rows, whenAllUnhealthy="reject") | {"allUnhealthy": True}])
    with pytest.raises(openai.APIStatusError) as err:
        await chat(gw)
    assert err.value.status_code == 503
    assert err.value.body["code"] == "no_backend_available"  # type: ignore[index]
    assert primary.seen == []


async def test_try_all_policy_uses_out_of_route_backends(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    cloud = await backend("cloud")
    rows = [
        backend_row("primary", primary.url, inRoute=False),
        backend_row("cloud", cloud.url, priority=1, inRoute=False),
    ]
    gw = await gateway([table("chat", rows) | {"allUnhealthy": True}])
    assert (await chat(gw)).headers["x-ballast-backend"] == "primary"


async def test_out_of_route_backend_gets_no_traffic(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    cloud = await backend("cloud")
    rows = [
        backend_row("primary", primary.url, inRoute=False),
        backend_row("cloud", cloud.url, priority=1),
    ]
    gw = await gateway([table("chat", rows)])
    results = await asyncio.gather(*(chat(gw) for _ in range(5)))
    assert {r.headers["x-ballast-backend"] for r in results} == {"cloud"}
    assert primary.seen == []


async def test_client_leaving_mid_stream_closes_the_upstream_request(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary, _, gw = await two_tier(backend, gateway)
    primary.behave(chunks=50, chunk_delay=0.05)
    async with async_client(gw) as client:
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        async for _ in stream:
            break
        await stream.close()

    def closed() -> bool:
        return (
            gw.sample(
                "ballast_gateway_requests_total",
                model="chat",
                backend="primary",
                outcome="client_closed",
            )
            == 1
        )

    await eventually(closed)
    assert gw.state.metrics.in_flight == 0
    assert gw.state.board.get("chat", "primary").state == "closed"  # not the backend's fault


class ChunkedJson:
    """A raw backend answering JSON with chunked encoding (as Ollama does above ~2 KB)."""

    def __init__(self, pieces: int, break_off: bool) -> None:
        self.pieces, self.break_off = pieces, break_off
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        body = json.dumps({"object": "list", "model": "m", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5] * 400}]}).encode()  # fmt: skip
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        step = len(body) // self.pieces + 1
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
            if self.break_off:
                writer.transport.abort()  # the engine died mid-answer
                return
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.mark.parametrize("break_off", [True, False])
async def test_chunked_json_answer_is_read_whole_so_a_broken_one_is_retried(
    backend: BackendFactory, gateway: GatewayFactory, client_kind: str, break_off: bool
) -> None:
    raw = ChunkedJson(pieces=4, break_off=break_off)
    _, _, gw = await two_tier(backend, gateway, primary_url=await raw.start(), client=client_kind)
    try:
        async with async_client(gw) as client:
            answer = await client.embeddings.with_raw_response.create(model="chat", input="x")
    finally:
        await raw.stop()
    if break_off:
        assert answer.headers["x-ballast-backend"] == "cloud"
        assert answer.headers["x-ballast-attempts"] == "2"
    else:
        assert answer.headers["x-ballast-backend"] == "primary"
        assert answer.parse().data[0].embedding == [0.5] * 400
        assert answer.headers["content-length"]  # passed on whole, not re-chunked


async def test_chunked_json_above_the_buffer_limit_streams_on(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    raw = ChunkedJson(pieces=8, break_off=False)
    gw = await gateway(
        [table("chat", [backend_row("primary", await raw.start())])], buffer_response_bytes=1000
    )
    try:
        async with async_client(gw) as client:
            answer = await client.embeddings.with_raw_response.create(model="chat", input="x")
    finally:
        await raw.stop()
    assert answer.parse().data[0].embedding == [0.5] * 400
    assert "content-length" not in answer.headers  # streamed once past the limit

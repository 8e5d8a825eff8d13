"""A long answer is not a backend failure: the two timeouts and the circuit breaker.

``perTryTimeoutSeconds`` bounds accepting a request (connecting; a stream's first byte);
``generationTimeoutSeconds`` bounds a whole non-streamed answer, and running past it is
answered 504 without a re-send and without counting against the backend's breaker. A
backend that refuses, resets or answers 5xx still trips its breaker.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.gateway.backends import free_port
from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, table

MESSAGES = [{"role": "user", "content": "write a long story"}]


async def ask(gw, **kw):  # type: ignore[no-untyped-def]
    async with async_client(gw) as client:
        return await client.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, **kw
        )


async def two_tier(
    backend: BackendFactory,
    gateway: GatewayFactory,
    primary_url: str | None = None,
    **fallback: object,
):  # type: ignore[no-untyped-def]
    primary, cloud = await backend("primary"), await backend("cloud")
    rows = [
        backend_row("primary", primary_url or primary.url),
        backend_row("cloud", cloud.url, priority=1),
    ]
    policy = {
        "perTryTimeoutSeconds": 1,
        "circuitBreaker": {"consecutiveFailures": 2, "openSeconds": 60},
    }
    gw = await gateway([table("chat", rows, **(policy | fallback))])
    return primary, cloud, gw


async def test_generations_longer_than_the_per_try_timeout_stay_on_the_primary(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary, cloud, gw = await two_tier(backend, gateway, generationTimeoutSeconds=60)
    primary.behave(delay=1.5)  # every answer takes longer than perTryTimeoutSeconds
    answers = await asyncio.gather(*(ask(gw) for _ in range(4)))
    assert [a.headers["x-ballast-backend"] for a in answers] == ["primary"] * 4
    assert [a.headers["x-ballast-attempts"] for a in answers] == ["1"] * 4
    assert not cloud.seen
    assert gw.state.board.get("chat", "primary").state == "closed"


async def test_a_generation_past_its_limit_is_504_not_resent_not_held_against_the_backend(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary, cloud, gw = await two_tier(backend, gateway, generationTimeoutSeconds=1)
    primary.behave(delay=3)
    for _ in range(3):  # more than consecutiveFailures
        with pytest.raises(openai.APIStatusError) as err:
            await ask(gw)
        assert err.value.status_code == 504
        assert err.value.response.headers["x-ballast-attempts"] == "1"
        assert err.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    assert not cloud.seen  # never re-sent to the paid tier
    assert gw.state.board.get("chat", "primary").state == "closed"
    assert gw.sample("ballast_gateway_circuit_open", model="chat", backend="primary") == 0


@pytest.mark.parametrize("mode", ["status", "drop", "refused"])
async def test_a_failing_backend_still_trips_its_breaker(
    backend: BackendFactory, gateway: GatewayFactory, mode: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1" if mode == "refused" else None
    primary, _cloud, gw = await two_tier(backend, gateway, url, generationTimeoutSeconds=60)
    primary.behave(mode, status=500)
    for _ in range(2):
        assert (await ask(gw)).headers["x-ballast-backend"] == "cloud"
    assert gw.state.board.get("chat", "primary").state == "open"
    seen = len(primary.seen)
    assert (await ask(gw)).headers["x-ballast-attempts"] == "1"  # straight to cloud
    assert len(primary.seen) == seen


async def test_a_stream_that_does_not_start_in_time_is_the_backends_failure(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary, _cloud, gw = await two_tier(backend, gateway, generationTimeoutSeconds=60)
    primary.behave(delay=3)  # a stream's first byte must come within perTryTimeoutSeconds
    for _ in range(2):
        assert (await ask(gw, stream=True)).headers["x-ballast-backend"] == "cloud"
    assert gw.state.board.get("chat", "primary").state == "open"

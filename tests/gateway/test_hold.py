"""Requests held for a backend at zero: released by the slice event, bounded, reported.

The gateway serves a routes file; its :class:`Endpoints` is fed EndpointSlices by the
test (as the slice watch would), and the "pods" are fake engines on 127.0.0.1. The
backend's Service URL is a port nothing listens on, so a request sent there would fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import openai
import pytest

from ballast.gateway.access import ACCESS_LOGGER
from ballast.gateway.demand import Counts
from ballast.gateway.endpoints import Endpoints
from ballast.gateway.hold import Holds, Wait
from ballast.gateway.metrics import Metrics
from ballast.routing import RouteBackend, RoutingTable
from tests.gateway.backends import FakeBackend, free_port
from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import GatewayUnderTest, backend_row, eventually, table

MESSAGES = [{"role": "user", "content": "hi"}]
SOURCE = {"namespace": "ai", "name": "chat"}
SERVICE = "chat-gpu"
COLD = "x-ballast-cold-start"


def gpu_row(max_pending: int = 100, timeout: int = 60, **extra: Any) -> dict[str, Any]:
    """The backend at zero: its Service URL refuses connections, its pods come from slices."""
    return (
        backend_row(
            "gpu",
            f"http://127.0.0.1:{free_port()}/v1",
            inRoute=False,
            service={"namespace": "ai", "name": SERVICE, "portName": "http"},
            hold={"maxPending": max_pending, "timeoutSeconds": timeout},
        )
        | extra
    )


def hold_table(*rows: dict[str, Any], **fallback: Any) -> dict[str, Any]:
    return table("chat", list(rows), **fallback) | {"source": SOURCE}


def pod_slice(pod: FakeBackend, ready: bool = True) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "metadata": {
            "namespace": "ai",
            "name": f"{SERVICE}-{pod.name}",
            "labels": {"kubernetes.io/service-name": SERVICE, "ballast.dev/backend": "gpu"},
        },
        "ports": [{"name": "http", "port": pod.port}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready},
                "targetRef": {"name": pod.name},
            }
        ],
    }


def slices() -> Endpoints:
    """Endpoints whose slices are readable everywhere and list nothing yet."""
    endpoints = Endpoints()
    endpoints.set_readable(None, True)
    return endpoints


def held(gw: GatewayUnderTest) -> float:
    return gw.sample("ballast_gateway_held_requests", model="chat", backend="gpu")


async def demand(gw: GatewayUnderTest) -> dict[tuple[str, str, str], dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(gw.demand_url) as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["gateway"] == "gw-0"
    return {(b["namespace"], b["service"], b["backend"]): b for b in doc["backends"]}


async def hold_gateway(
    gateway: GatewayFactory, tbl: dict[str, Any], **kw: Any
) -> tuple[GatewayUnderTest, Endpoints]:
    endpoints = slices()
    gw = await gateway([tbl], endpoints=endpoints, name="gw-0", **kw)
    return gw, endpoints


async def test_a_burst_waits_for_the_first_ready_pod_and_is_all_served(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    pod = await backend("pod-0")
    gw, endpoints = await hold_gateway(gateway, hold_table(gpu_row()))
    client = async_client(gw, timeout=60)
    call = client.chat.completions.with_raw_response.create
    tasks = [asyncio.create_task(call(model="chat", messages=MESSAGES)) for _ in range(100)]
    await eventually(lambda: held(gw) == 100, within=30)
    assert not any(t.done() for t in tasks)
    assert pod.seen == []
    row = (await demand(gw))[("ai", "chat", "gpu")]
    assert (row["requests"], row["held"], row["inFlight"]) == (100, 100, 0)
    endpoints.apply("ADDED", pod_slice(pod))  # the pod is ready
    raws = await asyncio.gather(*tasks)
    assert [r.http_response.status_code for r in raws] == [200] * 100
    assert all(r.headers[COLD] == "true" for r in raws)
    assert all(r.headers["x-ballast-backend"] == "gpu" for r in raws)
    assert len(pod.seen) == 100
    assert held(gw) == 0
    assert gw.sample("ballast_gateway_hold_seconds_count", model="chat", backend="gpu") == 100
    row = (await demand(gw))[("ai", "chat", "gpu")]
    assert row == {"namespace": "ai", "service": "chat", "backend": "gpu", "inFlight": 0,
                   "held": 0, "requests": 100, "circuitOpen": False}  # fmt: skip
    # A pod is ready now: the next request goes straight there, without the header.
    raw = await call(model="chat", messages=MESSAGES)
    assert COLD not in raw.headers


async def test_over_max_pending_503_at_once_and_past_the_timeout_504(
    backend: BackendFactory, gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    gw, _ = await hold_gateway(gateway, hold_table(gpu_row(max_pending=3, timeout=1)))
    client = async_client(gw, timeout=30)
    create = client.chat.completions.create
    waiting = [asyncio.create_task(create(model="chat", messages=MESSAGES)) for _ in range(3)]
    await eventually(lambda: held(gw) == 3)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as full:
            await create(model="chat", messages=MESSAGES)
        assert full.value.status_code == 503
        assert full.value.code == "hold_queue_full"
        assert int(full.value.response.headers["Retry-After"]) >= 1
        assert COLD not in full.value.response.headers  # it did not wait
    assert not any(t.done() for t in waiting)  # refused at once, while the three still wait
    for outcome in await asyncio.gather(*waiting, return_exceptions=True):
        assert isinstance(outcome, openai.InternalServerError)
        assert outcome.status_code == 504
        assert outcome.code == "cold_start_timeout"
        assert outcome.response.headers[COLD] == "true"
    rejections = "ballast_gateway_hold_rejections_total"
    assert gw.sample(rejections, model="chat", backend="gpu", reason="full") == 2
    assert gw.sample(rejections, model="chat", backend="gpu", reason="timeout") == 3
    assert held(gw) == 0
    row = (await demand(gw))[("ai", "chat", "gpu")]
    assert (row["requests"], row["held"]) == (3, 0)  # the refused were never held
    access = [getattr(r, "fields", {}) for r in caplog.records if r.name == ACCESS_LOGGER]
    timed_out = [f for f in access if f.get("status") == 504]
    assert len(timed_out) == 3
    assert all(900 <= f["held_ms"] < 30_000 for f in timed_out)
    assert all(f["outcome"] == "timeout" and f["backend"] == "gpu" for f in timed_out)
    assert [f.get("held_ms") for f in access if f.get("status") == 503] == [None, None]


async def test_a_warm_backend_in_the_route_serves_and_nothing_is_held(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    warm, pod = await backend("warm"), await backend("pod-0")
    rows = [gpu_row(), backend_row("warm", warm.url, priority=1)]
    gw, endpoints = await hold_gateway(gateway, hold_table(*rows))
    client = async_client(gw)
    for _ in range(5):
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES
        )
        assert raw.headers["x-ballast-backend"] == "warm"
        assert COLD not in raw.headers
    assert len(warm.seen) == 5
    assert gw.sample("ballast_gateway_hold_seconds_count", model="chat", backend="gpu") == 0
    report = await demand(gw)
    assert report[("ai", "chat", "warm")]["requests"] == 5
    assert ("ai", "chat", "gpu") not in report  # never held for, never sent to
    # The same table with the warm backend out of the route: now the request waits.
    rows[1] = rows[1] | {"inRoute": False}
    gw.write([hold_table(*rows, whenAllUnhealthy="reject")])
    await eventually(lambda: gw.state.store.current.routes["chat"].table.backends[1].in_route
                     is False)  # fmt: skip
    task = asyncio.create_task(
        client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    )
    await eventually(lambda: held(gw) == 1)
    endpoints.apply("ADDED", pod_slice(pod))
    raw = await task
    assert raw.headers["x-ballast-backend"] == "gpu"
    assert raw.headers[COLD] == "true"
    assert len(warm.seen) == 5


async def test_a_warm_backend_that_fails_is_tried_first_then_the_request_waits(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    pod = await backend("pod-0")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    rows = [gpu_row(), backend_row("warm", dead, priority=1)]
    gw, endpoints = await hold_gateway(gateway, hold_table(*rows))
    client = async_client(gw)
    task = asyncio.create_task(
        client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    )
    await eventually(lambda: held(gw) == 1)
    endpoints.apply("ADDED", pod_slice(pod))
    raw = await task
    assert raw.headers["x-ballast-backend"] == "gpu"
    assert raw.headers["x-ballast-attempts"] == "2"  # the warm one's, then the pod's
    report = await demand(gw)
    assert report[("ai", "chat", "warm")]["requests"] == 1
    assert report[("ai", "chat", "gpu")]["requests"] == 1  # held, then sent: counted once


async def test_a_request_to_a_pod_going_away_is_held_until_a_new_pod_is_ready(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    """The race of a scale to zero: the slices still list the pod, which refuses: held, not
    failed, and served by the pod the demand brings up."""
    old = await backend("pod-old")
    gw, endpoints = await hold_gateway(gateway, hold_table(gpu_row()))
    endpoints.apply("ADDED", pod_slice(old))
    old.kill()  # stopped, its slice not updated yet
    client = async_client(gw)
    task = asyncio.create_task(
        client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    )
    await eventually(lambda: held(gw) == 1)
    assert (await demand(gw))[("ai", "chat", "gpu")]["held"] == 1  # the operator wakes it
    endpoints.apply("DELETED", pod_slice(old))  # the slice catches up: still nothing ready
    await asyncio.sleep(0.2)
    assert not task.done()
    new = await backend("pod-new")
    endpoints.apply("ADDED", pod_slice(new))
    raw = await task
    assert raw.http_response.status_code == 200
    assert raw.headers[COLD] == "true"
    assert len(new.seen) == 1


async def test_a_pod_answering_5xx_is_not_held_for(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    """Only refused connections mean "going away": a failing engine's error comes back."""
    pod = await backend("pod-0")
    pod.behave("status", status=500)
    gw, endpoints = await hold_gateway(gateway, hold_table(gpu_row()))
    endpoints.apply("ADDED", pod_slice(pod))
    client = async_client(gw)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert held(gw) == 0


async def test_a_held_stream_gets_keep_alives_then_the_real_stream(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    pod = await backend("pod-0")
    gw, endpoints = await hold_gateway(gateway, hold_table(gpu_row()), hold_keepalive_seconds=0.2)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    url = gw.base_url + "/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers[COLD] == "true"
        for _ in range(2):
            assert await r.content.readuntil(b"\n\n") == b": keep-alive\n\n"
        endpoints.apply("ADDED", pod_slice(pod))
        rest = (await r.content.read()).decode()
    events = [e for e in rest.split("\n\n") if e.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[5:]) for e in events[:-1]]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == [
        "pod-0-0 ", "pod-0-1 ", "pod-0-2 "
    ]  # fmt: skip
    assert all(c["model"] == "chat" for c in chunks)  # the served name, as for any stream
    assert len(pod.seen) == 1


async def test_the_openai_sdk_reads_a_held_stream_and_its_timeout(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    pod = await backend("pod-0")
    gw, endpoints = await hold_gateway(
        gateway, hold_table(gpu_row(timeout=1)), hold_keepalive_seconds=0.2
    )
    client = async_client(gw, timeout=30)
    stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="no ready pod"):
        async for _ in stream:
            pass
    assert gw.sample("ballast_gateway_hold_rejections_total", model="chat", backend="gpu",
                     reason="timeout") == 1  # fmt: skip
    task = asyncio.create_task(
        client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    )
    await eventually(lambda: held(gw) == 1)
    await asyncio.sleep(0.5)  # past the keep-alive interval: committed early
    endpoints.apply("ADDED", pod_slice(pod))
    texts = [c.choices[0].delta.content async for c in await task]
    assert texts == ["pod-0-0 ", "pod-0-1 ", "pod-0-2 "]


@pytest.mark.parametrize("status", [500, 400])
async def test_an_error_after_the_early_commit_arrives_as_an_sse_error_event(
    backend: BackendFactory, gateway: GatewayFactory, status: int
) -> None:
    pod = await backend("pod-0")
    pod.behave("status", status=status)
    gw, endpoints = await hold_gateway(gateway, hold_table(gpu_row()), hold_keepalive_seconds=0.2)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    url = gw.base_url + "/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
        assert r.status == 200
        assert await r.content.readuntil(b"\n\n") == b": keep-alive\n\n"
        endpoints.apply("ADDED", pod_slice(pod))
        rest = (await r.content.read()).decode()
    events = [e for e in rest.split("\n\n") if e.startswith("data:")]
    assert len(events) == 1
    error = json.loads(events[0][5:])["error"]
    assert error["message"] == f"pod-0 says {status}"  # the engine's own error, passed on


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_leaving_while_held_frees_its_place(
    backend: BackendFactory, gateway: GatewayFactory, stream: bool
) -> None:
    gw, _ = await hold_gateway(
        gateway, hold_table(gpu_row(max_pending=1)), hold_keepalive_seconds=0.2
    )
    body = {"model": "chat", "messages": MESSAGES, "stream": stream}

    async def call() -> None:
        url = gw.base_url + "/chat/completions"
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
            await r.read()

    task = asyncio.create_task(call())
    await eventually(lambda: held(gw) == 1)
    if stream:
        await asyncio.sleep(0.5)  # the stream is committed and sends keep-alives
    assert (await demand(gw))[("ai", "chat", "gpu")]["held"] == 1
    task.cancel()  # the connection closes
    await eventually(lambda: held(gw) == 0)
    assert (await demand(gw))[("ai", "chat", "gpu")]["held"] == 0
    assert gw.state.holds is not None
    assert gw.state.holds.held("chat", "gpu") == 0
    # The place is free again: the next request is held (maxPending 1), not refused.
    task = asyncio.create_task(call())
    await eventually(lambda: held(gw) == 1)
    task.cancel()
    await eventually(lambda: held(gw) == 0)
    assert gw.sample("ballast_gateway_hold_rejections_total", model="chat", backend="gpu",
                     reason="full") == 0  # fmt: skip


async def test_the_demand_report_counts_in_flight_requests_and_open_circuits(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    pod, warm = await backend("pod-0"), await backend("warm")
    warm.behave("status", status=500)
    rows = [backend_row("warm", warm.url), gpu_row(inRoute=True) | {"priority": 1}]
    breaker = {"consecutiveFailures": 1, "openSeconds": 60}
    tbl = hold_table(*rows, circuitBreaker=breaker, retryOn=["5xx", "connect-failure"])
    gw, endpoints = await hold_gateway(gateway, tbl)
    endpoints.apply("ADDED", pod_slice(pod))
    pod.behave(delay=1.0)
    client = async_client(gw)
    task = asyncio.create_task(client.chat.completions.create(model="chat", messages=MESSAGES))

    async def in_flight() -> int:
        row = (await demand(gw)).get(("ai", "chat", "gpu"))
        return 0 if row is None else int(row["inFlight"])

    for _ in range(200):
        if await in_flight() == 1:
            break
        await asyncio.sleep(0.01)
    report = await demand(gw)
    assert report[("ai", "chat", "gpu")]["inFlight"] == 1
    assert report[("ai", "chat", "warm")] == {
        "namespace": "ai", "service": "chat", "backend": "warm", "inFlight": 0, "held": 0,
        "requests": 1, "circuitOpen": True,
    }  # fmt: skip
    await task
    report = await demand(gw)
    assert report[("ai", "chat", "gpu")]["inFlight"] == 0
    assert report[("ai", "chat", "gpu")]["requests"] == 1
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/internal/demand") as r:
        assert r.status == 404  # the API port does not serve it


async def test_a_table_without_source_is_not_reported(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    warm = await backend("warm")
    gw, _ = await hold_gateway(gateway, table("chat", [backend_row("warm", warm.url)]))
    await async_client(gw).chat.completions.create(model="chat", messages=MESSAGES)
    async with aiohttp.ClientSession() as http, http.get(gw.demand_url) as r:
        doc = await r.json()
    assert doc["backends"] == []
    assert doc["started"] > 0


def _backend(max_pending: int = 10, timeout: int = 30) -> RouteBackend:
    return RouteBackend.model_validate(gpu_row(max_pending, timeout))


async def test_held_requests_are_released_in_arrival_order_by_the_slice_event() -> None:
    endpoints = slices()
    holds = Holds(endpoints, Metrics())
    backend, counts = _backend(), Counts()
    assert holds.cold(backend)
    order: list[int] = []

    async def one(i: int) -> None:
        ended, _ = await holds.wait("chat", backend, counts)
        assert ended is Wait.RELEASED
        order.append(i)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # each joins before the next starts
    await eventually(lambda: holds.held("chat", "gpu") == 8)
    pod = FakeBackend("pod-0", port=8000)
    endpoints.apply("ADDED", pod_slice(pod, ready=False))  # listed, not ready: still held
    await asyncio.sleep(0.05)
    assert order == []
    assert counts.held == 8
    endpoints.apply("MODIFIED", pod_slice(pod))
    await asyncio.gather(*tasks)
    assert order == list(range(8))
    assert counts.held == 0
    assert not holds.cold(backend)


async def test_unreadable_slices_hold_nothing() -> None:
    endpoints = Endpoints()  # never listed: no event would ever release a request
    holds = Holds(endpoints, Metrics())
    backend = _backend()
    rows = hold_table(gpu_row())
    assert not holds.cold(backend)
    assert holds.target(RoutingTable.model_validate(rows)) is None
    assert Holds(None, Metrics()).target(RoutingTable.model_validate(rows)) is None

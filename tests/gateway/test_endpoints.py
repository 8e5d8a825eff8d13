"""Pods chosen per request from EndpointSlices: spread, retry on another pod, drain, fallback.

The fake API serves routing ConfigMaps and EndpointSlices; every "pod" is a real HTTP
server on 127.0.0.1 with its own port (one slice per pod), and the backend's "Service URL"
is one more server, so a request that went through the Service is visible as such.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from ballast.gateway.app import GATEWAY, create_app
from ballast.gateway.config import GatewayConfig
from ballast.gateway.endpoints import Endpoints, SliceWatcher, parse_slice
from ballast.gateway.kube import ApiConfig, KubeApi
from ballast.gateway.watch import ConfigMapSource
from ballast.naming import ROUTES_LABEL
from ballast.routing import ServiceRef
from tests.gateway.backends import FakeBackend
from tests.gateway.conftest import BackendFactory, async_client
from tests.gateway.fakekube import TOKEN, FakeKube
from tests.gateway.harness import GatewayUnderTest, backend_row, eventually, table
from tests.gateway.test_kube import routes

MESSAGES = [{"role": "user", "content": "hi"}]
SERVICE = {"namespace": "ai", "name": "chat-primary", "portName": "http"}


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    fake = await FakeKube().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def started() -> AsyncIterator[list[GatewayUnderTest]]:
    gateways: list[GatewayUnderTest] = []
    yield gateways
    for gw in gateways:
        await gw.stop()


async def start(kube: FakeKube, gateways: list[GatewayUnderTest]) -> GatewayUnderTest:
    api = KubeApi(ApiConfig(host=kube.url, token=TOKEN))
    endpoints = Endpoints()
    app = create_app(
        GatewayConfig(host="127.0.0.1", port=0),
        ConfigMapSource(api, (), max_backoff=0.2),
        kube=api,
        endpoints=endpoints,
        slices=SliceWatcher(api, endpoints, (), max_backoff=0.2),
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    gw = GatewayUnderTest(url, None, runner, app[GATEWAY])  # type: ignore[arg-type]
    gateways.append(gw)
    return gw


def ready(pod: str, ok: bool = True, terminating: bool = False) -> dict[str, Any]:
    cond = {"ready": ok, "serving": ok, "terminating": terminating}
    return {"addresses": ["127.0.0.1"], "conditions": cond, "targetRef": {"name": pod}}


async def publish(kube: FakeKube, pods: list[FakeBackend], **state: dict[str, Any]) -> None:
    """One slice per pod (each on its own port); ``state[pod name]`` overrides readiness."""
    for p in pods:
        endpoint = state.get(p.name, ready(p.name))
        await kube.put_slice("ai", f"chat-primary-{p.name}", "chat-primary", p.port, [endpoint])


async def serve_table(
    kube: FakeKube, service_url: str, *extra: dict[str, Any], **fallback: Any
) -> None:
    primary = backend_row("primary", service_url, service=SERVICE)
    tbl = table("chat", [primary, *extra], **fallback)
    await kube.put_configmap("ai", "chat-routes", routes(tbl), {ROUTES_LABEL: "true"})


async def fleet(backend: BackendFactory, n: int) -> list[FakeBackend]:
    return [await backend(f"pod-{i}") for i in range(n)]


async def until_pods(gw: GatewayUnderTest, n: int) -> None:
    ref = ServiceRef(namespace="ai", name="chat-primary")

    def listed() -> bool:
        endpoints = gw.state.endpoints
        pods = endpoints.pods(ref) if endpoints is not None else None
        return pods is not None and len(pods.pods) == n

    await eventually(listed)


async def test_requests_spread_over_the_ready_pods_not_the_service(
    kube: FakeKube, backend: BackendFactory, started: list[GatewayUnderTest]
) -> None:
    service, pods = await backend("service"), await fleet(backend, 4)
    await serve_table(kube, service.url)
    await publish(kube, pods)
    gw = await start(kube, started)
    await until_pods(gw, 4)
    client = async_client(gw)
    await asyncio.gather(
        *(client.chat.completions.create(model="chat", messages=MESSAGES) for _ in range(200))
    )
    assert service.seen == []
    counts = [len(p.seen) for p in pods]
    assert sum(counts) == 200
    assert min(counts) >= 25, counts
    assert gw.sample("ballast_gateway_backend_discovery", model="chat", backend="primary",
                     mode="endpoints") == 1  # fmt: skip


async def test_a_dead_pod_is_retried_on_another_pod_of_the_same_backend(
    kube: FakeKube, backend: BackendFactory, started: list[GatewayUnderTest]
) -> None:
    service, standby, pods = (
        await backend("service"),
        await backend("standby"),
        await fleet(backend, 3),
    )
    await serve_table(kube, service.url, backend_row("standby", standby.url, priority=1))
    await publish(kube, pods)
    gw = await start(kube, started)
    await until_pods(gw, 3)
    pods[0].kill()  # still listed as ready: the gateway finds out by connecting
    client = async_client(gw)
    answers = await asyncio.gather(
        *(client.chat.completions.create(model="chat", messages=MESSAGES) for _ in range(60))
    )
    assert len(answers) == 60
    assert standby.seen == []
    assert service.seen == []
    assert len(pods[1].seen) + len(pods[2].seen) == 60
    assert gw.sample("ballast_gateway_pod_ejections_total", model="chat", backend="primary") >= 1


async def test_a_not_ready_or_terminating_pod_gets_no_new_request(
    kube: FakeKube, backend: BackendFactory, started: list[GatewayUnderTest]
) -> None:
    service, pods = await backend("service"), await fleet(backend, 3)
    await serve_table(kube, service.url)
    await publish(kube, pods)
    gw = await start(kube, started)
    await until_pods(gw, 3)
    await publish(kube, pods, **{"pod-0": ready("pod-0", ok=False),
                                 "pod-1": ready("pod-1", ok=False, terminating=True)})  # fmt: skip
    await until_pods(gw, 1)
    before = [len(p.seen) for p in pods]
    client = async_client(gw)
    for _ in range(20):
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert [len(p.seen) - b for p, b in zip(pods, before, strict=True)] == [0, 0, 20]


async def test_without_permission_for_slices_the_service_url_serves(
    kube: FakeKube, backend: BackendFactory, started: list[GatewayUnderTest]
) -> None:
    kube.slices_status = 403
    service, pods = await backend("service"), await fleet(backend, 2)
    await serve_table(kube, service.url)
    await publish(kube, pods)
    gw = await start(kube, started)
    await eventually(lambda: gw.state.store.ready)
    client = async_client(gw)
    for _ in range(5):
        await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert len(service.seen) == 5
    assert all(p.seen == [] for p in pods)
    assert gw.sample("ballast_gateway_backend_discovery", model="chat", backend="primary",
                     mode="service") == 1  # fmt: skip
    kube.slices_status = 200  # permission granted later: the next relist picks pods up
    await until_pods(gw, 2)
    await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert len(service.seen) == 5


def test_slices_parse_readiness_like_kubernetes() -> None:
    obj = {
        "addressType": "IPv4",
        "metadata": {
            "namespace": "ai",
            "name": "s",
            "labels": {"kubernetes.io/service-name": "svc"},
        },
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {}},  # unset: ready
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True}},
        ],
    }
    parsed = parse_slice(obj)
    assert parsed is not None
    assert [e.ready for e in parsed.endpoints] == [True, False, False]
    assert parse_slice(obj | {"addressType": "FQDN"}) is None
    endpoints = Endpoints()
    endpoints.set_readable(None, True)
    endpoints.apply("ADDED", obj)
    endpoints.apply("ADDED", obj | {"metadata": {**obj["metadata"], "name": "s2"}})  # duplicate
    pods = endpoints.pods(ServiceRef(namespace="ai", name="svc"))
    assert pods is not None
    assert [p.address for p in pods.pods] == ["10.0.0.1:8000"]


def test_pod_metrics_follow_the_slices() -> None:
    endpoints = Endpoints()
    endpoints.set_readable(None, True)
    obj = {
        "addressType": "IPv4",
        "metadata": {
            "namespace": "ai",
            "name": "s",
            "labels": {"kubernetes.io/service-name": "svc"},
        },
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [{"addresses": ["10.0.0.1"], "targetRef": {"name": "pod-a"}}],
    }
    endpoints.apply("ADDED", obj)
    pods = endpoints.pods(ServiceRef(namespace="ai", name="svc"))
    assert pods is not None
    pods.pods[0].start()
    assert list(endpoints.rows()) == [("ai", "svc", "pod-a", 1, 1)]
    endpoints.apply("DELETED", obj)  # no request since: the rows still drop the pod
    assert list(endpoints.rows()) == []


async def test_session_header_pins_a_session_to_one_pod(
    kube: FakeKube, backend: BackendFactory, started: list[GatewayUnderTest]
) -> None:
    service, pods = await backend("service"), await fleet(backend, 4)
    primary = backend_row("primary", service.url, service=SERVICE)
    lb = {"strategy": "sessionHeader", "header": "X-Session-Id"}
    tbl = table("chat", [primary]) | {"loadBalancing": lb}
    await kube.put_configmap("ai", "chat-routes", routes(tbl), {ROUTES_LABEL: "true"})
    await publish(kube, pods)
    gw = await start(kube, started)
    await until_pods(gw, 4)
    client = async_client(gw)
    for session in range(12):  # one at a time: nothing in flight, so no spill
        for _ in range(5):
            await client.chat.completions.create(
                model="chat", messages=MESSAGES, extra_headers={"X-Session-Id": f"s{session}"}
            )
    sessions = {
        p.name: {v for s in p.seen for k, v in s.headers.items() if k.lower() == "x-session-id"}
        for p in pods
    }
    owners = [name for name, ss in sessions.items() for _ in ss]
    assert len(owners) == 12  # each session on exactly one pod
    assert sum(1 for ss in sessions.values() if ss) >= 2  # and sessions spread over pods
    assert gw.sample("ballast_gateway_affinity_total", model="chat", backend="primary",
                     result="hit") == 60  # fmt: skip

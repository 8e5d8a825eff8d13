"""Fixtures of the controller tier: emulated clusters with the real operator running against them.

``cluster`` (session) is shared by the lifecycle, drift and failover tests, each on
its own LLMServices; ``quiet_cluster`` (session, started first) is left alone from
convergence on, so ``test_steady_state.py`` (last in the run) can count its writes
over a window that elapsed while the other tests ran. Integration modules use the
session event loop: ``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.controller.harness import Fleet, Operator, by_operator
from tests.emulator import KubeEmulator, running
from tests.emulator.poll import eventually
from tests.emulator.workloads import Deployments
from tests.factories import external, llmservice_obj, vllm

NS = "ai"
API_KEY = "sk-test"
Obj = dict[str, Any]


def hosted(name: str = "primary", **fields: Any) -> Obj:
    """A self-hosted (vLLM) backend probed every second."""
    fields.setdefault("health", {"periodSeconds": 1, "timeoutSeconds": 1})
    return vllm(name, **fields)


def remote(fleet: Fleet, service: str, name: str = "cloud", **fields: Any) -> Obj:
    """An external backend served by the fleet, probed every second."""
    fields.setdefault("health", {"periodSeconds": 1, "timeoutSeconds": 1})
    return external(name, url=fleet.url(NS, service, name), **fields)


def service_obj(name: str, *backends: Obj, healthy_after: int = 1, unhealthy_after: int = 2) -> Obj:
    fallback = {"healthyAfter": healthy_after, "unhealthyAfter": unhealthy_after}
    return llmservice_obj(*backends, name=name, namespace=NS, fallback=fallback)


class Cluster:
    """An emulator, the loopback fleet, fake Deployment readiness, and the operator."""

    def __init__(self, api: KubeEmulator, fleet: Fleet, deployments: Deployments) -> None:
        self.api = api
        self.store = api.store
        self.fleet = fleet
        self.deployments = deployments
        self.operator: Operator | None = None

    def kind(self, plural: str) -> Any:
        groups = {
            "llmservices": ("ballast.dev", "v1alpha1"),
            "deployments": ("apps", "v1"),
            "horizontalpodautoscalers": ("autoscaling", "v2"),
            "poddisruptionbudgets": ("policy", "v1"),
            "networkpolicies": ("networking.k8s.io", "v1"),
        }
        group, version = groups.get(plural, ("", "v1"))
        return self.store.kind(group, version, plural)

    def seed(self) -> None:
        self.store.create(self.kind("namespaces"), None, {"metadata": {"name": NS}})
        key = base64.b64encode(API_KEY.encode()).decode()
        secret = {"metadata": {"name": "llm-keys"}, "data": {"openai": key}}
        self.store.create(self.kind("secrets"), NS, secret)

    def get(self, plural: str, name: str) -> Obj | None:
        obj = self.store.find(self.kind(plural), NS, name)
        return json.loads(json.dumps(obj)) if obj is not None else None

    def status(self, name: str) -> Obj:
        return (self.get("llmservices", name) or {}).get("status") or {}

    def condition(self, name: str, type_: str) -> Obj:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), {})

    def routes(self, name: str) -> Obj:
        cm = self.get("configmaps", f"{name}-routes") or {}
        return json.loads((cm.get("data") or {}).get("routes.json") or "{}")

    def in_route(self, name: str) -> dict[str, bool]:
        return {b["name"]: b.get("inRoute", True) for b in self.routes(name).get("backends", [])}

    def children(self, name: str) -> dict[tuple[str, str], Obj]:
        out = {}
        for plural in (
            "configmaps",
            "services",
            "deployments",
            "horizontalpodautoscalers",
            "poddisruptionbudgets",
            "networkpolicies",
        ):
            for obj in self.store.items(self.kind(plural), NS):
                if (obj["metadata"].get("labels") or {}).get("ballast.dev/service") == name:
                    out[(obj["kind"], obj["metadata"]["name"])] = obj
        return out

    def events(self, name: str) -> list[Obj]:
        return [
            e
            for e in self.store.items(self.kind("events"), NS)
            if e.get("involvedObject", {}).get("name") == name
        ]

    def reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in self.events(name)]

    def create(self, obj: Obj) -> Obj:
        return self.store.create(self.kind("llmservices"), NS, obj)

    def operator_writes(self, since: int = 0) -> list[Any]:
        return self.api.writes(since, by_operator)

    async def user(
        self, method: str, path: str, body: Any = None, merge: bool = False
    ) -> tuple[int, Obj]:
        """A request as a human with kubectl would make it (not counted as the operator's)."""
        headers = {"User-Agent": "kubectl/test", "Content-Type": "application/json"}
        if merge:
            headers["Content-Type"] = "application/merge-patch+json"
        async with (
            aiohttp.ClientSession(self.api.url_base) as s,
            s.request(
                method, path, data=None if body is None else json.dumps(body), headers=headers
            ) as rsp,
        ):
            return rsp.status, await rsp.json()

    async def wait_phase(self, name: str, phase: str, seconds: float = 15) -> Obj:
        return await eventually(
            lambda: self.status(name) if self.status(name).get("phase") == phase else None,
            seconds=seconds,
            what=f"{name} phase {phase}",
        )


#: Who may call engines, as the chart tells the operator: its gateway's pods and its own.
PEERS: list[Obj] = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ballast-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": component}},
    }
    for component in ("gateway", "operator")
]


@contextlib.asynccontextmanager
async def emulated(
    workdir: Path, start: bool = True, **operator_args: Any
) -> AsyncIterator[Cluster]:
    """A seeded emulated cluster with the operator running (unless ``start`` is False)."""
    async with running() as api, Fleet(API_KEY) as fleet:
        with Deployments(api.store) as deployments:
            cluster = Cluster(api, fleet, deployments)
            cluster.seed()
            env = {"BALLAST_ENGINE_POLICY_PEERS": json.dumps(PEERS), **operator_args.pop("env", {})}
            cluster.operator = Operator(
                api, workdir, probes=fleet.override, env=env, **operator_args
            )
            try:
                if start:
                    await cluster.operator.start()
                yield cluster
            finally:
                await cluster.operator.stop()
                api.close_watches()
                await asyncio.sleep(0)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def quiet_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Cluster, int, float]]:
    """A converged cluster nobody touches: (cluster, request index, loop time) at convergence."""
    async with emulated(tmp_path_factory.mktemp("quiet")) as cluster:
        scaled = hosted(scaling={"minReplicas": 1, "maxReplicas": 3})
        cluster.create(service_obj("steady", scaled, remote(cluster.fleet, "steady")))
        cluster.create(service_obj("plain", hosted("solo")))
        await cluster.wait_phase("steady", "Ready", seconds=30)
        await cluster.wait_phase("plain", "Ready", seconds=30)
        await _settle(cluster)
        yield cluster, len(cluster.api.requests), asyncio.get_running_loop().time()


async def _settle(cluster: Cluster, quiet_for: float = 2.0) -> None:
    """Wait until the operator has made no write for ``quiet_for`` seconds."""
    loop = asyncio.get_running_loop()
    last, since = len(cluster.operator_writes()), loop.time()
    while loop.time() - since < quiet_for:
        await asyncio.sleep(0.2)
        now = len(cluster.operator_writes())
        if now != last:
            last, since = now, loop.time()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def cluster(
    quiet_cluster: tuple[Cluster, int, float], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """The shared cluster of the lifecycle, drift and failover tests (after ``quiet_cluster``)."""
    async with emulated(tmp_path_factory.mktemp("shared")) as shared:
        yield shared

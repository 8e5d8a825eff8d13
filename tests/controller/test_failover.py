"""Failover: probes move backends out of and back into the route, with status, Events and metrics.

Probe period 1 s, unhealthyAfter 2, healthyAfter 1 (see ``service_obj``): a backend
must leave the route within (unhealthyAfter + 1) periods plus scheduling slack.
"""

from __future__ import annotations

import asyncio
import base64
import re

import pytest

from tests.controller.conftest import NS, Cluster, hosted, remote, service_obj
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
SLACK = 2.5  # seconds of scheduling slack on a loaded 2-core machine


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}{{{re.escape(selector)}}} (\S+)$"
        if labels
        else rf"^{re.escape(name)} (\S+)$"
    )
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


async def _fails_over(cluster: Cluster, name: str, backend: str, key: str) -> None:
    await cluster.wait_phase(name, "Ready", seconds=20)
    assert cluster.operator is not None
    before = metric(
        await cluster.operator.metrics(), "ballast_failover_transitions_total", direction="out"
    )
    loop = asyncio.get_running_loop()
    cluster.fleet.set(key, healthy=False)
    started = loop.time()
    await eventually(
        lambda: cluster.in_route(name).get(backend) is False,
        seconds=10,
        interval=0.02,
        what="left route",
    )
    assert loop.time() - started <= 3 * 1 + SLACK  # (unhealthyAfter + 1) periods of 1 s
    status = await cluster.wait_phase(name, "Degraded", seconds=5)
    assert cluster.condition(name, "Degraded")["status"] == "True"
    assert next(b for b in status["backends"] if b["name"] == backend)["inRoute"] is False
    await eventually(
        lambda: "BackendLeftRoute" in cluster.reasons(name), what="BackendLeftRoute event"
    )
    after = metric(
        await cluster.operator.metrics(), "ballast_failover_transitions_total", direction="out"
    )
    assert after >= before + 1
    cluster.fleet.set(key, healthy=True)
    started = loop.time()
    await eventually(
        lambda: cluster.in_route(name).get(backend) is True,
        seconds=10,
        interval=0.02,
        what="back in route",
    )
    assert loop.time() - started <= 2 * 1 + SLACK  # (healthyAfter + 1) periods
    await cluster.wait_phase(name, "Ready", seconds=5)
    await eventually(
        lambda: "BackendEnteredRoute" in cluster.reasons(name), what="BackendEnteredRoute event"
    )


async def test_a_failing_self_hosted_backend_leaves_and_re_enters_the_route(
    cluster: Cluster,
) -> None:
    cluster.create(service_obj("fo-hosted", hosted(), remote(cluster.fleet, "fo-hosted")))
    await _fails_over(cluster, "fo-hosted", "primary", f"{NS}/fo-hosted/primary")
    assert cluster.routes("fo-hosted")["allUnhealthy"] is False


async def test_a_failing_external_backend_leaves_and_re_enters_the_route(cluster: Cluster) -> None:
    cluster.create(service_obj("fo-ext", hosted(), remote(cluster.fleet, "fo-ext")))
    await _fails_over(cluster, "fo-ext", "cloud", f"{NS}/fo-ext/cloud")


async def test_a_backend_without_ready_pods_is_not_in_the_route(cluster: Cluster) -> None:
    cluster.deployments.set_ready(NS, "fo-cold-primary", False)
    cluster.create(service_obj("fo-cold", hosted(), remote(cluster.fleet, "fo-cold", name="cloud")))
    await eventually(
        lambda: cluster.in_route("fo-cold") == {"primary": False, "cloud": True}, what="cold route"
    )
    await eventually(
        lambda: cluster.status("fo-cold").get("backendsInRoute") == "1/2", what="1/2 in route"
    )
    assert cluster.status("fo-cold")["phase"] == "Progressing"
    assert cluster.condition("fo-cold", "Available")["status"] == "True"
    assert cluster.condition("fo-cold", "Progressing")["reason"] == "BackendsStarting"
    cluster.deployments.set_ready(NS, "fo-cold-primary", True)
    await cluster.wait_phase("fo-cold", "Ready", seconds=10)


async def test_when_every_backend_fails_the_route_says_so(cluster: Cluster) -> None:
    cluster.create(service_obj("fo-all", hosted()))
    await cluster.wait_phase("fo-all", "Ready", seconds=20)
    cluster.fleet.set(f"{NS}/fo-all/primary", healthy=False)
    await eventually(
        lambda: cluster.routes("fo-all").get("allUnhealthy") is True, what="allUnhealthy"
    )
    await eventually(
        lambda: cluster.condition("fo-all", "Available")["status"] == "False", what="unavailable"
    )
    assert "whenAllUnhealthy=tryAll" in cluster.condition("fo-all", "Available")["message"]
    cluster.fleet.set(f"{NS}/fo-all/primary", healthy=True)
    await cluster.wait_phase("fo-all", "Ready", seconds=10)


async def test_a_missing_secret_is_reported_then_picked_up(cluster: Cluster) -> None:
    backend = remote(cluster.fleet, "fo-key", apiKeySecretRef={"name": "late-key", "key": "openai"})
    cluster.create(service_obj("fo-key", hosted(), backend))
    await eventually(
        lambda: cluster.condition("fo-key", "Ready").get("reason") == "SecretNotFound",
        seconds=15,
        what="SecretNotFound",
    )
    assert cluster.status("fo-key")["phase"] == "Degraded"
    await eventually(
        lambda: "SecretNotFound" in cluster.reasons("fo-key"), what="SecretNotFound event"
    )
    gets = sum(1 for r in cluster.api.requests if r.url.path.endswith("/secrets/late-key"))
    await asyncio.sleep(3)
    # Backoff, not a request per probe: at most a couple of lookups in 3 s of 1 s probes.
    assert (
        sum(1 for r in cluster.api.requests if r.url.path.endswith("/secrets/late-key")) - gets <= 2
    )
    key = base64.b64encode(b"sk-test").decode()
    cluster.store.create(
        cluster.kind("secrets"), NS, {"metadata": {"name": "late-key"}, "data": {"openai": key}}
    )
    await cluster.wait_phase("fo-key", "Ready", seconds=15)

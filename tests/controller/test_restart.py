"""Process life: killed (SIGKILL) mid-reconcile it converges after a restart with every child
exactly once; a restart over converged services writes nothing; ``--namespace`` scopes it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import NS, Cluster, emulated, hosted, remote, service_obj
from tests.controller.harness import by_operator
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")
LLMS = f"/apis/ballast.dev/v1alpha1/namespaces/{NS}/llmservices"


def creates_deployment(name: str) -> Any:
    def match(request: Any) -> bool:
        data = request.data if isinstance(request.data, dict) else {}
        return (
            request.method.value == "POST"
            and request.resource is not None
            and request.resource.plural == "deployments"
            and data.get("metadata", {}).get("name") == name
        )

    return match


def expected(name: str) -> set[tuple[str, str]]:
    return {
        ("ConfigMap", f"{name}-routes"),
        ("NetworkPolicy", f"{name}-engines"),
        ("Service", f"{name}-one"),
        ("Deployment", f"{name}-one"),
        ("Service", f"{name}-two"),
        ("Deployment", f"{name}-two"),
    }


async def test_killed_mid_reconcile_converges_after_restart_without_duplicates(
    tmp_path: Path,
) -> None:
    async with emulated(tmp_path) as cluster:
        hold = cluster.api.hold(creates_deployment("crash-two"))
        cluster.create(
            service_obj(
                "crash", hosted("one"), hosted("two", priority=1), remote(cluster.fleet, "crash")
            )
        )
        await asyncio.wait_for(hold.reached.wait(), 15)
        assert cluster.operator is not None
        assert ("Deployment", "crash-one") in cluster.children("crash")
        assert ("Deployment", "crash-two") not in cluster.children("crash")
        await cluster.operator.kill()
        hold.release()
        await asyncio.sleep(0.5)
        await cluster.operator.start()
        await cluster.wait_phase("crash", "Ready", seconds=30)
        await eventually(
            lambda: set(cluster.children("crash")) == expected("crash"), what="all children"
        )
        assert len(cluster.children("crash")) == len(expected("crash"))
        annotations = cluster.get("llmservices", "crash")["metadata"].get("annotations", {})
        assert not [k for k in annotations if k.startswith("ballast.dev/")]  # kopf's is in memory


async def test_a_restart_with_nothing_to_change_writes_nothing(tmp_path: Path) -> None:
    async with emulated(tmp_path) as cluster:
        cluster.create(service_obj("calm", hosted(), remote(cluster.fleet, "calm")))
        await cluster.wait_phase("calm", "Ready", seconds=20)
        await _quiet(cluster)
        assert cluster.operator is not None
        await cluster.operator.stop()
        start = len(cluster.api.requests)
        await cluster.operator.start()
        await asyncio.sleep(4)  # resume handlers ran, probes ran a few rounds
        assert cluster.operator_writes(start) == []
        assert [r for r in cluster.api.writes(start) if by_operator(r)] == []
        assert cluster.status("calm")["phase"] == "Ready"


async def test_an_edit_made_while_the_operator_was_down_drops_what_the_spec_no_longer_sets(
    tmp_path: Path,
) -> None:
    """The fields to null come from each child's own record, not from memory of the old spec."""
    async with emulated(tmp_path) as cluster:
        cluster.create(service_obj("edit", hosted(nodeSelector={"pool": "gpu"}, args=["--a"])))
        await cluster.wait_phase("edit", "Ready", seconds=20)
        dep = cluster.get("deployments", "edit-primary")
        assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
        assert "ballast.dev/applied-fields" in dep["metadata"]["annotations"]
        await _quiet(cluster)
        assert cluster.operator is not None
        await cluster.operator.stop()
        status, _ = await cluster.user(
            "PATCH", f"{LLMS}/edit", {"spec": {"backends": [hosted(args=["--b"])]}}, merge=True
        )
        assert status == 200
        start = len(cluster.api.requests)
        await cluster.operator.start()

        def followed() -> bool:
            d = cluster.get("deployments", "edit-primary")
            spec = d["spec"]["template"]["spec"]
            return "nodeSelector" not in spec and "--b" in spec["containers"][0]["args"]

        await eventually(followed, seconds=20, what="the Deployment follows the edit")
        await eventually(
            lambda: cluster.status("edit").get("observedGeneration") == 2, what="generation 2"
        )
        patched = [
            r.resource.plural
            for r in cluster.api.writes(start)
            if by_operator(r) and r.resource is not None and r.method.value == "PATCH"
        ]
        assert patched.count("deployments") == 1  # one patch, with the nulls in it


async def test_a_label_edit_writes_nothing(tmp_path: Path) -> None:
    async with emulated(tmp_path) as cluster:
        cluster.create(service_obj("label", hosted()))
        await cluster.wait_phase("label", "Ready", seconds=20)
        await _quiet(cluster)
        start = len(cluster.api.requests)
        body = {"metadata": {"labels": {"team": "search"}, "annotations": {"note": "x"}}}
        status, _ = await cluster.user("PATCH", f"{LLMS}/label", body, merge=True)
        assert status == 200
        await asyncio.sleep(3)
        assert [r for r in cluster.api.writes(start) if by_operator(r)] == []


async def _quiet(cluster: Cluster) -> None:
    last = -1
    while (now := len(cluster.operator_writes())) != last:
        last = now
        await asyncio.sleep(1.5)


async def test_a_namespaced_operator_ignores_other_namespaces(tmp_path: Path) -> None:
    args = ("--standalone", "--namespace=ai")
    async with emulated(tmp_path, args=args) as cluster:
        cluster.store.create(cluster.kind("namespaces"), None, {"metadata": {"name": "other"}})
        elsewhere = service_obj("away", hosted())
        elsewhere["metadata"]["namespace"] = "other"
        cluster.store.create(cluster.kind("llmservices"), "other", elsewhere)
        cluster.create(service_obj("home", hosted()))
        await cluster.wait_phase("home", "Ready", seconds=20)
        away = cluster.store.find(cluster.kind("llmservices"), "other", "away")
        assert away is not None
        assert "status" not in away
        assert not list(cluster.store.items(cluster.kind("deployments"), "other"))


async def test_a_restart_keeps_backends_at_zero_and_standbys_where_they_are(
    tmp_path: Path,
) -> None:
    """Scale-to-zero and standby state is read back from the children and the status: a
    restart neither moves a backend nor rewrites its status."""
    async with emulated(tmp_path) as cluster:
        zero = {"minReplicas": 0, "maxReplicas": 2, "idleAfterSeconds": 60}
        cluster.create(service_obj("sleepy", hosted("gpu", scaling=zero)))
        standby = {"activateAfterSeconds": 0, "cooldownSeconds": 3600}
        cluster.create(
            service_obj(
                "backup",
                remote(cluster.fleet, "backup", priority=0),
                hosted("local", priority=1, replicas=1, standby=standby),
            )
        )
        cluster.fleet.set("ai/backup/cloud", False)  # the standby comes up and stays Active
        await cluster.wait_phase("sleepy", "Ready", seconds=20)
        await eventually(
            lambda: [b for b in cluster.status("backup").get("backends", [])
                     if (b.get("standby") or {}).get("state") == "Active"],
            seconds=30, what="standby active",
        )  # fmt: skip
        cluster.fleet.set("ai/backup/cloud", True)
        await eventually(
            lambda: [b for b in cluster.status("backup").get("backends", [])
                     if (b.get("standby") or {}).get("state") == "Cooling"],
            seconds=30, what="standby cooling",
        )  # fmt: skip
        await _quiet(cluster)
        before = {n: cluster.status(n) for n in ("sleepy", "backup")}
        assert cluster.operator is not None
        await cluster.operator.stop()
        start = len(cluster.api.requests)
        await cluster.operator.start()
        await asyncio.sleep(4)
        writes = cluster.operator_writes(start)
        assert writes == [], [
            (w.url.path, w.data.get("status", {}).get("backends")) for w in writes
        ]
        assert {n: cluster.status(n) for n in ("sleepy", "backup")} == before
        assert cluster.get("deployments", "sleepy-gpu")["spec"]["replicas"] == 0

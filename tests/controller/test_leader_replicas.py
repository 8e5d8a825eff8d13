"""Two replicas with leader election: only the Lease holder writes; the other takes over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import NS, Cluster, emulated, hosted, service_obj
from tests.controller.harness import Operator
from tests.emulator.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


def written_by(cluster: Cluster, since: int, pod: str) -> list[Any]:
    def agent(r: Any) -> str:
        return next((v for k, v in r.headers.items() if k.lower() == "user-agent"), "")

    return [r for r in cluster.api.writes(since) if agent(r).endswith(f"({pod})")]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return tmp_path / "a", tmp_path / "b"


async def test_only_the_leader_writes_and_the_standby_takes_over(dirs: tuple[Path, Path]) -> None:
    async with emulated(dirs[0], start=False) as cluster:

        def replica(workdir: Path, pod: str) -> Operator:
            args = ("--leader-elect", f"--lease-namespace={NS}", "--all-namespaces")
            env = {"POD_ID": pod, "BALLAST_LEASE_DURATION": "3"}
            return Operator(cluster.api, workdir, probes=cluster.fleet.override, args=args, env=env)

        leader, standby = replica(dirs[0], "pod-a"), replica(dirs[1], "pod-b")
        cluster.operator = leader  # stopped by emulated()
        try:
            await leader.start()
            await standby.start()
            lease = cluster.store.find(
                cluster.store.kind("coordination.k8s.io", "v1", "leases"), NS, "ballast-operator"
            )
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == "pod-a"
            start = len(cluster.api.requests)
            cluster.create(service_obj("ha", hosted()))
            await cluster.wait_phase("ha", "Ready", seconds=20)
            cluster.fleet.set(f"{NS}/ha/primary", healthy=False)
            await eventually(
                lambda: cluster.in_route("ha").get("primary") is False,
                seconds=10,
                what="left route",
            )
            assert written_by(cluster, start, "pod-a")
            assert written_by(cluster, start, "pod-b") == []

            await leader.stop()  # graceful: the Lease is released
            start = len(cluster.api.requests)
            cluster.fleet.set(f"{NS}/ha/primary", healthy=True)
            await eventually(
                lambda: cluster.in_route("ha").get("primary") is True,
                seconds=20,
                what="standby took over",
            )
            assert written_by(cluster, start, "pod-b")
            cluster.create(service_obj("ha2", hosted()))
            await cluster.wait_phase("ha2", "Ready", seconds=20)
        finally:
            await standby.stop()


async def test_a_killed_leader_is_replaced_once_its_lease_runs_out(dirs: tuple[Path, Path]) -> None:
    async with emulated(dirs[0], start=False) as cluster:
        leases = cluster.store.kind("coordination.k8s.io", "v1", "leases")

        def replica(workdir: Path, pod: str) -> Operator:
            args = ("--leader-elect", "--lease-name=ha", "--all-namespaces")
            env = {"POD_ID": pod, "POD_NAMESPACE": NS, "BALLAST_LEASE_DURATION": "3"}
            return Operator(cluster.api, workdir, probes=cluster.fleet.override, args=args, env=env)

        first, second = replica(dirs[0], "pod-a"), replica(dirs[1], "pod-b")
        cluster.operator = second  # stopped by emulated()
        try:
            await first.start()
            await second.start()  # stands by: its liveness endpoint answers meanwhile
            assert cluster.store.find(leases, NS, "ha")["spec"]["holderIdentity"] == "pod-a"
            await first.kill()  # no release: the standby must wait for the Lease to run out
            await eventually(
                lambda: cluster.store.find(leases, NS, "ha")["spec"]["holderIdentity"] == "pod-b",
                seconds=15,
                what="the standby holding the Lease",
            )
            lease = cluster.store.find(leases, NS, "ha")["spec"]
            assert lease["leaseTransitions"] == 1
            cluster.create(service_obj("after-crash", hosted()))
            await cluster.wait_phase("after-crash", "Ready", seconds=20)
        finally:
            await first.stop()

"""Two replicas with kopf peering: only the leader writes; the other takes over when it stops."""

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

        def replica(workdir: Path, pod: str, priority: int) -> Operator:
            args = ("--peering=ballast", "--all-namespaces", f"--priority={priority}")
            return Operator(
                cluster.api, workdir, probes=cluster.fleet.override, args=args, env={"POD_ID": pod}
            )

        leader, standby = replica(dirs[0], "pod-a", 100), replica(dirs[1], "pod-b", 50)
        cluster.operator = leader  # stopped by emulated()
        try:
            await leader.start()
            await standby.start()
            peering = cluster.store.find(
                cluster.store.kind("kopf.dev", "v1", "clusterkopfpeerings"), None, "ballast"
            )
            assert peering is not None  # created by the operator when missing
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

            await leader.stop()  # graceful: kopf removes it from the peering object
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

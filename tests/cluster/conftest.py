"""Fixtures for the real control-plane tier.

`control_plane` (session) starts etcd, kube-apiserver and kube-controller-manager
once; `fresh_control_plane` gives a test its own empty one; `fake_kubelet`
(session) adds a Ready Node so pods run; `kubectl` and `helm` are the real CLIs
bound to the admin kubeconfig; `llmservice_crd` (session) applies `crds/`;
`namespace` is a fresh namespace per test; `ballast_release` (session) is
charts/ballast installed for its ServiceAccounts and RBAC (CRDs and gateway off).
Missing binaries FAIL the tier with the command that builds them: a silent skip
would hide a regression in CI. `BALLAST_SKIP_CLUSTER=1` skips it explicitly.
Every test under this directory is marked `cluster`.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._release import CHART, Release
from .binaries import REPO, Binaries, BinariesMissing
from .controlplane import ControlPlane
from .fakekubelet import FakeKubelet
from .kubeapi import ApiError, established
from .poll import wait_for
from .tools import Tool, tools_dir

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in tests/cluster/ with `cluster` (this hook sees all items)."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(cluster_binaries: Binaries) -> Iterator[ControlPlane]:
    """The session's control plane, shared by every test in this directory."""
    with ControlPlane(cluster_binaries) as plane:
        yield plane


def _binaries() -> Binaries:
    if os.environ.get("BALLAST_SKIP_CLUSTER") == "1":
        pytest.skip("BALLAST_SKIP_CLUSTER=1: real control-plane tier skipped on request")
    try:
        return Binaries.from_cache()
    except BinariesMissing as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def cluster_binaries() -> Binaries:
    """The built binaries; fails (or skips on BALLAST_SKIP_CLUSTER=1) when they are missing."""
    return _binaries()


@pytest.fixture
def fresh_control_plane(cluster_binaries: Binaries) -> Iterator[ControlPlane]:
    """A control plane of the test's own (about 5 s), for tests that need an empty server."""
    with ControlPlane(cluster_binaries) as plane:
        yield plane


@pytest.fixture(scope="session")
def fake_kubelet(control_plane: ControlPlane) -> Iterator[FakeKubelet]:
    """A Ready Node named `fake-node` (with nvidia.com/gpu capacity) that runs pods."""
    with control_plane.fake_kubelet() as kubelet:
        yield kubelet


@pytest.fixture(scope="session")
def k8s_tools() -> Path:
    return tools_dir()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane, k8s_tools: Path) -> Tool:
    return Tool(k8s_tools / "kubectl", control_plane.kubeconfig)


@pytest.fixture(scope="session")
def helm(
    control_plane: ControlPlane, k8s_tools: Path, tmp_path_factory: pytest.TempPathFactory
) -> Tool:
    home = tmp_path_factory.mktemp("helm-home")
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return Tool(k8s_tools / "helm", control_plane.kubeconfig, env)


@pytest.fixture(scope="session")
def llmservice_crd(kubectl: Tool, control_plane: ControlPlane) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side -f crds/`, waited on until Established.

    Returns the apply's result so a test can check it printed no warnings. The
    garbage collector learns a new kind at its next discovery sync (up to 30 s), so
    tests relying on GC of LLMService children must poll generously.
    """
    result = kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    # Polled through the API: `kubectl wait` (1.33) fails at once with "status.conditions
    # accessor error" when it reads the CRD before its first condition is set.
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llmservices.ballast.dev"
    wait_for(
        lambda: established(control_plane.api.get(path)),
        timeout=60,
        what="the LLMService CRD to be Established",
    )
    return result


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (not awaited) afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    control_plane.api.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    try:
        control_plane.api.delete(f"/api/v1/namespaces/{name}")
    except ApiError as err:
        if err.status != 404:
            raise


@pytest.fixture(scope="session")
def ballast_release(helm: Tool, llmservice_crd: subprocess.CompletedProcess[str]) -> Release:
    """charts/ballast installed into the shared plane for its ServiceAccounts and RBAC.

    CRDs off (`llmservice_crd` applied them with kubectl's field manager, which helm's
    server-side apply would conflict with) and no gateway pods. The chart's operator
    Deployment has one replica whose pod (on the fake kubelet, if running) runs nothing:
    tests run the real operator as a local process with the ServiceAccount's token.
    """
    release = Release("ballast-it", "ballast-it-system")
    helm(*release.install_args(CHART, "crds.enabled=false", "gateway.replicaCount=0"))
    return release

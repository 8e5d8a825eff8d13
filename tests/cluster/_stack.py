"""The chart installed into a control plane and the real operator running as its ServiceAccount.

Shared by the modules that run the operator as users do (`test_controller.py`,
`test_failures.py`): each module builds its own stack, so its audit log holds only
its own story.
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._llmservices import listable
from ._operator import AuditedPlane, Fleet, OperatorProcess
from ._release import CHART, CRD_PATH, Release, helm_for
from .controlplane import ControlPlane
from .fakeengine import add_address, remove_address
from .kubeapi import JSON, ApiError, KubeApi, established
from .poll import wait_for
from .procs import ManagedProcess, free_port

RELEASE = Release("ballast", "ballast-system")
OPERATOR_USER = RELEASE.user("operator")


def install_chart(plane: AuditedPlane, k8s_tools: Path, helm_home: Path) -> Release:
    """The chart as users install it (CRD included), without gateway pods."""
    helm = helm_for(plane, k8s_tools, helm_home)
    helm(*RELEASE.install_args(CHART, "gateway.replicaCount=0"))
    wait_for(
        lambda: established(plane.api.get(CRD_PATH)) and listable(plane.api),
        timeout=60,
        what="the chart's LLMService CRD",
    )
    return RELEASE


def chart_operator_container(api: KubeApi, release: Release) -> JSON:
    """The chart's operator container, as the API server stored its Deployment."""
    deployment = api.get(
        f"/apis/apps/v1/namespaces/{release.namespace}/deployments/{release.name}-operator"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def chart_operator_args(api: KubeApi, release: Release, health_port: int) -> list[str]:
    """The chart's operator container args, with the ports moved to loopback.

    The metrics server is turned off: this tier listens on loopback only.
    """
    args = []
    for arg in chart_operator_container(api, release)["args"]:
        if arg.startswith("--metrics-port="):
            arg = "--metrics-port=0"
        elif arg.startswith("--liveness="):
            arg = f"--liveness=http://127.0.0.1:{health_port}/healthz"
        args.append(arg)
    assert args[0] == "run", args
    return args


def chart_operator_env(api: KubeApi, release: Release) -> dict[str, str]:
    """The chart's operator container environment (plain values; not the downward API's)."""
    env = chart_operator_container(api, release).get("env", [])
    return {e["name"]: e["value"] for e in env if "value" in e}


def operator_process(
    plane: AuditedPlane, release: Release, fleet: Fleet, workdir: Path, **env: str
) -> OperatorProcess:
    """The operator with a TokenRequest token of the chart's operator ServiceAccount (not started)."""
    token = plane.token_for(release.namespace, release.serviceaccount("operator"))
    kubeconfig = plane.kubeconfig_for_token(token, workdir / "operator.kubeconfig", "operator")
    health_port = free_port()
    return OperatorProcess(
        kubeconfig,
        chart_operator_args(plane.api, release, health_port),
        health_port,
        workdir / "operator.log",
        env={
            **chart_operator_env(plane.api, release),
            "BALLAST_PROBE_URL_OVERRIDE": json.dumps(fleet.override),
            "BALLAST_SECRET_RETRY": "1",
            "POD_ID": "ballast-operator-test",
            "POD_NAMESPACE": release.namespace,
            **env,
        },
    )


@contextlib.contextmanager
def running_operator(
    plane: AuditedPlane, k8s_tools: Path, tmp_path_factory: pytest.TempPathFactory, **env: str
) -> Iterator[OperatorProcess]:
    """The chart installed and its operator running (probes at a loopback Fleet); stopped after."""
    release = install_chart(plane, k8s_tools, tmp_path_factory.mktemp("helm-home"))
    with Fleet() as fleet:
        op = operator_process(plane, release, fleet, tmp_path_factory.mktemp("operator"), **env)
        try:
            op.start()
            yield op
        finally:
            op.stop()


# --- `ballast gateway` as a local process that the operator finds as the chart's gateway ---

#: The local gateway's address on `lo`: in the served range (the API server refuses
#: loopback in EndpointSlices) but far above what the fake kubelet hands out to pods.
GATEWAY_IP = "10.245.255.10"
#: managed-by of the gateway's hand-made EndpointSlice: the EndpointSlice controller
#: leaves slices it does not manage alone.
SLICE_MANAGER = "tests.ballast.dev"


class LocalGateway:
    """`ballast gateway` with the chart's gateway ServiceAccount token, listening (API and
    metrics) on a private address on `lo`, and an EndpointSlice for the chart's headless
    `<release>-gateway-internal` Service that lists it, so the operator reads its demand
    report through `BALLAST_GATEWAY_SERVICE` as it would a gateway pod's."""

    def __init__(
        self,
        plane: ControlPlane,
        release: Release,
        workdir: Path,
        namespaces: list[str],
        host: str = GATEWAY_IP,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.plane, self.release, self.host = plane, release, host
        self.port, self.metrics_port = free_port(), free_port()
        token = plane.token_for(release.namespace, release.serviceaccount("gateway"))
        kubeconfig = plane.kubeconfig_for_token(token, workdir / "gateway.kubeconfig", "gateway")
        argv = [sys.executable, "-m", "ballast.cli", "gateway", "--kubeconfig", str(kubeconfig),
                "--host", host, "--port", str(self.port), "--metrics-port", str(self.metrics_port),
                "--auth", "none", "--log-format", "text", *extra]  # fmt: skip
        for ns in namespaces:
            argv += ["--namespace", ns]
        self.process = ManagedProcess("gateway", argv, workdir / "gateway.log")
        self.slice_name = f"{release.name}-gateway-internal-local"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def service(self) -> str:
        return f"{self.release.name}-gateway-internal"

    def demand(self) -> JSON:
        url = f"http://{self.host}:{self.metrics_port}/internal/demand"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def metrics(self) -> str:
        url = f"http://{self.host}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/readyz", timeout=5) as r:
            return bool(r.status == 200)

    def _slice(self) -> JSON:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.slice_name,
                "namespace": self.release.namespace,
                "labels": {
                    "kubernetes.io/service-name": self.service,
                    "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.host], "conditions": {"ready": True}}],
            "ports": [{"name": "metrics", "port": self.metrics_port, "protocol": "TCP"}],
        }

    def start(self) -> LocalGateway:
        add_address(self.host)
        self.process.start()
        self.process.wait_until(self._ready, timeout=60, what="ready")
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.release.namespace}/endpointslices"
        self.plane.api.post(path, self._slice())
        return self

    def stop(self) -> None:
        self.process.stop()
        path = (
            f"/apis/discovery.k8s.io/v1/namespaces/{self.release.namespace}"
            f"/endpointslices/{self.slice_name}"
        )
        try:
            self.plane.api.delete(path)
        except ApiError as err:
            if err.status != 404:
                raise
        remove_address(self.host)

    def __enter__(self) -> LocalGateway:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()

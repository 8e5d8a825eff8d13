"""The chart installed into a control plane and the real operator running as its ServiceAccount.

Shared by the modules that run the operator as users do (`test_controller.py`,
`test_failures.py`): each module builds its own stack, so its audit log holds only
its own story.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._llmservices import listable
from ._operator import AuditedPlane, Fleet, OperatorProcess
from ._release import CHART, CRD_PATH, Release, helm_for
from .kubeapi import JSON, KubeApi, established
from .poll import wait_for
from .procs import free_port

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

"""Issue 15 on the real control plane: the gateway's client keys.

- The chart's gateway ServiceAccount may list and watch Secrets only in its own namespace,
  and the real gateway, running with that token, accepts exactly the keys of Secrets
  labelled ``ballast.dev/gateway-key`` there (the chart's own random key included), follows
  rotation and revocation without a restart, and ignores unlabelled Secrets and labelled
  ones elsewhere.
- The chart's random client key is kept across ``helm upgrade``.

The engine NetworkPolicies the operator creates are proven with the chart's operator in
test_controller.py.
"""

from __future__ import annotations

import base64
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._release import CHART, Release
from .controlplane import ControlPlane
from .kubeapi import JSON
from .poll import wait_for
from .procs import ManagedProcess
from .tools import Tool

pytestmark = pytest.mark.usefixtures("llmservice_crd")

KEY_LABEL = "ballast.dev/gateway-key"
TEAM_KEY = "sk-team-a-0123456789abcdef"
ROTATED_KEY = "sk-team-a-rotated-9876543210"
OTHER_KEY = "sk-unlabelled-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def key_secret(name: str, key: str, labelled: bool = True) -> JSON:
    labels = {KEY_LABEL: "true"} if labelled else {"app": "other"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "stringData": {"key": key},
    }


def status_with(port: int, key: str) -> int:
    """The gateway's status for GET /v1/models/none with ``key``: 401 refused, 404 admitted."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/none", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.fixture
def keyed_gateway(
    control_plane: ControlPlane, ballast_release: Release, namespace: str, tmp_path: Path
) -> Iterator[int]:
    """The real gateway with the chart's gateway token and --auth keys; yields its port."""
    token = control_plane.token_for(
        ballast_release.namespace, ballast_release.serviceaccount("gateway")
    )
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "gw.kubeconfig")
    port = free_port()
    argv = [sys.executable, "-m", "ballast.cli", "gateway", "--kubeconfig", str(kubeconfig),
            "--namespace", namespace, "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(free_port()), "--auth", "keys",
            "--auth-namespace", ballast_release.namespace]  # fmt: skip
    proc = ManagedProcess("gateway-keys", argv, tmp_path / "gateway.log")
    proc.start()
    try:
        proc.wait_until(lambda: status_with(port, "x") == 401, timeout=60, what="serving")
        yield port
    finally:
        proc.stop()
    assert TEAM_KEY not in (tmp_path / "gateway.log").read_text()


def test_gateway_reads_only_labelled_key_secrets_of_its_own_namespace(
    control_plane: ControlPlane,
    ballast_release: Release,
    namespace: str,
    kubectl: Tool,
    keyed_gateway: int,
    tmp_path: Path,
) -> None:
    api, home = control_plane.api, ballast_release.namespace
    secrets = f"/api/v1/namespaces/{home}/secrets"
    api.post(secrets, key_secret("team-a", TEAM_KEY))
    api.post(secrets, key_secret("not-a-key", OTHER_KEY, labelled=False))
    api.post(f"/api/v1/namespaces/{namespace}/secrets", key_secret("elsewhere", ROTATED_KEY))
    try:
        port = keyed_gateway
        wait_for(lambda: status_with(port, TEAM_KEY) == 404, timeout=30, what="key loaded")
        assert status_with(port, OTHER_KEY) == 401  # not labelled
        assert status_with(port, ROTATED_KEY) == 401  # labelled, but not the gateway's namespace
        chart_key = api.get(f"{secrets}/{ballast_release.name}-gateway-key")["data"]["key"]
        assert status_with(port, base64.b64decode(chart_key).decode()) == 404  # helm's key

        # rotation and revocation, no restart
        api.merge_patch(f"{secrets}/team-a", {"stringData": {"key": ROTATED_KEY}})
        wait_for(lambda: status_with(port, ROTATED_KEY) == 404, timeout=30, what="rotated")
        assert status_with(port, TEAM_KEY) == 401
        api.delete(f"{secrets}/team-a")
        wait_for(lambda: status_with(port, ROTATED_KEY) == 401, timeout=30, what="revoked")
    finally:
        for path in (f"{secrets}/not-a-key", f"/api/v1/namespaces/{namespace}/secrets/elsewhere"):
            api.delete(path)

    token = control_plane.token_for(home, ballast_release.serviceaccount("gateway"))
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")

    def can_i(*args: str) -> str:
        return str(
            kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False).stdout
        ).strip()

    for verb in ("list", "watch"):
        assert can_i(verb, "secrets", "-n", home) == "yes", verb
        assert can_i(verb, "secrets", "-n", namespace) == "no", verb
        assert can_i(verb, "secrets", "--all-namespaces") == "no", verb
    for verb in ("create", "patch", "delete"):
        assert can_i(verb, "secrets", "-n", home) == "no", verb


def test_the_charts_client_key_survives_an_upgrade(
    control_plane: ControlPlane, helm: Tool, namespace: str
) -> None:
    api = control_plane.api
    release = Release("ballast-key", "ballast-key-system")
    helm(*release.install_args(CHART, "crds.enabled=false", "gateway.replicaCount=0"))
    try:
        # the chart's client key survives an upgrade (lookup), so clients keep working
        key_path = f"/api/v1/namespaces/{release.namespace}/secrets/ballast-key-gateway-key"
        key = api.get(key_path)["data"]["key"]
        assert base64.b64decode(key).decode().startswith("sk-ballast-")
        helm("upgrade", release.name, str(CHART), "--namespace", release.namespace,
             "--reuse-values", "--set", "gateway.logLevel=debug")  # fmt: skip
        assert api.get(key_path)["data"]["key"] == key
    finally:
        helm("uninstall", release.name, "--namespace", release.namespace, "--wait")

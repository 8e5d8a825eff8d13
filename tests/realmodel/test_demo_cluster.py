"""`make demo` against a reachable kube context: the chart installed, a real model answering.

The cluster here is the control plane of the cluster tier with the process kubelet, which
runs every pod the demo creates for real: the chart's operator and gateway as `ballast`
processes (with their ServiceAccounts' tokens) and the llama.cpp engines as
`llama-server`. `hack/demo.py` is run as a user would, with only `KUBECONFIG` pointing at
that cluster (and the model served from the node's file, as the cluster has no network):
it finds the context answering, installs the chart with helm, applies the LLMService,
talks to the gateway with the openai SDK, fails over, and removes all it created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.binaries import REPO, Binaries, BinariesMissing, kubernetes_version
from tests.cluster.controlplane import ControlPlane
from tests.cluster.poll import wait_for
from tests.cluster.processkubelet import ProcessKubelet, ServiceProxy

from .stack import HOST_MODELS, Missing, llama_server, model_dir


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ControlPlane, ProcessKubelet]]:
    if os.environ.get("BALLAST_SKIP_REALMODEL") == "1":
        pytest.skip("BALLAST_SKIP_REALMODEL=1: real-model tier skipped on request")
    try:
        binaries = Binaries.from_cache()
        server, models = llama_server(), model_dir()
    except (BinariesMissing, Missing) as err:
        pytest.fail(str(err), pytrace=False)
    plane = ControlPlane(binaries)
    plane.start()
    try:
        with ServiceProxy(plane.api) as proxy:

            def credentials(namespace: str, account: str) -> Path:
                token = plane.token_for(namespace, account)
                return plane.kubeconfig_for_token(
                    token, tmp_path / f"{namespace}-{account}.kubeconfig"
                )

            kubelet = ProcessKubelet(
                plane.client_for_user("process-kubelet", ("system:masters",)),
                "process-node",
                server=server,
                workdir=tmp_path / "pods",
                image_dirs={"/app": server.parent},
                host_paths={HOST_MODELS: models},
                kubelet_version=kubernetes_version(),
                credentials=credentials,
                probe_override=proxy.override,
                # not the addresses the realmodel stack's kubelet hands out after this test
                served_network="10.245.192.0/20",
            )
            kubelet.start()
            try:
                yield plane, kubelet
            finally:
                kubelet.stop()
    finally:
        plane.stop()


def test_make_demo_installs_the_chart_in_the_current_context_and_a_real_model_answers(
    cluster: tuple[ControlPlane, ProcessKubelet], tmp_path: Path
) -> None:
    plane, kubelet = cluster
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BALLAST_", "KUBE"))},
        "KUBECONFIG": str(plane.kubeconfig),
        "BALLAST_DEMO_MODEL": "hostpath",  # no network here: the node's model file
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "hack" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    assert "the current kube context answers" in log, log[-3000:]
    assert "helm upgrade --install ballast" in log
    assert "installed the chart" in log
    # the gateway answered with the real model, streamed, and failed over to the fallback
    assert "x-ballast-backend: primary" in log, log[-3000:]
    assert "chunks, streamed as the engine produced them" in log
    failover = log.split("deleting the primary tier's pod")[1]
    assert "x-ballast-backend: fallback" in failover.split("primary back")[0], failover[:3000]
    assert "helm uninstall ballast" in log
    # everything the demo created goes (the garbage collector deletes the pods of what the
    # demo deleted); the chart's own pods ran as processes here
    wait_for(lambda: not kubelet.processes(), timeout=180, what="every pod's process stopped")
    left = plane.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    assert not [c for c in left if c["metadata"]["name"] == "llmservices.ballast.dev"]

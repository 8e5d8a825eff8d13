"""Ballast end to end on this machine, with a real model: the stack of the realmodel tier,
`make demo` and the real-model bench.

* the control plane of the cluster tier (etcd, kube-apiserver, kube-controller-manager);
* the process kubelet (`tests/cluster/processkubelet.py`): llamacpp pods run the real
  `llama-server` (`hack/llama/build.sh`) on their own address on `lo`, with the model
  (`hack/llama/model.sh`) where the pod spec says;
* the CRD, then the real operator (`ballast run`) and gateway (`ballast gateway`) as
  processes, the operator probing backends through `ServiceProxy` (no kube-proxy here);
* an LLMService with two llama.cpp tiers (`llmservice()`).

Everything started is stopped by `stop()` (also on interpreter exit), addresses on `lo`
included.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster._llmservices import listable, llms_path
from tests.cluster._operator import OperatorProcess
from tests.cluster.binaries import REPO, Binaries, kubernetes_version
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubeapi import JSON, ApiError, established
from tests.cluster.poll import wait_for
from tests.cluster.processkubelet import EngineProcess, ProcessKubelet, ServiceProxy
from tests.cluster.procs import ManagedProcess, free_port

MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
#: The node directory holding the model: a hostPath volume of each engine pod (declared in
#: the LLMService's `volumes`/`volumeMounts`), which the process kubelet maps to the local
#: model directory; the pod sees the file at MODEL_PATH.
HOST_MODELS = "/var/lib/ballast/models"
MODEL_PATH = f"/models/{MODEL_FILE}"
CRD_FILE = REPO / "crds" / "llmservices.ballast.dev.yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llmservices.ballast.dev"
API_VERSION = "ballast.dev/v1alpha1"


class Missing(RuntimeError):
    """A build this stack needs is not there; the message names the command that makes it."""


def _script(name: str) -> Path:
    """Run hack/llama/<name> (cached after the first run) and return what it prints."""
    out = subprocess.run(
        [str(REPO / "hack" / "llama" / name)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if out.returncode != 0:
        raise Missing(f"hack/llama/{name} failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def llama_server() -> Path:
    """The cached llama-server (built on first use: a few minutes)."""
    return _script("build.sh")


def model_dir() -> Path:
    """The directory holding the model file (fetched on first use)."""
    return _script("model.sh")


def llmservice(
    name: str,
    namespace: str,
    *,
    period: int = 1,
    args: tuple[str, ...] = (),
) -> JSON:
    """Two llama.cpp tiers of the same model: `primary` (priority 0) and `fallback` (1)."""
    # Gemma 3 270M is a base model and its GGUF carries no chat template: pass one (chatml,
    # which its tokenizer spells as plain text, so clients stop on "<|im_end|>" or "\n").
    own = ["--ctx-size", "2048", "--parallel", "4", "--chat-template", "chatml", *args]

    def backend(backend_name: str, priority: int) -> JSON:
        return {
            "name": backend_name,
            "engine": "llamacpp",
            "model": MODEL_PATH,
            "args": list(own),
            "volumes": [{"name": "models", "hostPath": {"path": HOST_MODELS, "type": "Directory"}}],
            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
            "priority": priority,
            "health": {"periodSeconds": period, "failureThreshold": 2},
        }

    return {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "servedModelName": "gemma-3-270m",
            "backends": [backend("primary", 0), backend("fallback", 1)],
            "fallback": {"healthyAfter": 1, "unhealthyAfter": 2, "perTryTimeoutSeconds": 60},
        },
    }


class RealStack:
    """Control plane, process kubelet, operator and gateway; `apply()` an LLMService."""

    def __init__(
        self,
        namespace: str = "demo",
        *,
        workdir: Path | None = None,
        binaries: Binaries | None = None,
        server: Path | None = None,
        models: Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ballast-real-"))
        self.binaries = binaries or Binaries.from_cache()
        self.server = server or llama_server()
        self.models = models or model_dir()
        self.log = log or (lambda _msg: None)
        self.plane = ControlPlane(self.binaries)
        self.kubelet: ProcessKubelet | None = None
        self.proxy: ServiceProxy | None = None
        self.operator: OperatorProcess | None = None
        self.gateway: ManagedProcess | None = None
        self.gateway_port = 0
        self.metrics_port = 0
        self.operator_metrics_port = 0
        #: Every scrape() of the gateway's and the operator's /metrics, in order.
        self.scrapes: list[str] = []
        #: The client key the gateway accepts (a labelled Secret, as the chart creates one).
        self.api_key = "sk-ballast-" + secrets.token_hex(16)

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> RealStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.plane.start()
        self.log(f"control plane {kubernetes_version()} up at {self.plane.url}")
        api = self.plane.client_for_user("process-kubelet", ("system:masters",))
        self.kubelet = ProcessKubelet(
            api,
            "process-node",
            server=self.server,
            workdir=self.workdir / "pods",
            image_dirs={"/app": self.server.parent},
            host_paths={HOST_MODELS: self.models},
            kubelet_version=kubernetes_version(),
        )
        self.kubelet.start()
        self.log(f"process kubelet: Node {self.kubelet.node_name} runs llamacpp pods as processes")
        self.proxy = ServiceProxy(self.plane.api).__enter__()
        crd = yaml.safe_load(CRD_FILE.read_text())
        self.api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        wait_for(
            lambda: established(self.api.get(CRD_PATH)) and listable(self.api),
            timeout=60,
            what="the LLMService CRD",
        )
        self.api.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
        )
        wait_for(
            lambda: self.api.exists(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default"),
            timeout=60,
            what="the namespace's default ServiceAccount",
        )
        self._start_gateway()
        self._start_operator()

    def _start_operator(self) -> None:
        health = free_port()
        self.operator_metrics_port = free_port()
        args = ["run", "--namespace", self.namespace,
                "--metrics-port", str(self.operator_metrics_port),
                "--liveness", f"http://127.0.0.1:{health}/healthz", "--log-format", "plain",
                "--gateway-endpoint", self.base_url]  # fmt: skip
        assert self.proxy is not None
        self.operator = OperatorProcess(
            self.plane.kubeconfig,
            args,
            health,
            self.workdir / "operator.log",
            env={
                "BALLAST_PROBE_URL_OVERRIDE": json.dumps({"*": self.proxy.override}),
                "POD_NAMESPACE": self.namespace,
                "BALLAST_METRICS_ADDRESS": "127.0.0.1",  # loopback only, like everything here
            },
        )
        self.operator.start()
        self.log("operator (ballast run) running")

    def _start_gateway(self) -> None:
        self.gateway_port = port = free_port()
        self.metrics_port = free_port()
        key = base64.b64encode(self.api_key.encode()).decode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "client-key", "labels": {"ballast.dev/gateway-key": "true"}},
            "data": {"key": key},
        }
        self.api.post(f"/api/v1/namespaces/{self.namespace}/secrets", secret)
        argv = [sys.executable, "-m", "ballast.cli", "gateway",
                "--kubeconfig", str(self.plane.kubeconfig), "--namespace", self.namespace,
                "--auth-namespace", self.namespace,
                "--host", "127.0.0.1", "--port", str(port),
                "--metrics-port", str(self.metrics_port)]  # fmt: skip
        self.gateway = ManagedProcess("gateway", argv, self.workdir / "gateway.log")
        self.gateway.start()
        self.gateway.wait_until(lambda: self._get("/healthz") == 200, 60, "serving")
        self.log(f"gateway (ballast gateway) on {self.base_url}")

    def stop(self) -> None:
        """Stop everything this stack started (idempotent)."""
        atexit.unregister(self.stop)
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.operator is not None:
            self.operator.stop()
            self.operator = None
        if self.kubelet is not None:
            kubelet, self.kubelet = self.kubelet, None
            try:
                kubelet.stop()  # stops every engine process and removes the addresses
            except RuntimeError as err:
                self.log(f"process kubelet: {err}")
        if self.proxy is not None:
            self.proxy.__exit__()
            self.proxy = None
        self.plane.stop()

    # -- use -------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        return self.plane.api

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/v1"

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.gateway_port}{path}", timeout=5
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return err.code

    def metrics(self, port: int | None = None) -> str:
        """The gateway's /metrics (or, given its port, the operator's)."""
        url = f"http://127.0.0.1:{port or self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def scrape(self) -> str:
        """Scrape the gateway and the operator, as Prometheus would; kept in ``scrapes``."""
        text = self.metrics() + self.metrics(self.operator_metrics_port)
        self.scrapes.append(text)
        return text

    def apply(self, obj: JSON) -> JSON:
        return self.api.post(llms_path(self.namespace), obj)

    def llmservice(self, name: str) -> JSON:
        return self.api.get(llms_path(self.namespace, name))

    def phase(self, name: str) -> str:
        try:
            return str(self.llmservice(name).get("status", {}).get("phase", ""))
        except ApiError:
            return ""

    def engines(self) -> dict[str, EngineProcess]:
        """backend name -> its (one) engine process."""
        assert self.kubelet is not None
        out = {}
        for key, engine in self.kubelet.processes(self.namespace).items():
            pod = self.api.get(f"/api/v1/namespaces/{key.replace('/', '/pods/', 1)}")
            out[pod["metadata"]["labels"]["ballast.dev/backend"]] = engine
        return out

    def in_route(self, name: str) -> dict[str, bool]:
        backends = self.llmservice(name).get("status", {}).get("backends") or []
        return {b["name"]: bool(b.get("inRoute")) for b in backends}

    def wait_ready(
        self, name: str, timeout: float = 300.0, every: Callable[[], None] | None = None
    ) -> None:
        """Wait for phase Ready with both backends in route (calls `every` about every 2 s)."""
        last = [0.0]

        def ready() -> bool:
            if self.kubelet is not None and self.kubelet.errors:
                raise AssertionError(f"the process kubelet failed: {self.kubelet.errors[0]}")
            if every is not None and time.monotonic() - last[0] >= 2:
                last[0] = time.monotonic()
                every()
            route = self.in_route(name)
            return self.phase(name) == "Ready" and len(route) == 2 and all(route.values())

        wait_for(ready, timeout=timeout, interval=0.5, what=f"LLMService {name} Ready")

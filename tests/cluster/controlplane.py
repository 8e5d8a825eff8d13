"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver and
kube-controller-manager built by `hack/cluster/build.sh` (`make cluster-bin`).

Like controller-runtime's envtest, plus the controller-manager, so garbage
collection, Deployments, namespaces and ServiceAccounts behave as in a cluster.
It has no kubelet and no scheduler (see `fakekubelet.py`). It knows nothing about
Ballast. `python -m tests.cluster.controlplane` starts one for humans.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .audit import POLICY, AuditEvent, AuditLog
from .binaries import Binaries, BinariesMissing, kubernetes_version
from .fakekubelet import FakeKubelet
from .kubeapi import Credentials, KubeApi
from .pki import CertificateAuthority, KeyPair, service_account_keys
from .procs import ManagedProcess, free_port

SERVICE_CIDR = "10.0.0.0/24"
ADMIN_USER = "ballast-test-admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
# What Ballast's tests need from a cluster: ownership, workloads, namespaces, SAs, HPAs, RBAC.
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "disruption-controller",
    "horizontal-pod-autoscaler-controller",
    "job-controller",
    "persistentvolumeclaim-protection-controller",
    "clusterrole-aggregation-controller",
)


def write_kubeconfig(
    path: Path, server: str, ca: Path, user: str, credentials: Credentials
) -> Path:
    """Write a one-context kubeconfig for `user` (certificate pair or token)."""
    auth: dict[str, str] = {}
    if credentials.token:
        auth["token"] = credentials.token
    if credentials.cert and credentials.key:
        auth["client-certificate"] = str(credentials.cert)
        auth["client-key"] = str(credentials.key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ballast-test",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": user, "context": {"cluster": "ballast-test", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in a temp dir.

    Use as a context manager, or call `start()` and `stop()`; `stop()` also runs on
    interpreter exit and tolerates a half-started plane.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        start_timeout: float = 90.0,
    ) -> None:
        self.binaries = binaries or Binaries.from_cache()
        self.controllers = tuple(controllers)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ballast-cp-"))
        self.keep_workdir = keep_workdir
        self.start_timeout = start_timeout
        self.pki = self.workdir / "pki"
        self.audit = AuditLog(self.workdir / "audit.log")
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.url = ""
        self.processes: list[ManagedProcess] = []
        self._ca: CertificateAuthority | None = None
        self._admin: KeyPair | None = None

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start all three components and wait until they serve; stop all on failure."""
        atexit.register(self.stop)
        try:
            self._write_pki()
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._start_controller_manager()
            # Pods need their namespace's "default" ServiceAccount (admission checks it).
            self.processes[-1].wait_until(
                lambda: bool(self.api.get("/api/v1/namespaces/default/serviceaccounts/default")),
                self.start_timeout,
                "creating ServiceAccounts",
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component (newest first) and remove the temp dir. Idempotent."""
        atexit.unregister(self.stop)
        while self.processes:
            self.processes.pop().stop()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    # -- clients ---------------------------------------------------------------------

    @property
    def ca(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def api(self) -> KubeApi:
        """A client authenticated as the admin user (group system:masters)."""
        return KubeApi(self.url, self.ca, self._admin_credentials())

    def client_for_user(self, user: str, groups: tuple[str, ...] = ()) -> KubeApi:
        """A client with a fresh certificate for `user` in `groups` (RBAC applies)."""
        pair = self._issue_client(user, groups)
        return KubeApi(self.url, self.ca, Credentials(pair.cert, pair.key))

    def fake_kubelet(self, node_name: str = "fake-node") -> FakeKubelet:
        """A (not yet started) fake kubelet for this plane, writing as user `fake-kubelet`."""
        api = self.client_for_user("fake-kubelet", ("system:masters",))
        return FakeKubelet(api, node_name, kubelet_version=kubernetes_version())

    def client_for_token(self, token: str) -> KubeApi:
        return KubeApi(self.url, self.ca, Credentials(token=token))

    def token_for(self, namespace: str, serviceaccount: str, expiration: int = 3600) -> str:
        """A bound token for an existing ServiceAccount, from the TokenRequest API."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{serviceaccount}/token"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration},
        }
        return str(self.api.post(path, body)["status"]["token"])

    def kubeconfig_for_token(self, token: str, path: Path | None = None, user: str = "sa") -> Path:
        """Write a kubeconfig that authenticates with `token`; returns its path."""
        if path is None:
            fd, name = tempfile.mkstemp(prefix="token-", suffix=".kubeconfig", dir=self.workdir)
            os.close(fd)
            path = Path(name)
        return write_kubeconfig(path, self.url, self.ca, user, Credentials(token=token))

    def writes(self, user: str | None = None, *, since: int = 0) -> list[AuditEvent]:
        """Write requests the audit log recorded (optionally by `user`, after a mark)."""
        return self.audit.writes(user, since=since)

    # -- components ------------------------------------------------------------------

    def _admin_credentials(self) -> Credentials:
        if self._admin is None:
            raise RuntimeError("control plane not started")
        return Credentials(self._admin.cert, self._admin.key)

    def _issue_client(self, user: str, groups: tuple[str, ...]) -> KeyPair:
        if self._ca is None:
            raise RuntimeError("control plane not started")
        stem = "user-" + "".join(c if c.isalnum() else "-" for c in user)
        return self._ca.issue(stem, user, organizations=groups)

    def _write_pki(self) -> None:
        self._ca = CertificateAuthority(self.pki)
        self._ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
            server=True,
        )
        self._admin = self._issue_client(ADMIN_USER, ("system:masters",))
        service_account_keys(self.pki)
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(POLICY))

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log")
        self.processes.append(proc)
        proc.start()
        return proc

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=test={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        proc.wait_until(lambda: _etcd_healthy(client_url), self.start_timeout, "healthy")
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        pki = self.pki
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--allow-privileged=true",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit.path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--profiling=false",
            ],
        )
        proc.wait_until(lambda: self.api.text("/readyz") == "ok", self.start_timeout, "ready")
        write_kubeconfig(self.kubeconfig, self.url, self.ca, ADMIN_USER, self._admin_credentials())

    def _start_controller_manager(self) -> None:
        pair = self._issue_client(CONTROLLER_MANAGER_USER, ())
        kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            self.url,
            self.ca,
            CONTROLLER_MANAGER_USER,
            Credentials(pair.cert, pair.key),
        )
        port = free_port()
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.controller_manager),
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--controllers={','.join(self.controllers)}",
                f"--root-ca-file={self.ca}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                "--profiling=false",
            ],
        )
        proc.wait_until(
            lambda: _insecure_get(f"https://127.0.0.1:{port}/healthz") == "ok",
            self.start_timeout,
            "healthy",
        )


def _etcd_healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
        body: dict[str, Any] = yaml.safe_load(resp.read())
    return body.get("health") == "true"


def _insecure_get(url: str) -> str:
    """GET a loopback health endpoint served with the component's self-signed cert."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        return str(resp.read().decode())


def main() -> int:
    """Start a control plane, print how to reach it, stop on Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))
    # Even when started in the background, where SIGINT is inherited as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        binaries = Binaries.from_cache()
    except BinariesMissing as err:
        print(err, file=sys.stderr)
        return 1
    with ControlPlane(binaries) as plane, plane.fake_kubelet() as kubelet:
        print(f"control plane {kubernetes_version()} up at {plane.url}")
        print(f"fake kubelet: Node {kubelet.node_name} runs pods (never their containers)")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print(f"audit log: {plane.audit.path}   logs: {plane.workdir / 'logs'}")
        print("Ctrl-C stops it and removes everything.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())

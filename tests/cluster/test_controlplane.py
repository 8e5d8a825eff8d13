"""The test control plane itself: the pinned version, RBAC, the audit log, garbage
collection, Deployments on the fake kubelet, and teardown without leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .binaries import REPO, Binaries, kubernetes_version
from .controlplane import ControlPlane
from .fakekubelet import NOT_READY_ANNOTATION, FakeKubelet
from .kubeapi import JSON, ApiError, KubeApi
from .poll import wait_for
from .procs import ProcessFailed
from .tools import Tool


def configmap(name: str, owner: JSON | None = None, *, block: bool = False) -> JSON:
    meta: JSON = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": block,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def deployment(name: str, replicas: int, annotations: dict[str, str] | None = None) -> JSON:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "registry.invalid/never-pulled:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            },
        },
    }


def live_processes_mentioning(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_server_reports_the_pinned_release(control_plane: ControlPlane, kubectl: Tool) -> None:
    version = control_plane.api.get("/version")
    assert version["gitVersion"] == kubernetes_version()
    assert (version["major"], version["minor"]) == tuple(kubernetes_version()[1:].split(".")[:2])
    out = kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{kubernetes_version()}"' in out


def test_helm_kube_version_check_sees_the_real_version(helm: Tool, tmp_path: Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {v: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    )
    out = helm("template", "probe", str(chart), "--validate").stdout
    assert f"v: '{kubernetes_version()}'" in out


def test_rbac_denies_an_unprivileged_serviceaccount(
    control_plane: ControlPlane, namespace: str, kubectl: Tool
) -> None:
    api = control_plane.api
    api.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}},
    )
    token = control_plane.token_for(namespace, "nobody")
    client = control_plane.client_for_token(token)
    review = client.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review["status"]["userInfo"]["username"] == (f"system:serviceaccount:{namespace}:nobody")
    with pytest.raises(ApiError) as denied:
        client.get(f"/api/v1/namespaces/{namespace}/secrets")
    assert denied.value.status == 403
    kubeconfig = control_plane.kubeconfig_for_token(token)
    answer = kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert answer.stdout.strip() == "no"


def test_audit_log_attributes_each_write_to_its_user(
    control_plane: ControlPlane, namespace: str
) -> None:
    api = control_plane.api
    mark = control_plane.audit.mark()
    api.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-edit"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
            ],
        },
    )
    alice = control_plane.client_for_user("alice")
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    wait_for(lambda: _can_create(alice, path), timeout=10, what="alice's RoleBinding to apply")
    alice.get(path)  # reads are not audited
    alice.merge_patch(f"{path}/by-alice", {"data": {"k": "w"}})

    by_alice = control_plane.writes(user="alice", since=mark)
    assert [(e.verb, e.resource, e.name, e.code) for e in by_alice] == [
        ("create", "configmaps", "by-alice", 201),
        ("patch", "configmaps", "by-alice", 200),
    ]
    assert all(e.namespace == namespace for e in by_alice)
    admin_writes = control_plane.writes(user="ballast-test-admin", since=mark)
    assert ("create", "rolebindings", "alice-edit") in {
        (e.verb, e.resource, e.name) for e in admin_writes
    }


def _can_create(client: KubeApi, path: str) -> bool:
    try:
        client.post(path, configmap("by-alice"))
    except ApiError as err:
        if err.status == 403:
            return False
        raise
    return True


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_garbage_collector_deletes_children_of_a_deleted_owner(
    control_plane: ControlPlane, namespace: str, propagation: str
) -> None:
    api = control_plane.api
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    parent = api.post(base, configmap("parent"))
    api.post(base, configmap("child", parent, block=propagation == "Foreground"))
    api.delete(f"{base}/parent", {"propagationPolicy": propagation})
    wait_for(lambda: not api.exists(f"{base}/child"), what="GC to delete the child")
    wait_for(lambda: not api.exists(f"{base}/parent"), what="the parent to be gone")


def test_garbage_collector_orphans_children_on_request(
    control_plane: ControlPlane, namespace: str
) -> None:
    api = control_plane.api
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    parent = api.post(base, configmap("parent"))
    api.post(base, configmap("child", parent))
    api.delete(f"{base}/parent", {"propagationPolicy": "Orphan"})
    wait_for(lambda: not api.exists(f"{base}/parent"), what="the parent to be gone")

    def orphaned_child() -> JSON | None:
        child = api.get(f"{base}/child")
        return None if child["metadata"].get("ownerReferences") else child

    child = wait_for(orphaned_child, what="GC to remove the child's ownerReference")
    assert child["data"] == {"k": "v"}


def test_deployment_becomes_available_on_the_fake_kubelet(
    control_plane: ControlPlane, fake_kubelet: FakeKubelet, namespace: str
) -> None:
    api = control_plane.api
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    api.post(path, deployment("engine", replicas=2))

    def available() -> JSON | None:
        d = api.get(f"{path}/engine")
        conditions = {c["type"]: c["status"] for c in d["status"].get("conditions", [])}
        ok = d["status"].get("availableReplicas") == 2 and conditions.get("Available") == "True"
        return d if ok else None

    wait_for(available, what="Deployment engine to become Available")
    pods = api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == fake_kubelet.node_name
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.244.")

    api.merge_patch(f"{path}/engine", {"spec": {"replicas": 1}})
    wait_for(
        lambda: len(api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]) == 1,
        what="the scaled-down pod to finish terminating",
    )


def test_fake_kubelet_keeps_marked_containers_unready(
    control_plane: ControlPlane, fake_kubelet: FakeKubelet, namespace: str
) -> None:
    api = control_plane.api
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    api.post(path, deployment("sick", replicas=1, annotations={NOT_READY_ANNOTATION: "engine"}))

    def running_pod() -> JSON | None:
        pods = api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = wait_for(running_pod, what="the pod to run")
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    assert api.get(f"{path}/sick")["status"].get("availableReplicas", 0) == 0


def _fail_inside(plane: ControlPlane, seen: list[int]) -> None:
    """Start `plane` as a test would, record its pids, then fail inside the block."""
    with plane:
        seen.extend(plane.pids)
        raise RuntimeError("test body failed")


def test_stop_leaves_no_process_and_no_files(cluster_binaries: Binaries) -> None:
    plane = ControlPlane(cluster_binaries)
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="test body failed"):
        _fail_inside(plane, pids)
    assert len(pids) == 3
    assert not any(_alive(pid) for pid in pids)
    assert not plane.workdir.exists()
    assert live_processes_mentioning(str(plane.workdir)) == []


def test_failed_start_stops_what_already_started(
    cluster_binaries: Binaries, tmp_path: Path
) -> None:
    good = cluster_binaries
    broken = Binaries(good.etcd, good.apiserver, controller_manager=Path("/bin/false"))
    plane = ControlPlane(broken, workdir=tmp_path / "cp")
    with pytest.raises(ProcessFailed, match="kube-controller-manager exited"):
        plane.start()
    assert plane.pids == []
    assert live_processes_mentioning(str(tmp_path / "cp")) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_up_serves_until_signalled(cluster_binaries: Binaries, kubectl: Tool) -> None:
    """`make cluster-up` (python -m tests.cluster.controlplane): usable, then gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.controlplane"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("export KUBECONFIG="):
                break
        kubeconfig = Path(lines[-1].strip().split("=", 1)[1])
        workdir = kubeconfig.parent
        nodes = kubectl("get", "nodes", "-o", "name", kubeconfig=kubeconfig).stdout
        assert nodes.strip() == "node/fake-node"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert live_processes_mentioning(str(workdir)) == []
    assert not workdir.exists()

"""The model cache on a real API server, with the controller-manager's Job controller.

The module runs the chart's operator (as its ServiceAccount, with the chart's RBAC)
against a control plane of its own. The fake kubelet runs the loader Jobs' pods and
finishes them when a test says so, with the loader's termination message (the
real loader, ``ballast fetch``, is proven against a fake hub in tests/fetch). Proven
here: the operator creates the claim and the loader Job, and holds the Deployment
at 0 replicas with no HPA while the Job runs; a completed Job gives CacheReady=True
with the loader's revision and size in status, an Event, and the Deployment scaled
to the HPA's minimum; two LLMServices asking for the same model share one claim
and one Job; a permanently failing loader gives CacheReady=False/DownloadFailed
with the loader's message and an Event, while another backend of the same service
serves; deleting the services deletes the claim Ballast created (with the last
user) and never an ``existingClaim``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._llmservices import API_VERSION, llms_path
from ._operator import AuditedPlane, OperatorProcess
from ._stack import OPERATOR_USER, running_operator
from .binaries import Binaries
from .fakekubelet import FakeKubelet
from .kubeapi import JSON, ApiError, KubeApi
from .poll import wait_for

JOB_LABEL = "batch.kubernetes.io/job-name"
#: Seconds before the operator runs a failed loader again (the default is 60, doubling).
LOADER_RETRY = 15


class Loaders:
    """How the fake kubelet finishes loader pods: by Job name, set by the test."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[int, str]] = {}
        self.lock = threading.Lock()

    def __call__(self, pod: JSON) -> tuple[int, str] | None:
        job = (pod["metadata"].get("labels") or {}).get(JOB_LABEL)
        if job is None:
            return (0, "")
        with self.lock:
            return self.outcomes.get(job)

    def finish(self, job: str, code: int, message: str) -> None:
        with self.lock:
            self.outcomes[job] = (code, message)


@pytest.fixture(scope="module")
def plane(cluster_binaries: Binaries) -> Iterator[AuditedPlane]:
    with AuditedPlane(cluster_binaries, audit_users=[OPERATOR_USER]) as plane:
        yield plane


@pytest.fixture(scope="module")
def loaders(plane: AuditedPlane) -> Iterator[Loaders]:
    loaders = Loaders()
    kubelet: FakeKubelet = plane.fake_kubelet()
    kubelet.job_outcome = loaders
    with kubelet:
        yield loaders


@pytest.fixture(scope="module")
def operator(
    plane: AuditedPlane,
    loaders: Loaders,
    k8s_tools: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    env = {"BALLAST_LOADER_RETRY_SECONDS": str(LOADER_RETRY)}
    with running_operator(plane, k8s_tools, tmp_path_factory, **env) as op:
        yield op


@pytest.fixture
def ns(plane: AuditedPlane) -> Iterator[str]:
    name = f"cache-{uuid.uuid4().hex[:6]}"
    plane.api.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    try:
        plane.api.delete(f"/api/v1/namespaces/{name}")
    except ApiError as err:
        if err.status != 404:
            raise


def service(name: str, namespace: str, *backends: JSON) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backends": list(backends)},
    }


def cached(model: str = "org/m", **cache: Any) -> JSON:
    return {
        "name": "gpu",
        "engine": "vllm",
        "model": model,
        "cache": cache or {"size": "1Gi"},
        "scaling": {"minReplicas": 2, "maxReplicas": 3},
        "health": {"periodSeconds": 1},
    }


def items(api: KubeApi, path: str) -> list[JSON]:
    return list(api.get(path)["items"])


def jobs(api: KubeApi, ns: str) -> list[JSON]:
    return items(api, f"/apis/batch/v1/namespaces/{ns}/jobs")


def claims(api: KubeApi, ns: str) -> list[JSON]:
    return items(api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims")


def condition(api: KubeApi, ns: str, name: str, type_: str) -> JSON:
    status = api.get(llms_path(ns, name)).get("status") or {}
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def backend_status(api: KubeApi, ns: str, name: str, backend: str) -> JSON:
    status = api.get(llms_path(ns, name)).get("status") or {}
    return next((b for b in status.get("backends") or () if b["name"] == backend), {})


def deployment(api: KubeApi, ns: str, name: str) -> JSON:
    return api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


def hpas(api: KubeApi, ns: str) -> list[JSON]:
    return items(api, f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers")


def events(api: KubeApi, ns: str, reason: str) -> list[JSON]:
    return [e for e in items(api, f"/api/v1/namespaces/{ns}/events") if e["reason"] == reason]


def test_a_cache_is_filled_once_shared_and_serves_when_ready(
    plane: AuditedPlane, operator: OperatorProcess, loaders: Loaders, ns: str
) -> None:
    api = plane.api
    api.post(llms_path(ns), service("chat", ns, cached()))
    wait_for(
        lambda: len(jobs(api, ns)) == 1 and len(claims(api, ns)) == 1,
        timeout=60,
        what="claim and loader Job",
    )
    (job,) = jobs(api, ns)
    (claim,) = claims(api, ns)
    wait_for(lambda: bool(job_pods(api, ns)), timeout=30, what="the loader's pod")
    wait_for(
        lambda: condition(api, ns, "chat", "CacheReady").get("reason") == "Downloading",
        timeout=30,
        what="CacheReady=False/Downloading",
    )
    held = deployment(api, ns, "chat-gpu")
    assert held["spec"]["replicas"] == 0  # no serving pod before the weights are there
    assert hpas(api, ns) == []

    # a second service asking for the same model and storage shares the claim and the Job
    api.post(llms_path(ns), service("chat-b", ns, cached()))
    wait_for(
        lambda: len(jobs(api, ns)[0]["metadata"]["ownerReferences"]) == 2,
        timeout=30,
        what="the second service adopting the Job",
    )
    assert [j["metadata"]["name"] for j in jobs(api, ns)] == [job["metadata"]["name"]]
    assert len(claims(api, ns)[0]["metadata"]["ownerReferences"]) == 2
    owners = {r["name"] for r in jobs(api, ns)[0]["metadata"]["ownerReferences"]}
    assert owners == {"chat", "chat-b"}

    result = {"revision": "c0ffee" * 6 + "abcd", "bytes": 1234, "files": 3}
    loaders.finish(job["metadata"]["name"], 0, json.dumps(result))
    for name in ("chat", "chat-b"):
        wait_for(
            lambda name=name: condition(api, ns, name, "CacheReady").get("status") == "True",
            timeout=60,
            what=f"CacheReady=True on {name}",
        )
        cache = backend_status(api, ns, name, "gpu")["cache"]
        assert cache["state"] == "Ready"
        assert cache["revision"] == result["revision"]
        assert cache["bytes"] == 1234
        assert cache["claim"] == claim["metadata"]["name"]
        assert cache["readySince"]
    wait_for(
        lambda: deployment(api, ns, "chat-gpu")["spec"].get("replicas") == 2,
        timeout=30,
        what="the Deployment scaled to the HPA's minimum",
    )
    assert {h["metadata"]["name"] for h in hpas(api, ns)} == {"chat-gpu", "chat-b-gpu"}
    pod = deployment(api, ns, "chat-gpu")["spec"]["template"]["spec"]
    env = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
    assert "HF_TOKEN" not in env
    assert {e["involvedObject"]["name"] for e in events(api, ns, "CacheReady")} == {
        "chat",
        "chat-b",
    }
    # each state change was an Event on each service: Downloading (chat-b joined while the
    # shared Job ran), then Ready; the Downloading one names the cache key
    downloading = events(api, ns, "CacheDownloading")
    assert {e["involvedObject"]["name"] for e in downloading} == {"chat", "chat-b"}
    assert all("model cache" in e["message"] and "Downloading" in e["message"] for e in downloading)
    assert all(e["type"] == "Normal" for e in downloading)

    # the claim goes with its last user, not before
    api.delete(llms_path(ns, "chat"))
    wait_for(
        lambda: (
            [r["name"] for r in claims(api, ns)[0]["metadata"]["ownerReferences"]] == ["chat-b"]
        ),
        timeout=90,
        what="the garbage collector dropping the first owner",
    )
    api.delete(llms_path(ns, "chat-b"))
    wait_for(
        lambda: claims(api, ns) == [] and jobs(api, ns) == [],
        timeout=90,
        what="claim and Job deleted",
    )


def job_pods(api: KubeApi, ns: str) -> list[JSON]:
    return [
        p
        for p in items(api, f"/api/v1/namespaces/{ns}/pods")
        if JOB_LABEL in p["metadata"].get("labels", {})
    ]


def test_a_failed_download_is_reported_and_the_other_backend_serves(
    plane: AuditedPlane, operator: OperatorProcess, loaders: Loaders, ns: str
) -> None:
    api = plane.api
    plain = {"name": "cpu", "engine": "vllm", "model": "org/small", "health": {"periodSeconds": 1}}
    api.post(llms_path(ns), service("chat", ns, cached("org/missing"), plain))
    wait_for(lambda: len(jobs(api, ns)) == 1, timeout=60, what="the loader Job")
    job = jobs(api, ns)[0]["metadata"]["name"]
    loaders.finish(job, 2, "repository org/missing not found (404)")
    wait_for(
        lambda: condition(api, ns, "chat", "CacheReady").get("reason") == "DownloadFailed",
        timeout=90,
        what="CacheReady=False/DownloadFailed",
    )
    ready = condition(api, ns, "chat", "CacheReady")
    assert ready["status"] == "False"
    assert "org/missing not found" in ready["message"]
    failed = jobs(api, ns)[0]["status"]["conditions"]
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in failed)
    assert len(job_pods(api, ns)) == 1  # a permanent failure is not retried by the Job controller
    gpu = backend_status(api, ns, "chat", "gpu")
    assert gpu["cache"]["state"] == "DownloadFailed"
    assert "not found" in gpu["message"]
    wait_for(
        lambda: backend_status(api, ns, "chat", "cpu").get("inRoute") is True,
        timeout=60,
        what="the uncached backend serving",
    )
    assert deployment(api, ns, "chat-gpu")["spec"]["replicas"] == 0
    (event,) = events(api, ns, "CacheDownloadFailed")
    assert "not found" in event["message"]
    assert event["type"] == "Warning"

    # the operator runs the loader again after its backoff: fixed upstream, it fills
    loaders.finish(job, 0, json.dumps({"revision": "abc", "bytes": 7, "files": 1}))
    wait_for(
        lambda: condition(api, ns, "chat", "CacheReady").get("status") == "True",
        timeout=LOADER_RETRY * 2 + 60,
        what="CacheReady=True after the loader ran again",
    )
    assert backend_status(api, ns, "chat", "gpu")["cache"]["bytes"] == 7
    wait_for(
        lambda: deployment(api, ns, "chat-gpu")["spec"].get("replicas") == 2,
        timeout=30,
        what="the Deployment scaled once filled",
    )


def test_a_new_revision_fills_a_new_directory_then_rolls_the_pods(
    plane: AuditedPlane, operator: OperatorProcess, loaders: Loaders, ns: str
) -> None:
    api = plane.api
    api.post(llms_path(ns), service("chat", ns, cached(size="1Gi", revision="aaaa")))
    wait_for(lambda: len(jobs(api, ns)) == 1, timeout=60, what="the first loader Job")
    first = jobs(api, ns)[0]["metadata"]["name"]
    loaders.finish(first, 0, json.dumps({"revision": "aaaa", "bytes": 1, "files": 1}))
    wait_for(
        lambda: deployment(api, ns, "chat-gpu")["spec"].get("replicas") == 2,
        timeout=60,
        what="serving the first revision",
    )
    served = deployment(api, ns, "chat-gpu")["metadata"]["annotations"]["ballast.dev/cache-served"]
    template = deployment(api, ns, "chat-gpu")["spec"]["template"]

    patch = {"spec": {"backends": [cached(size="1Gi", revision="bbbb")]}}
    api.merge_patch(llms_path(ns, "chat"), patch)
    wait_for(lambda: len(jobs(api, ns)) == 2, timeout=60, what="a second loader Job")
    second = next(j["metadata"]["name"] for j in jobs(api, ns) if j["metadata"]["name"] != first)
    wait_for(
        lambda: condition(api, ns, "chat", "CacheReady").get("reason") == "Downloading",
        timeout=30,
        what="CacheReady=False/Downloading for the new revision",
    )
    # while the new revision fills, the pods keep serving the old one, untouched
    dep = deployment(api, ns, "chat-gpu")
    assert dep["metadata"]["annotations"]["ballast.dev/cache-served"] == served
    assert dep["spec"]["template"] == template
    assert dep["spec"]["replicas"] == 2
    assert len(claims(api, ns)) == 2

    loaders.finish(second, 0, json.dumps({"revision": "bbbb", "bytes": 2, "files": 1}))
    wait_for(
        lambda: (
            deployment(api, ns, "chat-gpu")["metadata"]["annotations"]["ballast.dev/cache-served"]
            != served
        ),
        timeout=60,
        what="the pods rolled to the new directory",
    )
    wait_for(
        lambda: (
            [j["metadata"]["name"] for j in jobs(api, ns)] == [second] and len(claims(api, ns)) == 1
        ),
        timeout=60,
        what="the old Job and claim released",
    )
    assert backend_status(api, ns, "chat", "gpu")["cache"]["revision"] == "bbbb"
    assert deployment(api, ns, "chat-gpu")["spec"]["replicas"] == 2


def test_an_existing_claim_is_used_and_never_deleted(
    plane: AuditedPlane, operator: OperatorProcess, loaders: Loaders, ns: str
) -> None:
    api = plane.api
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "team-models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}},
    }
    api.post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", pvc)
    api.post(llms_path(ns), service("chat", ns, cached("org/other", existingClaim="team-models")))
    wait_for(lambda: len(jobs(api, ns)) == 1, timeout=60, what="the loader Job")
    (job,) = jobs(api, ns)
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "team-models"}} in volumes
    loaders.finish(
        job["metadata"]["name"], 0, json.dumps({"revision": "abc", "bytes": 1, "files": 1})
    )
    wait_for(
        lambda: condition(api, ns, "chat", "CacheReady").get("status") == "True",
        timeout=60,
        what="CacheReady=True",
    )
    api.delete(llms_path(ns, "chat"))
    wait_for(lambda: jobs(api, ns) == [], timeout=90, what="the loader Job deleted")
    (left,) = claims(api, ns)
    assert left["metadata"]["name"] == "team-models"
    assert "ownerReferences" not in left["metadata"]
    assert "deletionTimestamp" not in left["metadata"]


def test_no_request_by_the_operator_was_forbidden(
    plane: AuditedPlane, operator: OperatorProcess
) -> None:
    """Runs last: the claims, Jobs and loader pods were read and written with the chart's RBAC."""
    events = [e for e in plane.audit.events() if e.user == OPERATOR_USER]
    resources = {e.resource for e in events}
    assert {"persistentvolumeclaims", "jobs", "pods"} <= resources, resources
    forbidden = [f"{e.verb} {e.uri}: {e.message}" for e in events if e.rbac_denied]
    assert forbidden == []
    log = operator.text()
    refused = [line for line in log.splitlines() if "Forbidden" in line]
    assert all("being terminated" in line for line in refused), refused  # never RBAC
    assert "Traceback" not in log, operator.tail(120)

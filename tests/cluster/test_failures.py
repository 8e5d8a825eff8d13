"""Failure is cheap: LLMServices whose children the API refuses cost a few writes a minute.

Fifty LLMServices in a namespace whose ResourceQuota allows no Service: every
apply is refused (403 exceeded quota); a service's routes ConfigMap is created by
its first retry, from the first health round. The operator,
running as the chart's ServiceAccount with the chart's arguments, must report each
service once (a Ready=False/ApplyFailed status and one Event), then retry with
the shared per-cause backoff — one refused request per backoff step, not fifty —
write no kopf progress annotations, and recover every service by itself once the
quota is gone. The audit log counts the writes. The retry cap is lowered to
``RETRY_MAX`` seconds so recovery fits in the test (the default is 300 s).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._llmservices import API_VERSION, llms_path
from ._operator import AuditedPlane, OperatorProcess
from ._stack import OPERATOR_USER, running_operator
from .binaries import Binaries
from .kubeapi import JSON, KubeApi
from .poll import wait_for

SERVICES = 50
RETRY_MAX = 8
WINDOW = 30.0


@pytest.fixture(scope="module")
def plane(cluster_binaries: Binaries) -> Iterator[AuditedPlane]:
    with AuditedPlane(cluster_binaries, audit_users=[OPERATOR_USER]) as plane:
        yield plane


@pytest.fixture(scope="module")
def operator(
    plane: AuditedPlane, k8s_tools: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"BALLAST_RETRY_MAX_SECONDS": str(RETRY_MAX)}
    with running_operator(plane, k8s_tools, tmp_path_factory, **env) as op:
        yield op


def one_backend(name: str, namespace: str) -> JSON:
    backend = {
        "name": "primary",
        "engine": "vllm",
        "model": "org/m",
        "health": {"periodSeconds": 1},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backends": [backend]},
    }


def ready_reasons(api: KubeApi, namespace: str) -> dict[str, str]:
    out = {}
    for item in api.get(llms_path(namespace))["items"]:
        conditions = (item.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        out[item["metadata"]["name"]] = ready.get("reason", "")
    return out


def quota_namespace(api: KubeApi) -> str:
    """A namespace whose ResourceQuota admits no Service."""
    namespace = f"quota-{uuid.uuid4().hex[:6]}"
    api.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    path = f"/api/v1/namespaces/{namespace}/resourcequotas"
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-services"}}
    api.post(path, {**quota, "spec": {"hard": {"services": "0"}}})
    # This tier runs no quota controller: record the usage it would compute.
    usage = {"hard": {"services": "0"}, "used": {"services": "0"}}
    api.merge_patch(f"{path}/no-services/status", {"status": usage})
    return namespace


def test_refused_children_cost_a_few_writes_a_minute_and_recover_by_themselves(
    plane: AuditedPlane, operator: OperatorProcess
) -> None:
    api = plane.api
    namespace = quota_namespace(api)
    names = [f"svc-{i:02d}" for i in range(SERVICES)]
    mark = plane.audit.mark()
    for name in names:
        api.post(llms_path(namespace), one_backend(name, namespace))

    wait_for(
        lambda: set(ready_reasons(api, namespace).values()) == {"ApplyFailed"},
        timeout=90,
        what="every service reporting ApplyFailed",
    )
    first = plane.writes(OPERATOR_USER, since=mark)
    status_writes = Counter(e.name for e in first if e.subresource == "status")
    assert set(status_writes) == set(names)
    assert max(status_writes.values()) == 1, status_writes  # one status change per service

    window = plane.audit.mark()
    time.sleep(WINDOW)
    during = plane.writes(OPERATOR_USER, since=window)
    seen = [f"{e.verb} {e.resource}/{e.subresource} {e.name} {e.code}" for e in during]
    # A canary's plan starts with its routes ConfigMap, created from the first health round
    # (so the gateway can send the service to a backend that works); once per service.
    routes = Counter(e.name for e in during if e.resource == "configmaps")
    assert all(n == 1 for n in routes.values()), seen
    assert all(e.verb == "create" and e.code == 201 for e in during if e.resource == "configmaps")
    refused = [e for e in during if e.resource != "configmaps"]
    # One canary per backoff step for the whole namespace (cap 8 s, jitter ±20%).
    assert len(refused) <= WINDOW / (RETRY_MAX * 0.8) + 2, seen
    assert all(e.resource == "services" and e.code == 403 for e in refused), seen

    events = api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    failed = Counter(e["involvedObject"]["name"] for e in events if e["reason"] == "ApplyFailed")
    assert set(failed) == set(names)
    assert max(failed.values()) == 1, failed  # one Event per service and cause

    api.delete(f"/api/v1/namespaces/{namespace}/resourcequotas/no-services")
    wait_for(
        lambda: "ApplyFailed" not in ready_reasons(api, namespace).values(),
        timeout=RETRY_MAX * 3 + 60,
        what="every service applied once the quota is gone",
    )
    deployments = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    assert len(deployments) == SERVICES
    for item in api.get(llms_path(namespace))["items"]:
        annotations = item["metadata"].get("annotations") or {}
        # kopf keeps a retried handler's progress under "ballast.dev/<handler id>"
        progress = [k for k in annotations if k.startswith("ballast.dev/reconcile")]
        assert progress == [], progress
    api.delete(f"/api/v1/namespaces/{namespace}")

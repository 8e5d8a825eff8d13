"""The real operator (`ballast run`) against a real API server, running as the chart's
operator ServiceAccount with exactly the chart's RBAC.

The module has a control plane of its own (so its audit log holds only this
module's story and no other test's namespaces come and go under the operator),
installs charts/ballast into it with `helm install` (CRD, ServiceAccounts, RBAC;
no gateway pods; the chart's operator pod runs nothing on the fake kubelet), and
starts one operator process with a TokenRequest token for the operator's
ServiceAccount and the arguments of the chart's own operator container (ports
moved to loopback). Probes go to a loopback `Fleet` through
`BALLAST_PROBE_URL_OVERRIDE`. The audit policy also records the operator's reads,
so a forbidden watch or GET is seen as well as a forbidden write.

Proven here: children are created by the operator's user with owner references
and field manager `ballast`; pods Ready + probes passing -> phase Ready; a deleted
or hand-edited child is put back; `replicas` of an autoscaled backend written by
another manager is left alone, even when the operator patches that Deployment;
30 s of steady state -> zero writes; malformed LLMServices are rejected by the
server and the operator carries on; SIGKILL + restart -> no duplicate and no
re-created child; deleting the LLMService -> the garbage collector removes the
children; and no request by the operator was forbidden.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from ballast import render
from ballast.api.manifests import Document, check_document
from ballast.controller.settings import parse_peers
from ballast.permissions import MANAGED_KINDS

from ._llmservices import (
    API_VERSION,
    KINDS,
    all_children,
    children,
    expected_children,
    kind_path,
    llms_path,
    llmservice,
    managers,
    phase,
    settled_everywhere,
    uids,
    wait_ready,
)
from ._operator import AuditedPlane, Fleet, OperatorProcess
from ._release import Release, kubectl_for
from ._stack import OPERATOR_USER, chart_operator_env, install_chart, operator_process
from .binaries import Binaries
from .kubeapi import JSON, MERGE_PATCH, KubeApi
from .poll import wait_for
from .tools import Tool

GATEWAY_ENDPOINT = "http://ballast-gateway.ballast-system.svc/v1"
KIND_OF_PLURAL = {k.plural: k.kind for k in MANAGED_KINDS}
STEADY_SECONDS = 30


# -- paths and objects ---------------------------------------------------------------


def operator_writes(plane: AuditedPlane, since: int, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """The operator's write requests after `since`, readable (`verb resource ns/name code`)."""
    return [
        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''} "
        f"{e.namespace}/{e.name} {e.code}"
        for e in plane.writes(OPERATOR_USER, since=since)
        if e.resource not in exclude
    ]


# -- fixtures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    """An LLMService this module created, with the audit mark taken just before."""

    namespace: str
    name: str
    uid: str
    mark: int


@pytest.fixture(scope="module")
def plane(cluster_binaries: Binaries) -> Iterator[AuditedPlane]:
    plane = AuditedPlane(cluster_binaries, audit_users=[OPERATOR_USER])
    with plane, plane.fake_kubelet():
        yield plane


@pytest.fixture(scope="module")
def kubectl(plane: AuditedPlane, k8s_tools: Path) -> Tool:
    return kubectl_for(plane, k8s_tools)


@pytest.fixture(scope="module")
def release(
    plane: AuditedPlane, k8s_tools: Path, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    return install_chart(plane, k8s_tools, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet() as fleet:
        yield fleet


@pytest.fixture(scope="module")
def operator(
    plane: AuditedPlane,
    release: Release,
    fleet: Fleet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """One operator process for the module (the restart test replaces it in place)."""
    op = operator_process(plane, release, fleet, tmp_path_factory.mktemp("operator"))
    assert "--standalone" in op.args, op.args
    try:
        op.start()
        yield op
    finally:
        op.stop()


def deploy(api: KubeApi, plane: AuditedPlane, fleet: Fleet, stem: str) -> Deployed:
    """A new namespace holding the API-key Secret and one LLMService named `stem`."""
    namespace = f"{stem}-{uuid.uuid4().hex[:6]}"
    api.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    api.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "llm-keys"},
            "stringData": {"openai": fleet.api_key},
        },
    )
    mark = plane.audit.mark()
    created = api.post(llms_path(namespace), llmservice(stem, namespace, fleet))
    return Deployed(namespace, stem, created["metadata"]["uid"], mark)


@pytest.fixture(scope="module")
def chat(plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess) -> Deployed:
    """The module's main LLMService, created once and left in place."""
    return deploy(plane.api, plane, fleet, "chat")


# -- tests ---------------------------------------------------------------------------


def chart_peers(api: KubeApi, release: Release) -> tuple[JSON, ...]:
    """Who may call engines, as the chart tells its operator."""
    return parse_peers(chart_operator_env(api, release)["BALLAST_ENGINE_POLICY_PEERS"])


def test_children_are_created_by_the_operator_with_owner_references(
    plane: AuditedPlane, chat: Deployed, release: Release
) -> None:
    api = plane.api
    body = api.get(llms_path(chat.namespace, chat.name))
    checked = check_document(Document("<server>", 0, body))
    assert checked.problems == []
    assert checked.service is not None
    peers = chart_peers(api, release)
    desired = render.objects(checked.service, engine_peers=peers)
    rendered = {(o["kind"], o["metadata"]["name"]) for o in desired}
    assert rendered == expected_children(chat.name)

    found = wait_for(
        lambda: all_children(api, chat.namespace, chat.name, rendered), timeout=60, what="children"
    )
    owner = {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "name": chat.name,
        "uid": chat.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for key, obj in found.items():
        assert obj["metadata"]["ownerReferences"] == [owner], key
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ballast", key
        # The operator's own writes are recorded under field manager "ballast".
        assert "ballast" in managers(obj), (key, list(managers(obj)))
        assert "f:spec" in json.dumps(managers(obj)["ballast"]["fieldsV1"]) or key[0] == "ConfigMap"

    # The operator sends no replicas for the autoscaled backend: the HPA owns that field. (Its
    # managedFields cannot show this: a create is an Update operation, which attributes the
    # server's defaults, replicas: 1 included, to the creating manager.)
    sent = {o["metadata"]["name"]: o["spec"] for o in desired if o["kind"] == "Deployment"}
    assert sent[f"{chat.name}-primary"]["replicas"] == 2
    assert "replicas" not in sent[f"{chat.name}-pool"]

    # The audit log attributes each child's creation to the operator's ServiceAccount, once.
    created = [
        (KIND_OF_PLURAL[e.resource], e.name)
        for e in plane.writes(OPERATOR_USER, since=chat.mark)
        if e.verb == "create" and e.resource in KIND_OF_PLURAL and e.code == 201
    ]
    assert sorted(created) == sorted(rendered)


def test_a_new_service_costs_one_create_per_child_a_secret_read_and_nothing_on_the_object(
    plane: AuditedPlane, chat: Deployed
) -> None:
    """What converging the three-backend `chat` cost, from the audit log (reads included).

    kopf's bookkeeping is in memory (nothing but status is written to the LLMService), the
    routes ConfigMap is created once, from the first health round, and the only read is the
    external backend's key.
    """
    api = plane.api
    wait_ready(api, chat.namespace, chat.name)
    time.sleep(3)  # the last writes of the settling reach the audit log
    mine = [
        e
        for e in plane.audit.events(chat.mark)
        if e.user == OPERATOR_USER
        and e.namespace == chat.namespace
        and e.resource != "events"
        and e.verb not in ("list", "watch")
    ]
    plural = {kind: p for p, kind in KIND_OF_PLURAL.items()}
    created = sorted((e.resource, e.name) for e in mine if e.verb == "create")
    assert created == sorted((plural[k], n) for k, n in expected_children(chat.name))
    assert [e.verb for e in mine if e.resource == "llmservices" and e.subresource != "status"] == []
    assert [(e.verb, e.resource, e.name) for e in mine if e.verb == "get"] == [
        ("get", "secrets", "llm-keys")
    ]
    routes = [e.verb for e in mine if e.resource == "configmaps"]
    assert routes[0] == "create"
    status = [e for e in mine if e.subresource == "status"]
    assert status, "no status was written"
    writes = [e for e in mine if e.verb != "get"]
    # nothing else: no child is patched on its way to Ready, no kopf annotation is written
    assert len(writes) == len(created) + len(status) + routes.count("patch")


def test_pods_ready_and_probes_passing_make_the_service_ready(
    plane: AuditedPlane, chat: Deployed, fleet: Fleet
) -> None:
    stored = wait_ready(plane.api, chat.namespace, chat.name)
    status = stored["status"]
    assert status["phase"] == "Ready"
    assert status["endpoint"] == GATEWAY_ENDPOINT
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Ready": "True",
        "Available": "True",
        "Progressing": "False",
        "Degraded": "False",
    }
    backends = {b["name"]: b for b in status["backends"]}
    assert {n: (b["healthy"], b["inRoute"]) for n, b in backends.items()} == {
        "primary": (True, True),
        "pool": (True, True),
        "cloud": (True, True),
    }
    assert backends["primary"]["readyReplicas"] == 2
    # Probes went to the loopback fleet: the self-hosted ones through the override, the
    # external one at its url with the key from the Secret (the fleet answers 401 without it).
    for backend in ("primary", "pool", "cloud"):
        assert fleet.probed(chat.namespace, chat.name, backend) > 0, backend
    routes = plane.api.get(f"/api/v1/namespaces/{chat.namespace}/configmaps/{chat.name}-routes")
    table = json.loads(routes["data"]["routes.json"])
    assert {b["name"]: b["inRoute"] for b in table["backends"]} == {
        "primary": True,
        "pool": True,
        "cloud": True,
    }


def _selected(api: KubeApi, namespace: str, selector: JSON) -> set[str]:
    labels = ",".join(f"{k}={v}" for k, v in selector["matchLabels"].items())
    items = api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=labels)["items"]
    return {p["metadata"]["name"] for p in items}


def test_the_engine_network_policy_is_accepted_and_admits_only_the_release(
    plane: AuditedPlane, chat: Deployed, release: Release
) -> None:
    """What the API server stored selects exactly the service's engine pods, and its peers
    are the chart's gateway and operator pods in the release's namespace (enforcement is a
    CNI's: docs/verification.md)."""
    api = plane.api
    wait_ready(api, chat.namespace, chat.name)
    policy = api.get(kind_path(KINDS["NetworkPolicy"], chat.namespace, f"{chat.name}-engines"))
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    engine_pods = {
        p["metadata"]["name"]
        for p in api.get(f"/api/v1/namespaces/{chat.namespace}/pods")["items"]
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "backend"
    }
    assert len(engine_pods) >= 3  # primary's 2 and pool's at least 1
    assert _selected(api, chat.namespace, spec["podSelector"]) == engine_pods
    (rule,) = spec["ingress"]
    assert "ports" not in rule
    chart_pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]
        for d in api.get(f"/apis/apps/v1/namespaces/{release.namespace}/deployments")["items"]
    }
    admitted = set()
    for peer in rule["from"]:
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": release.namespace}
        }
        for component, template in chart_pods.items():
            labels = template["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in peer["podSelector"]["matchLabels"].items()):
                admitted.add(component)
    assert admitted == {"gateway", "operator"}
    assert len(rule["from"]) == 2


def test_a_deleted_or_edited_child_is_put_back(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess
) -> None:
    api = plane.api
    svc = deploy(api, plane, fleet, "drift")
    wait_ready(api, svc.namespace, svc.name)
    before = uids(children(api, svc.namespace, svc.name))
    service_path = kind_path(KINDS["Service"], svc.namespace, f"{svc.name}-primary")
    routes_path = kind_path(KINDS["ConfigMap"], svc.namespace, f"{svc.name}-routes")
    deployment_path = kind_path(KINDS["Deployment"], svc.namespace, f"{svc.name}-primary")
    routes_before = api.get(routes_path)["data"]

    api.delete(service_path)
    api.merge_patch(routes_path, {"data": {"routes.json": "{}"}})
    api.request(
        "PATCH",
        f"{deployment_path}/scale",
        {"spec": {"replicas": 5}},
        query={"fieldManager": "someone"},
        content_type=MERGE_PATCH,
    )

    def restored() -> bool:
        service = api.get(service_path) if api.exists(service_path) else None
        return (
            service is not None
            and service["metadata"]["uid"] != before["Service", f"{svc.name}-primary"]
            and api.get(routes_path)["data"] == routes_before
            and api.get(deployment_path)["spec"]["replicas"] == 2
        )

    wait_for(restored, timeout=30, what="the Service, routes and replicas put back")
    reasons = [
        e["reason"]
        for e in api.get(f"/api/v1/namespaces/{svc.namespace}/events")["items"]
        if e["involvedObject"].get("kind") == "LLMService"
    ]
    assert "ChildRestored" in reasons
    after = uids(children(api, svc.namespace, svc.name))
    assert after.keys() == before.keys()


def test_replicas_of_an_autoscaled_backend_belong_to_another_manager(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess, kubectl: Tool
) -> None:
    api = plane.api
    svc = deploy(api, plane, fleet, "scaled")
    wait_ready(api, svc.namespace, svc.name)
    pool = kind_path(KINDS["Deployment"], svc.namespace, f"{svc.name}-pool")
    # As the HPA controller does: write replicas through the scale subresource (within min/max,
    # so the real HPA controller, which has no metrics here, leaves it too).
    kubectl("scale", "deployment", f"{svc.name}-pool", "--replicas=3", "-n", svc.namespace)
    time.sleep(5)  # the operator sees the change as a watch event of its child
    assert api.get(pool)["spec"]["replicas"] == 3

    # A spec change makes the operator patch this very Deployment: replicas still stay.
    mark = plane.audit.mark()
    backends = api.get(llms_path(svc.namespace, svc.name))["spec"]["backends"]
    backends[1]["env"] = [{"name": "EXTRA", "value": "1"}]
    api.merge_patch(llms_path(svc.namespace, svc.name), {"spec": {"backends": backends}})

    def patched() -> JSON | None:
        obj = api.get(pool)
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        return obj if {"name": "EXTRA", "value": "1"} in container.get("env", []) else None

    deployment = wait_for(patched, timeout=30, what="the operator to patch the pool Deployment")
    assert deployment["spec"]["replicas"] == 3
    writes = [e for e in plane.writes(OPERATOR_USER, since=mark) if e.resource == "deployments"]
    assert [(e.verb, e.name) for e in writes] == [("patch", f"{svc.name}-pool")]
    assert managers(deployment)["ballast"]["fieldsV1"]["f:spec"].get("f:replicas") is None
    wait_ready(api, svc.namespace, svc.name)
    assert api.get(pool)["spec"]["replicas"] == 3


# (name, spec, what the server's answer must say for server-side apply)
MALFORMED: list[tuple[str, JSON | None, str]] = [
    ("backends-not-a-list", {"backends": "primary"}, "spec.backends: expected list"),
    (
        "unknown-engine",
        {"backends": [{"name": "a", "engine": "triton", "model": "m"}]},
        'spec.backends[0].engine: Unsupported value: "triton"',
    ),
    (
        "replicas-not-a-number",
        {"backends": [{"name": "a", "engine": "vllm", "model": "m", "replicas": "two"}]},
        "spec.backends[0].replicas: expected numeric",
    ),
    (
        "duplicate-backends",
        {"backends": [{"name": "a", "engine": "vllm", "model": "m"}] * 2},
        'spec.backends: Invalid value: "object": backend names must be unique',
    ),
    ("no-spec", None, "spec: Required value"),
]


def test_malformed_llmservices_are_rejected_by_the_server_and_the_operator_carries_on(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess, kubectl: Tool
) -> None:
    api = plane.api
    namespace = f"malformed-{uuid.uuid4().hex[:6]}"
    api.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    for name, spec, answer in MALFORMED:
        doc: JSON = {"apiVersion": API_VERSION, "kind": "LLMService", "metadata": {"name": name}}
        if spec is not None:
            doc["spec"] = spec
        for mode in ("--server-side", "--server-side=false"):
            out = kubectl(
                "apply", mode, "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
            )
            assert out.returncode != 0, (name, mode)
            field = answer.split(":")[0]
            assert field in out.stderr, (name, mode, out.stderr)
            if mode == "--server-side":
                assert answer in out.stderr, (name, out.stderr)
    assert api.get(llms_path(namespace))["items"] == []
    assert operator.alive(), operator.tail()

    # Later valid objects are reconciled as usual.
    svc = deploy(api, plane, fleet, "after-bad")
    wait_ready(api, svc.namespace, svc.name)
    assert children(api, svc.namespace, svc.name).keys() == expected_children(svc.name)


def test_steady_state_makes_no_writes(plane: AuditedPlane, chat: Deployed, fleet: Fleet) -> None:
    api = plane.api
    wait_ready(api, chat.namespace, chat.name)
    wait_for(lambda: settled_everywhere(api), timeout=90, what="every LLMService settled")
    time.sleep(3)  # the last status writes and events of the settling reach the audit log
    mark = plane.audit.mark()
    probes = fleet.probed(chat.namespace, chat.name, "primary")
    time.sleep(STEADY_SECONDS)
    assert operator_writes(plane, mark) == []
    # ... while it kept probing (periodSeconds 1), i.e. it was not simply idle.
    assert fleet.probed(chat.namespace, chat.name, "primary") - probes >= STEADY_SECONDS // 2


def test_sigkill_and_restart_duplicate_nothing(
    plane: AuditedPlane, chat: Deployed, fleet: Fleet, operator: OperatorProcess
) -> None:
    api = plane.api
    wait_for(lambda: settled_everywhere(api), timeout=90, what="every LLMService settled")
    services = [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in api.get(f"/apis/{API_VERSION}/llmservices")["items"]
    ]
    before = {s: uids(children(api, *s)) for s in services}
    operator.kill()
    mark = plane.audit.mark()
    operator.start()
    # A new object is handled after the restart, so the operator has resumed its watches.
    later = deploy(api, plane, fleet, "post-restart")
    wait_ready(api, later.namespace, later.name)
    time.sleep(3)
    after = {s: uids(children(api, *s)) for s in services}
    assert after == before
    for namespace, name in services:
        assert phase(api, namespace, name) == "Ready"
    # The only children created since the restart are the new object's.
    created = {
        (e.namespace, e.resource)
        for e in plane.writes(OPERATOR_USER, since=mark)
        if e.verb == "create" and e.resource in KIND_OF_PLURAL
    }
    assert {ns for ns, _ in created} == {later.namespace}
    touched = {
        (e.verb, e.resource, e.namespace, e.name)
        for e in plane.writes(OPERATOR_USER, since=mark)
        if e.namespace != later.namespace and e.resource != "events"
    }
    assert touched == set(), "the restarted operator rewrote objects that had not changed"


def test_an_edit_made_while_the_operator_was_down_drops_the_fields_it_removed(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess
) -> None:
    """The fields to null come from each child's `ballast.dev/applied-fields`, not from a
    memory of the previous spec: a restarted operator patches once, with the nulls."""
    api = plane.api
    svc = deploy(api, plane, fleet, "edited")
    path = f"{llms_path(svc.namespace)}/{svc.name}"
    deployment = kind_path(KINDS["Deployment"], svc.namespace, f"{svc.name}-primary")
    backends = api.get(path)["spec"]["backends"]
    backends[0]["nodeSelector"] = {"pool": "gpu"}
    api.merge_patch(path, {"spec": {"backends": backends}})

    def selector() -> object:
        if not api.exists(deployment):
            return None
        return api.get(deployment)["spec"]["template"]["spec"].get("nodeSelector")

    wait_for(lambda: selector() == {"pool": "gpu"}, timeout=30, what="the nodeSelector applied")
    time.sleep(2)  # the operator's last writes for the edit
    operator.stop()
    del backends[0]["nodeSelector"]
    api.merge_patch(path, {"spec": {"backends": backends}, "metadata": {"labels": {"t": "x"}}})
    mark = plane.audit.mark()
    operator.start()
    wait_for(lambda: selector() is None, timeout=60, what="the nodeSelector removed")
    time.sleep(2)
    patches = [
        e.name
        for e in plane.writes(OPERATOR_USER, since=mark)
        if e.resource == "deployments" and e.verb == "patch"
    ]
    assert patches == [f"{svc.name}-primary"]
    annotations = api.get(path)["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("ballast.dev/")]


def test_deleting_the_llmservice_lets_the_garbage_collector_remove_its_children(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess
) -> None:
    api = plane.api
    svc = deploy(api, plane, fleet, "doomed")
    wait_for(
        partial(all_children, api, svc.namespace, svc.name, expected_children(svc.name)),
        timeout=60,
        what="every child",
    )
    api.delete(llms_path(svc.namespace, svc.name))
    # The garbage collector learns a new CRD's kind at its next discovery sync (30 s).
    wait_for(
        lambda: not children(api, svc.namespace, svc.name),
        timeout=120,
        interval=1,
        what="the children to be garbage-collected",
    )
    wait_for(
        lambda: not api.get(f"/api/v1/namespaces/{svc.namespace}/pods")["items"],
        timeout=60,
        what="the pods to go with their ReplicaSets",
    )
    # Nothing comes back. (Whether the operator writes anything for a deleted LLMService
    # is the next test's question.)
    time.sleep(3)
    assert children(api, svc.namespace, svc.name) == {}
    assert operator.alive(), operator.tail()


RACE_SERVICES = 8


def test_the_operator_recreates_no_child_of_a_deleted_llmservice(
    plane: AuditedPlane, fleet: Fleet, operator: OperatorProcess
) -> None:
    """Deletes LLMServices at staggered moments while their backends enter the route (when
    the health loop rewrites routes and status) and expects the operator to create nothing
    for them afterwards: their children are garbage collection's. (A write that fails with
    404 because the object vanished meanwhile is a harmless race and is allowed.)"""
    api = plane.api
    doomed = [deploy(api, plane, fleet, f"race{i}") for i in range(RACE_SERVICES)]
    for svc in doomed:
        wait_for(
            partial(all_children, api, svc.namespace, svc.name, expected_children(svc.name)),
            timeout=60,
            interval=0.05,
            what=f"every child of {svc.namespace}/{svc.name}",
        )
    marks = {}
    for svc in doomed:
        marks[svc.namespace] = plane.audit.mark()
        api.delete(llms_path(svc.namespace, svc.name))
        time.sleep(0.25)
    time.sleep(5)
    story = [
        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''} "
        f"{e.namespace}/{e.name} {e.code}"
        for svc in doomed
        for e in plane.writes(OPERATOR_USER, since=marks[svc.namespace])
        if e.namespace == svc.namespace and e.resource != "events"
    ]
    resurrected = [line for line in story if line.startswith("create ") and line.endswith(" 201")]
    assert resurrected == [], "\n".join(story)


def test_no_request_by_the_operator_was_forbidden(
    plane: AuditedPlane, operator: OperatorProcess
) -> None:
    """Runs last: covers every request the operator made in this module (reads included)."""
    events = [e for e in plane.audit.events() if e.user == OPERATOR_USER]
    verbs = {e.verb for e in events}
    # The audit log saw its reads too (a watch is logged when it ends; a forbidden one
    # ends at once with its 403).
    assert {"list", "get"} <= verbs, verbs
    forbidden = [f"{e.verb} {e.uri}: {e.message}" for e in events if e.rbac_denied]
    assert forbidden == []
    log = operator.text()
    refused = [line for line in log.splitlines() if "Forbidden" in line]
    assert all("being terminated" in line for line in refused), refused  # never RBAC
    assert "Traceback" not in log, operator.tail(120)

"""The chart's RBAC as the real authorizer sees it, for tokens of the chart's own
ServiceAccounts (TokenRequest API): the operator and the gateway may do exactly
what operator/ballast/permissions.py declares (every verb on every resource named
there, plus neighbours that must stay forbidden); the gateway reads ConfigMaps and
a Secret it is told the name of, and can neither list nor watch Secrets; with
watchNamespaces the namespaced rights stop at the listed namespaces."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import pytest

from ballast.permissions import GATEWAY, OPERATOR, Permission

from ._release import CHART, Release
from .controlplane import ControlPlane
from .kubeapi import JSON, ApiError, KubeApi
from .poll import wait_for
from .tools import Tool

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Resources nobody declares, checked to be forbidden: (group, resource, namespaced).
UNDECLARED = (
    ("", "pods", True),
    ("", "serviceaccounts", True),
    ("", "nodes", False),
    ("apps", "replicasets", True),
    ("rbac.authorization.k8s.io", "clusterroles", False),
    ("rbac.authorization.k8s.io", "rolebindings", True),
    ("ballast.dev", "llmservices/finalizers", True),
)
# Cluster-scoped resources among the declared ones (the rest are namespaced).
CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions"}

Key = tuple[str, str]


def declared(permissions: Iterable[Permission]) -> dict[Key, set[str]]:
    """(group, resource) -> verbs, merged over every rule that names the resource."""
    out: dict[Key, set[str]] = {}
    for p in permissions:
        for resource in p.resources:
            out.setdefault((p.api_group, resource), set()).update(p.verbs)
    return out


def can(client: KubeApi, verb: str, group: str, resource: str, namespace: str) -> bool:
    """A SelfSubjectAccessReview: what the real authorizer answers for this token."""
    name, _, sub = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": name, "subresource": sub}
    if namespace:
        attributes["namespace"] = namespace
    review = client.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        },
    )
    return bool(review["status"]["allowed"])


def access_matrix(client: KubeApi, permissions: Iterable[Permission], namespace: str) -> list[str]:
    """Every (verb, resource) whose answer differs from the declaration, as readable lines."""
    wanted = declared(permissions)
    cases = [(g, r, r.split("/")[0] not in CLUSTER_SCOPED) for g, r in wanted]
    cases += [(g, r, ns) for g, r, ns in UNDECLARED if (g, r) not in wanted]
    wrong = []
    for group, resource, namespaced in cases:
        for verb in VERBS:
            expected = verb in wanted.get((group, resource), set())
            allowed = can(client, verb, group, resource, namespace if namespaced else "")
            if allowed != expected:
                where = f" in {namespace}" if namespaced else ""
                wrong.append(f"{verb} {group or 'core'}/{resource}{where}: allowed={allowed}")
    return wrong


def listable(client: KubeApi, path: str) -> JSON | None:
    """The list at `path`, or None while the server answers 429 (storage initializing)."""
    try:
        return client.get(path)
    except ApiError as err:
        if err.status == 429:
            return None
        raise


def sa_client(plane: ControlPlane, release: Release, component: str) -> KubeApi:
    return plane.client_for_token(
        plane.token_for(release.namespace, release.serviceaccount(component))
    )


@pytest.mark.parametrize(
    ("component", "permissions"), [("operator", OPERATOR), ("gateway", GATEWAY)]
)
def test_serviceaccount_may_do_exactly_what_permissions_py_declares(
    component: str,
    permissions: tuple[Permission, ...],
    control_plane: ControlPlane,
    ballast_release: Release,
    namespace: str,
) -> None:
    client = sa_client(control_plane, ballast_release, component)
    me = client.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert me["status"]["userInfo"]["username"] == ballast_release.user(component)
    assert access_matrix(client, permissions, namespace) == []


def test_operator_real_requests_follow_its_rbac(
    control_plane: ControlPlane, ballast_release: Release, namespace: str
) -> None:
    client = sa_client(control_plane, ballast_release, "operator")
    # Right after the CRD is Established its storage may still answer 429 "(re)initializing".
    listed = wait_for(
        lambda: listable(client, "/apis/ballast.dev/v1alpha1/llmservices"), timeout=30
    )
    assert isinstance(listed["items"], list)
    assert client.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"] == []
    with pytest.raises(ApiError) as denied:
        client.get(f"/api/v1/namespaces/{namespace}/secrets")
    assert denied.value.status == 403
    with pytest.raises(ApiError) as denied:
        client.post(
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "sneaky"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
    assert denied.value.status == 403


def make_routes_and_key(api: KubeApi, namespace: str) -> None:
    api.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chat-routes", "labels": {"ballast.dev/routes": "true"}},
            "data": {"routes.json": "{}"},
        },
    )
    api.post(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "llm-keys"},
            "stringData": {"openai": "sk-test"},
        },
    )


def test_gateway_reads_configmaps_and_a_named_secret_but_cannot_list_secrets(
    control_plane: ControlPlane,
    ballast_release: Release,
    namespace: str,
    kubectl: Tool,
    tmp_path: Path,
) -> None:
    make_routes_and_key(control_plane.api, namespace)
    token = control_plane.token_for(
        ballast_release.namespace, ballast_release.serviceaccount("gateway")
    )
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "gateway.kubeconfig")

    def can_i(*args: str) -> str:
        out = kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
        return out.stdout.strip()

    for verb in ("get", "list", "watch"):
        assert can_i(verb, "configmaps", "-n", namespace) == "yes", verb
        assert can_i(verb, "configmaps", "--all-namespaces") == "yes", verb
    assert can_i("get", "secret/llm-keys", "-n", namespace) == "yes"
    assert can_i("list", "secrets", "--all-namespaces") == "no"
    assert can_i("list", "secrets", "-n", namespace) == "no"
    assert can_i("watch", "secrets", "-n", namespace) == "no"
    assert can_i("create", "configmaps", "-n", namespace) == "no"
    assert can_i("patch", "configmaps", "-n", namespace) == "no"

    # Real requests, as the gateway makes them.
    listed = kubectl(
        "get", "configmaps", "-A", "-l", "ballast.dev/routes=true", "-o", "name",
        kubeconfig=kubeconfig,
    )  # fmt: skip
    assert "configmap/chat-routes" in listed.stdout.split()
    key = kubectl(
        "get", "secret", "llm-keys", "-n", namespace, "-o", "jsonpath={.data.openai}",
        kubeconfig=kubeconfig,
    )  # fmt: skip
    assert base64.b64decode(key.stdout) == b"sk-test"
    client = control_plane.client_for_token(token)
    watched = client.get(
        "/api/v1/configmaps", watch="true", timeoutSeconds="1", labelSelector="ballast.dev/routes"
    )
    assert "chat-routes" in str(watched)
    refused = kubectl("get", "secrets", "-A", kubeconfig=kubeconfig, check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    assert "cannot list resource" in refused.stderr
    with pytest.raises(ApiError) as denied:
        client.get("/api/v1/secrets", watch="true", timeoutSeconds="1")
    assert denied.value.status == 403


@pytest.fixture(scope="module")
def namespaced_release(control_plane: ControlPlane, helm: Tool) -> tuple[Release, str, str]:
    """A second release with watchNamespaces=[watched]; `unwatched` is another namespace."""
    watched, unwatched = "rbac-watched", "rbac-unwatched"
    for name in (watched, unwatched):
        control_plane.api.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
    release = Release("ballast-scoped", "ballast-scoped-system")
    helm(
        *release.install_args(
            CHART,
            "crds.enabled=false",
            "gateway.replicaCount=0",
            f"watchNamespaces={{{watched}}}",
        )
    )
    return release, watched, unwatched


@pytest.mark.parametrize(
    ("component", "permissions"), [("operator", OPERATOR), ("gateway", GATEWAY)]
)
def test_watch_namespaces_keeps_namespaced_rights_inside_the_listed_namespaces(
    component: str,
    permissions: tuple[Permission, ...],
    control_plane: ControlPlane,
    namespaced_release: tuple[Release, str, str],
) -> None:
    release, watched, unwatched = namespaced_release
    client = sa_client(control_plane, release, component)
    assert access_matrix(client, permissions, watched) == []
    leaked = [
        f"{verb} {group or 'core'}/{resource}"
        for (group, resource), verbs in declared(permissions).items()
        if resource.split("/")[0] not in CLUSTER_SCOPED
        for verb in sorted(verbs)
        if can(client, verb, group, resource, unwatched)
    ]
    assert leaked == []

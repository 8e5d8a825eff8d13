"""The chart grants exactly what operator/ballast/permissions.py declares, no more, no `*`,
cluster-wide by default and per namespace with watchNamespaces."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ballast.permissions import GATEWAY, GATEWAY_KEYS, OPERATOR, OPERATOR_DEMAND, Permission

from .conftest import NAMESPACE, Helm, Obj

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
ROLE_KINDS = {"ClusterRole", "Role"}


def declared(table: Iterable[Permission]) -> set[Grant]:
    return {(p.api_group, r, v) for p in table for r in p.resources for v in p.verbs}


def grants(rules: Iterable[Obj]) -> set[Grant]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _service_account(objects: list[Obj], component: str) -> str:
    deployment = next(
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    )
    return deployment["spec"]["template"]["spec"]["serviceAccountName"]  # type: ignore[no-any-return]


def granted_to(objects: list[Obj], component: str) -> dict[str | None, set[Grant]]:
    """What the component's ServiceAccount is granted, by namespace (None: cluster-wide)."""
    sa = _service_account(objects, component)
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ROLE_KINDS
    }
    out: dict[str | None, set[Grant]] = {}
    for b in objects:
        if b["kind"] not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        subjects = b["subjects"]
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in subjects):
            continue
        assert all(s["namespace"] == NAMESPACE for s in subjects)
        ns = b["metadata"].get("namespace")
        ref = b["roleRef"]
        role_ns = ns if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]
        out.setdefault(ns, set()).update(grants(role["rules"]))
    return out


def test_no_wildcards_anywhere(rendered: list[Obj]) -> None:
    for role in (o for o in rendered if o["kind"] in ROLE_KINDS):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: * in {field}"
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule


@pytest.mark.parametrize(("component", "table"), [("operator", OPERATOR), ("gateway", GATEWAY)])
def test_cluster_wide_by_default_grants_exactly_the_table(
    default_objects: list[Obj], component: str, table: tuple[Permission, ...]
) -> None:
    granted = granted_to(default_objects, component)
    assert granted.pop(None) == declared(table)
    # besides, in the release namespace only (a Role): the gateway's client keys, and the
    # operator's listing of the gateway's EndpointSlices (its demand reports)
    besides = GATEWAY_KEYS if component == "gateway" else OPERATOR_DEMAND
    assert granted == {NAMESPACE: declared(besides)}


def test_the_operator_reads_demand_only_in_the_release_namespace_and_only_with_a_gateway(
    helm: Helm,
) -> None:
    objects = helm.objects(set_json=['watchNamespaces=["ai"]'])
    granted = granted_to(objects, "operator")
    assert granted[NAMESPACE] == {("discovery.k8s.io", "endpointslices", "list")}
    assert ("discovery.k8s.io", "endpointslices", "list") not in granted["ai"]
    without = granted_to(helm.objects(set_=["gateway.enabled=false"]), "operator")
    assert NAMESPACE not in without


def test_gateway_key_secrets_are_listed_only_in_its_own_namespace(helm: Helm) -> None:
    objects = helm.objects(set_json=['watchNamespaces=["ai","team-b"]'])
    granted = granted_to(objects, "gateway")
    assert (
        granted[NAMESPACE]
        == declared(GATEWAY_KEYS)
        == {
            ("", "secrets", "list"),
            ("", "secrets", "watch"),
        }
    )
    for ns, grants_there in granted.items():
        if ns != NAMESPACE:
            assert ("", "secrets", "list") not in grants_there, ns
            assert ("", "secrets", "watch") not in grants_there, ns
    without = granted_to(helm.objects(set_=["gateway.auth.enabled=false"]), "gateway")
    assert NAMESPACE not in without  # no key Secrets to read: no Role


@pytest.mark.parametrize(("component", "table"), [("operator", OPERATOR), ("gateway", GATEWAY)])
def test_watch_namespaces_grants_the_table_only_there(
    helm: Helm, component: str, table: tuple[Permission, ...]
) -> None:
    objects = helm.objects(set_json=['watchNamespaces=["ai","team-b"]'])
    by_ns = granted_to(objects, component)
    assert by_ns.pop(NAMESPACE) == declared(
        GATEWAY_KEYS if component == "gateway" else OPERATOR_DEMAND
    )
    cluster = by_ns.pop(None, set())
    assert set(by_ns) == {"ai", "team-b"}
    for ns_grants in by_ns.values():
        assert ns_grants | cluster == declared(table)
    # Only what is cluster-scoped stays cluster-wide.
    assert {r for _, r, _ in cluster} <= {
        "namespaces",
        "customresourcedefinitions",
    }
    # Neither process may touch another namespace's objects.
    assert not {r for _, r, _ in cluster} & {"secrets", "configmaps", "llmservices", "deployments"}


def test_gateway_reads_configmaps_and_endpointslices_and_gets_single_secrets_only(
    default_objects: list[Obj],
) -> None:
    assert granted_to(default_objects, "gateway")[None] == {
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),
        ("", "configmaps", "watch"),
        ("", "secrets", "get"),
        ("discovery.k8s.io", "endpointslices", "get"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
    }


def test_operator_and_gateway_use_separate_service_accounts(all_objects: list[Obj]) -> None:
    assert _service_account(all_objects, "operator") != _service_account(all_objects, "gateway")
    names = {o["metadata"]["name"] for o in all_objects if o["kind"] == "ServiceAccount"}
    assert {_service_account(all_objects, c) for c in ("operator", "gateway")} == names

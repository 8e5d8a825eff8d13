"""Every Kubernetes API permission Ballast's two processes need, declared once.

The chart's (and the install bundle's) RBAC rules are generated from these
tables, and the code that talks to the API takes the kinds it manages from
here, so the two cannot drift apart: a test checks that the chart grants exactly
this and nothing more, and the real control-plane tier runs the operator and the
gateway as their ServiceAccounts with exactly this RBAC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    """One RBAC rule: verbs on resources of an API group."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def as_rule(self) -> dict[str, list[str]]:
        """The rule as it appears in a (Cluster)Role."""
        return {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


@dataclass(frozen=True)
class ManagedKind:
    """A kind of child object the controller applies, watches and deletes."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


#: Children of an LLMService, in the order they are applied.
MANAGED_KINDS: tuple[ManagedKind, ...] = (
    ManagedKind("v1", "ConfigMap", "configmaps"),
    ManagedKind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ManagedKind("v1", "Service", "services"),
    ManagedKind("apps/v1", "Deployment", "deployments"),
    ManagedKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ManagedKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ManagedKind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ManagedKind("batch/v1", "Job", "jobs"),
)

#: Kinds whose objects several LLMServices may share (a model cache's claim and loader Job):
#: each user holds a non-controller ownerReference; see :mod:`ballast.render.cache`.
SHARED_KINDS: frozenset[str] = frozenset({"PersistentVolumeClaim", "Job"})

_CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")


def _children() -> tuple[Permission, ...]:
    by_group: dict[str, list[str]] = {}
    for k in MANAGED_KINDS:
        by_group.setdefault(k.group, []).append(k.plural)
    return tuple(Permission(g, tuple(r), _CHILD_VERBS) for g, r in by_group.items())


#: The operator (``ballast run``): its CRD, its children, events, secrets it checks.
OPERATOR: tuple[Permission, ...] = (
    Permission("ballast.dev", ("llmservices",), ("get", "list", "watch", "patch")),
    Permission("ballast.dev", ("llmservices/status",), ("get", "patch")),
    *_children(),
    Permission("", ("secrets",), ("get",)),
    # A finished cache loader's pod: its termination message carries the revision and bytes.
    Permission("", ("pods",), ("list",)),
    Permission("", ("events",), ("create",)),
    Permission("events.k8s.io", ("events",), ("create",)),
    Permission("", ("namespaces",), ("get", "list", "watch")),
    Permission("apiextensions.k8s.io", ("customresourcedefinitions",), ("get", "list", "watch")),
)

#: The operator's leader election (``ballast run --leader-elect``): its Lease, granted by a Role
#: in the operator's own namespace only.
LEADER_ELECTION: tuple[Permission, ...] = (
    Permission("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)

#: The gateways' demand reports (scale to zero, cold standby): the operator lists the
#: EndpointSlices of the gateway's internal Service, granted by a Role in its namespace only.
OPERATOR_DEMAND: tuple[Permission, ...] = (
    Permission("discovery.k8s.io", ("endpointslices",), ("list",)),
)

#: The gateway's client keys (``ballast gateway --auth keys``): list and watch of Secrets, granted
#: by a Role in the gateway's own namespace only. RBAC cannot narrow a list to a label; the
#: gateway itself only ever asks with the ``ballast.dev/gateway-key`` label selector.
GATEWAY_KEYS: tuple[Permission, ...] = (Permission("", ("secrets",), ("list", "watch")),)

#: The gateway (``ballast gateway``): routing ConfigMaps, single Secrets its routes name, and
#: the EndpointSlices of the backends' Services (to pick a pod per request).
GATEWAY: tuple[Permission, ...] = (
    Permission("", ("configmaps",), ("get", "list", "watch")),
    Permission("", ("secrets",), ("get",)),
    Permission("discovery.k8s.io", ("endpointslices",), ("get", "list", "watch")),
)

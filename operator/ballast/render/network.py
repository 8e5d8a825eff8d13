"""The NetworkPolicy ``<svc>-engines``: who may call an LLMService's engine pods.

One per LLMService with a self-hosted backend, owned by it like every other child, so a
namespace gets its policies with its first LLMService and loses them with the last, in
whatever namespaces the operator watches. It selects the service's engine pods
(``ballast.dev/service`` + ``app.kubernetes.io/component: backend``) and admits ingress
only from ``peers``: the gateway's and the operator's pods (their namespace and pod
labels, given to the operator by the chart as ``BALLAST_ENGINE_POLICY_PEERS``) and any
namespace the installer names. No ``ports`` field: those peers may reach every port of
an engine; everyone else none. Kubelet probes come from the node and are not filtered
by the common CNIs. Enforcement needs a CNI that implements NetworkPolicy; without one
the object is accepted and has no effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ballast.api import LLMService
from ballast.naming import SERVICE_LABEL, child_name, label_value, labels
from ballast.render.meta import Obj, child, object_meta

POLICY_SUFFIX: Final = "engines"


def policy_name(service: str) -> str:
    """Name of the engines' NetworkPolicy of LLMService ``service``."""
    return child_name(service, POLICY_SUFFIX)


def engine_policy(svc: LLMService, peers: Sequence[Mapping[str, Any]]) -> Obj | None:
    """The NetworkPolicy of ``svc``'s engine pods; None without peers or without pods."""
    if not peers or all(b.external for b in svc.spec.backends):
        return None
    selector = {SERVICE_LABEL: label_value(svc.name), "app.kubernetes.io/component": "backend"}
    spec: Obj = {
        "podSelector": {"matchLabels": selector},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [dict(p) for p in peers]}],
    }
    meta = object_meta(svc, policy_name(svc.name), labels(svc.name, "engine-policy"))
    return child("networking.k8s.io/v1", "NetworkPolicy", meta, spec=spec)

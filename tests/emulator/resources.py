"""The resource kinds the emulator serves, with the facts its semantics depend on.

Each :class:`Kind` says whether objects are namespaced, whether the resource has
a ``status`` subresource (then writes to the main resource never change
``status`` and writes to ``/status`` change nothing else, as the API server
does), and whether ``metadata.generation`` is tracked. :data:`DEFAULT_KINDS` is
what Ballast's operator and kopf touch; tests may add more.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmock import ResourceInfo, resource


@dataclass(frozen=True)
class Kind:
    """One served resource."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False
    generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def ref(self) -> resource:
        return resource(self.group, self.version, self.plural)

    def info(self) -> ResourceInfo:
        """Discovery information for kmock's ``/api`` and ``/apis`` endpoints."""
        return ResourceInfo(
            kind=self.kind,
            namespaced=self.namespaced,
            singular=self.kind.lower(),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            subresources={"status"} if self.status else set(),
        )


DEFAULT_KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "services", "Service", status=True),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", status=True),
    Kind("", "v1", "pods", "Pod", status=True),
    Kind("batch", "v1", "jobs", "Job", status=True, generation=True),
    Kind("", "v1", "events", "Event"),
    Kind("events.k8s.io", "v1", "events", "Event"),
    Kind("apps", "v1", "deployments", "Deployment", status=True, generation=True),
    Kind(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        status=True,
        generation=True,
    ),
    Kind(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", status=True, generation=True
    ),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", generation=True),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        generation=True,
    ),
    Kind("ballast.dev", "v1alpha1", "llmservices", "LLMService", status=True, generation=True),
    Kind("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    Kind("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
)

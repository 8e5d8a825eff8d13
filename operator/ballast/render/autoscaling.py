"""HorizontalPodAutoscaler (autoscaling/v2) and PodDisruptionBudget (policy/v1) of a backend.

Shorthand metrics become MetricSpecs: ``cpu``/``memory`` a Resource metric with
an Utilization target, ``pods`` a Pods metric with an AverageValue target;
``raw`` is copied as is, and ``behavior`` passed through. A PDB with
``maxUnavailable: 1`` exists when the backend can have more than one replica; its
``unhealthyPodEvictionPolicy: AlwaysAllow`` lets a drain evict pods that are not
Ready (still loading, crash-looping) instead of being blocked by them.
"""

from __future__ import annotations

from ballast.api import Backend, LLMService, Metric
from ballast.naming import backend_name, selector_labels
from ballast.render.cache import CacheUse
from ballast.render.meta import Obj, child, object_meta
from ballast.render.pod import workload_labels
from ballast.render.workload import held


def metric_spec(metric: Metric) -> Obj:
    """One autoscaling/v2 MetricSpec from the API's shorthand (or raw) metric."""
    if metric.raw is not None:
        return dict(metric.raw)
    if metric.type == "pods":
        return {
            "type": "Pods",
            "pods": {
                "metric": {"name": metric.name},
                "target": {
                    "type": "AverageValue",
                    "averageValue": str(metric.target_average_value),
                },
            },
        }
    return {
        "type": "Resource",
        "resource": {
            "name": metric.type,
            "target": {
                "type": "Utilization",
                "averageUtilization": metric.target_average_utilization,
            },
        },
    }


def hpa(
    svc: LLMService, backend: Backend, use: CacheUse | None = None, pin: int | None = None
) -> Obj | None:
    """The HPA of a backend with ``scaling``; None otherwise, while its cache fills, and while
    the controller pins its replicas (at or leaving 0: see :mod:`.scale`)."""
    scaling = backend.scaling
    if scaling is None or backend.external or held(backend, use) or pin is not None:
        return None
    name = backend_name(svc.name, backend.name)
    spec: Obj = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": scaling.floor,
        "maxReplicas": scaling.max_replicas,
    }
    if scaling.metrics:
        spec["metrics"] = [metric_spec(m) for m in scaling.metrics]
    if scaling.behavior:
        spec["behavior"] = dict(scaling.behavior)
    meta = object_meta(svc, name, workload_labels(svc, backend))
    return child("autoscaling/v2", "HorizontalPodAutoscaler", meta, spec=spec)


def pdb(svc: LLMService, backend: Backend) -> Obj | None:
    """The PDB of a backend that can have more than one replica; None otherwise."""
    if backend.external or backend.max_replicas <= 1:
        return None
    spec: Obj = {
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector_labels(svc.name, backend.name)},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    meta = object_meta(svc, backend_name(svc.name, backend.name), workload_labels(svc, backend))
    return child("policy/v1", "PodDisruptionBudget", meta, spec=spec)

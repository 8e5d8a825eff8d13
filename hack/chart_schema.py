"""The shape of the chart's values, from which values.schema.json is generated.

Types, bounds and enums live here; descriptions are not written twice: the
generator takes each key's description from the comment above it in
charts/ballast/values.yaml (the documentation users read), and fails when a key
has none. Every object the chart defines is closed (``additionalProperties:
false``), so a misspelt key fails ``helm template``. Kubernetes types passed
through to a pod spec (resources, tolerations, affinity, ...) live under
``definitions`` with their top-level fields closed; the API server validates the
rest.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
DNS_LABEL: Schema = {
    "type": "string",
    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "maxLength": 63,
}
DURATION: Schema = {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"}
PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
OPEN_OBJECT: Schema = {"type": "object"}
RATIO: Schema = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
INT_OR_PERCENT: Schema = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": "^([0-9]+%?)?$"},
    ]
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/definitions/{name}"}


def obj(props: dict[str, Schema], **extra: Any) -> Schema:
    """A closed object: only ``props`` are allowed."""
    return {"type": "object", "additionalProperties": False, "properties": props, **extra}


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    s: Schema = {"type": "integer"}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return s


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


#: Kubernetes types the chart passes through; closed at their top level.
DEFINITIONS: dict[str, Schema] = {
    "quantities": {
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}]},
    },
    "resources": obj(
        {
            "limits": ref("quantities"),
            "requests": ref("quantities"),
            "claims": array(obj({"name": STR, "request": STR}, required=["name"])),
        },
        description="core/v1 ResourceRequirements",
    ),
    "envVar": obj(
        {
            "name": STR,
            "value": STR,
            "valueFrom": obj(
                {
                    "configMapKeyRef": OPEN_OBJECT,
                    "fieldRef": OPEN_OBJECT,
                    "fileKeyRef": OPEN_OBJECT,
                    "resourceFieldRef": OPEN_OBJECT,
                    "secretKeyRef": OPEN_OBJECT,
                }
            ),
        },
        required=["name"],
        description="core/v1 EnvVar",
    ),
    "toleration": obj(
        {
            "key": STR,
            "operator": {"type": "string", "enum": ["Exists", "Equal"]},
            "value": STR,
            "effect": {
                "type": "string",
                "enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
            },
            "tolerationSeconds": integer(),
        },
        description="core/v1 Toleration",
    ),
    "affinity": obj(
        {"nodeAffinity": OPEN_OBJECT, "podAffinity": OPEN_OBJECT, "podAntiAffinity": OPEN_OBJECT},
        description="core/v1 Affinity",
    ),
    "topologySpreadConstraint": obj(
        {
            "maxSkew": integer(1),
            "topologyKey": STR,
            "whenUnsatisfiable": {"type": "string", "enum": ["DoNotSchedule", "ScheduleAnyway"]},
            "labelSelector": OPEN_OBJECT,
            "matchLabelKeys": array(STR),
            "minDomains": integer(1),
            "nodeAffinityPolicy": {"type": "string", "enum": ["Honor", "Ignore"]},
            "nodeTaintsPolicy": {"type": "string", "enum": ["Honor", "Ignore"]},
        },
        required=["maxSkew", "topologyKey", "whenUnsatisfiable"],
        description="core/v1 TopologySpreadConstraint",
    ),
    "networkPolicyPeer": obj(
        {"podSelector": OPEN_OBJECT, "namespaceSelector": OPEN_OBJECT, "ipBlock": OPEN_OBJECT},
        description="networking/v1 NetworkPolicyPeer",
    ),
    "networkPolicyEgressRule": obj(
        {
            "to": array(ref("networkPolicyPeer")),
            "ports": array(
                obj(
                    {
                        "port": {"anyOf": [PORT, STR]},
                        "endPort": PORT,
                        "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"]},
                    }
                )
            ),
        },
        description="networking/v1 NetworkPolicyEgressRule",
    ),
    "hpaBehavior": obj(
        {"scaleUp": OPEN_OBJECT, "scaleDown": OPEN_OBJECT},
        description="autoscaling/v2 HorizontalPodAutoscalerBehavior",
    ),
}


def _probe() -> Schema:
    return obj(
        {
            "initialDelaySeconds": integer(0),
            "periodSeconds": integer(1),
            "timeoutSeconds": integer(1),
            "failureThreshold": integer(1),
        }
    )


def _pod_settings() -> dict[str, Schema]:
    """Keys both workloads have, in values.yaml order."""
    return {
        "extraArgs": array(STR),
        "extraEnv": array(ref("envVar")),
        "resources": ref("resources"),
        "livenessProbe": _probe(),
        "readinessProbe": _probe(),
    }


def _placement() -> dict[str, Schema]:
    return {
        "serviceAccount": obj({"create": BOOL, "name": STR, "annotations": STRING_MAP}),
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
        "nodeSelector": STRING_MAP,
        "tolerations": array(ref("toleration")),
        "affinity": ref("affinity"),
        "topologySpreadConstraints": array(ref("topologySpreadConstraint")),
        "priorityClassName": STR,
        "serviceMonitor": obj(
            {"enabled": BOOL, "interval": DURATION, "scrapeTimeout": DURATION, "labels": STRING_MAP}
        ),
        "networkPolicy": obj(
            {
                "enabled": BOOL,
                "from": array(ref("networkPolicyPeer")),
                "egress": array(ref("networkPolicyEgressRule")),
            }
        ),
    }


OPERATOR: Schema = obj(
    {
        "replicaCount": integer(1),
        "leaderElection": obj(
            {"enabled": BOOL, "leaseName": {"anyOf": [{"const": ""}, DNS_LABEL]}}
        ),
        "metricsPort": PORT,
        "healthPort": PORT,
        "gatewayEndpoint": {"type": "string", "pattern": "^(https?://.+)?$"},
        "logFormat": {"type": "string", "enum": ["json", "plain"]},
        **_pod_settings(),
        **_placement(),
    }
)

GATEWAY: Schema = obj(
    {
        "enabled": BOOL,
        "replicaCount": integer(0),
        "port": PORT,
        "metricsPort": PORT,
        "auth": obj({"enabled": BOOL, "createKey": BOOL}),
        "maxBodyBytes": integer(0),
        "logLevel": {"type": "string", "enum": ["debug", "info", "warning", "error"]},
        "logFormat": {"type": "string", "enum": ["json", "text"]},
        "accessLog": obj(
            {
                "mode": {"type": "string", "enum": ["all", "errors", "off"]},
                "sample": {"type": "number", "minimum": 0, "maximum": 1},
            }
        ),
        "shutdownTimeoutSeconds": integer(1, 3600),
        **_pod_settings(),
        "service": obj(
            {
                "type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": PORT,
                "nodePort": integer(0, 65535),
                "annotations": STRING_MAP,
            }
        ),
        "autoscaling": obj(
            {
                "enabled": BOOL,
                "minReplicas": integer(1),
                "maxReplicas": integer(1),
                "targetCPUUtilizationPercentage": integer(1, 1000),
                "behavior": ref("hpaBehavior"),
            }
        ),
        "podDisruptionBudget": obj(
            {"enabled": BOOL, "minAvailable": INT_OR_PERCENT, "maxUnavailable": INT_OR_PERCENT}
        ),
        **_placement(),
    }
)

VALUES: Schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Values of the Ballast Helm chart",
    **obj(
        {
            "nameOverride": STR,
            "fullnameOverride": STR,
            "commonLabels": STRING_MAP,
            "crds": obj({"enabled": BOOL, "keep": BOOL}),
            "image": obj(
                {
                    "repository": {"type": "string", "minLength": 1},
                    "tag": STR,
                    "digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"},
                    "pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
                }
            ),
            "imagePullSecrets": array({"type": "string", "minLength": 1}),
            "engineNetworkPolicy": obj(
                {
                    "enabled": BOOL,
                    "namespaces": {**array(DNS_LABEL), "uniqueItems": True},
                    "allowNamespaces": {**array(DNS_LABEL), "uniqueItems": True},
                }
            ),
            "watchNamespaces": {**array(DNS_LABEL), "uniqueItems": True},
            "monitoring": obj(
                {
                    "grafanaDashboard": obj(
                        {
                            "enabled": BOOL,
                            "namespace": {"anyOf": [DNS_LABEL, {"const": ""}]},
                            "labels": STRING_MAP,
                            "annotations": STRING_MAP,
                        }
                    ),
                    "prometheusRule": obj(
                        {
                            "enabled": BOOL,
                            "labels": STRING_MAP,
                            "thresholds": obj(
                                {
                                    "errorRatio": RATIO,
                                    "fallbackRatio": RATIO,
                                    "ttftP95Seconds": {"type": "number", "exclusiveMinimum": 0},
                                }
                            ),
                        }
                    ),
                }
            ),
            "operator": OPERATOR,
            "gateway": GATEWAY,
        }
    ),
    "definitions": DEFINITIONS,
}

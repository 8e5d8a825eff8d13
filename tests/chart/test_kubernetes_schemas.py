"""Every rendered object is valid for Kubernetes 1.30 (the chart's kubeVersion floor) and for the
newest version kubernetes-validate ships, in strict mode (unknown fields are errors).

kubernetes-validate knows only built-in kinds and the CRD kind itself. The one custom kind the
chart renders, the Prometheus Operator's ServiceMonitor, is checked against the subset of its
published schema the chart uses, closed so a misplaced field still fails.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .conftest import REPO, Obj

VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _LABELS, "matchExpressions": {"type": "array"}},
}
#: monitoring.coreos.com/v1 ServiceMonitor, the fields the chart sets (from the CRD in
#: prometheus-operator's example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml).
SERVICE_MONITOR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _LABELS,
                "annotations": _LABELS,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": _SELECTOR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


def _validate(obj: Obj, version: str) -> None:
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(obj, SERVICE_MONITOR)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        pytest.fail(f"{name} is invalid for Kubernetes {version}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_are_valid_kubernetes(rendered: list[Obj], version: str) -> None:
    for obj in rendered:
        _validate(obj, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_install_bundle_is_valid_kubernetes(version: str) -> None:
    text = (REPO / "manifests" / "install.yaml").read_text()
    for obj in (d for d in yaml.safe_load_all(text) if d):
        _validate(obj, version)


def test_service_monitor_schema_rejects_a_misplaced_field(all_objects: list[Obj]) -> None:
    monitor = next(o for o in all_objects if o["kind"] == "ServiceMonitor")
    broken = {**monitor, "spec": {**monitor["spec"], "interval": "30s"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR)

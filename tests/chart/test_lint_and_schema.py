"""The chart lints strictly, and its values schema rejects unknown keys and wrong types."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import CHART, REPO, VALUES_ALL, Helm


@pytest.mark.parametrize("values", [[], [VALUES_ALL]], ids=["default", "all-options"])
def test_helm_lint_strict_passes(helm: Helm, values: list[Any]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["--values", str(v)]
    out = helm(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout
    assert "[ERROR]" not in out.stdout


@pytest.mark.parametrize(
    "setting",
    [
        "replicaCount=2",  # top level: belongs under operator.
        "operator.replicas=2",
        "operator.leaderElection.enable=true",
        "gateway.service.typ=NodePort",
        "gateway.autoscaling.targetCPU=50",
        "crds.keepp=true",
        "operator.resources.limit.cpu=1",
        "gateway.tolerations[0].effects=NoSchedule",
    ],
)
def test_unknown_key_fails_helm_template(helm: Helm, setting: str) -> None:
    out = helm.template(set_=[setting])
    assert out.returncode != 0
    assert "additional properties" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "setting",
    [
        'operator.replicaCount="two"',
        'crds.enabled="yes"',
        'image.pullPolicy="Sometimes"',
        'gateway.service.type="Ingress"',
        "gateway.port=70000",
        'watchNamespaces=["Not_A_Namespace"]',
        'operator.serviceMonitor.interval="soon"',
        'image.digest="latest"',
        'operator.extraArgs="--verbose"',
        "gateway.podDisruptionBudget.minAvailable=-1",
    ],
)
def test_wrong_type_or_value_fails_helm_template(helm: Helm, setting: str) -> None:
    out = helm.template(set_json=[setting])
    assert out.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


def _objects_with_properties(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects_with_properties(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects_with_properties(value, f"{path}[{i}]")


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())  # type: ignore[no-any-return]


def test_every_schema_object_is_closed() -> None:
    open_objects = [
        path
        for path, node in _objects_with_properties(_schema())
        if node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_every_chart_key_is_described_in_the_schema() -> None:
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        for key, sub in node.get("properties", {}).items():
            if not sub.get("description"):
                yield f"{path}{key}"
            if "$ref" not in sub:
                yield from walk(sub, f"{path}{key}.")

    assert list(walk(_schema(), "")) == []


def test_generated_chart_files_and_install_bundle_are_fresh() -> None:
    out = subprocess.run(
        [str(REPO / "hack" / "generate-chart.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert out.returncode == 0, f"run `make generate` and commit:\n{out.stderr}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "http://ballast-gateway.ballast-system.svc/v1"),
        ([VALUES_ALL], "http://llm-gateway.ballast-system.svc:8000/v1"),
    ],
    ids=["default", "all-options"],
)
def test_notes_render_the_first_steps(helm: Helm, values: list[Any], expected: str) -> None:
    args = ["install", "ballast", str(CHART), "--namespace", "ballast-system", "--dry-run=client"]
    for v in values:
        args += ["--values", str(v)]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    notes = out.stdout.partition("NOTES:")[2]
    assert "kubectl apply -n ai -f manifests/examples/ollama-cpu.yaml" in notes
    assert "OpenAI(base_url=" in notes
    assert expected in notes

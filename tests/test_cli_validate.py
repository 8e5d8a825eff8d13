"""`ballast validate` and `ballast crd` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.clirun import ballast
from tests.factories import external, llmservice_obj, vllm

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "manifests" / "examples"


def test_examples_are_valid_with_one_line_each() -> None:
    result = ballast("validate", "-f", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(list(EXAMPLES.glob("*.yaml")))
    assert all(": valid (model " in line for line in lines)


def test_invalid_document_exits_1_with_file_object_and_field(tmp_path: Path) -> None:
    bad = llmservice_obj(vllm(scaling={"minReplicas": 5, "maxReplicas": 2}), external(url=None))
    del bad["spec"]["backends"][1]["url"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = ballast("validate", "-f", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        f"{path}: LLMService/chat: spec.backends[0].scaling.minReplicas: minReplicas must not exceed maxReplicas"
        in lines
    )
    assert (
        f"{path}: LLMService/chat: spec.backends[1].url: engine openai (an external API) needs url"
        in lines
    )
    assert "Traceback" not in result.stderr


def test_multi_document_stdin_reports_each_and_skips_other_kinds() -> None:
    docs = [
        llmservice_obj(name="good"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        llmservice_obj(vllm("Bad_Name"), name="bad"),
    ]
    result = ballast("validate", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert result.returncode == 1
    assert "<stdin>: LLMService/good: valid" in result.stdout
    assert "<stdin>: ConfigMap/cm: skipped (not an LLMService)" in result.stdout
    assert "<stdin>: LLMService/bad: spec.backends[0].name:" in result.stderr


def test_only_other_kinds_is_success() -> None:
    result = ballast(
        "validate", "-f", "-", stdin="apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    )
    assert result.returncode == 0
    assert "skipped" in result.stdout


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("backends: [\n  - {name: x", "not valid YAML at line"),
        ("", "no documents found"),
    ],
)
def test_garbage_exits_2_without_traceback(stdin: str, needle: str) -> None:
    result = ballast("validate", "-f", "-", stdin=stdin)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = ballast("validate", "-f", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "cannot read: No such file or directory" in result.stderr

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = ballast("validate", "-f", str(binary))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_a_scalar_document_is_a_problem_not_a_crash() -> None:
    result = ballast("validate", "-f", "-", stdin="just a string\n")
    assert result.returncode == 1
    assert "expected a mapping, got str" in result.stderr


def test_wrong_api_version_is_named() -> None:
    obj = llmservice_obj() | {"apiVersion": "ballast.dev/v1"}
    result = ballast("validate", "-f", "-", stdin=yaml.safe_dump(obj))
    assert result.returncode == 1
    assert "apiVersion: expected ballast.dev/v1alpha1" in result.stderr


def test_crd_command_prints_the_committed_crd() -> None:
    result = ballast("crd")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "crds" / "llmservices.ballast.dev.yaml").read_text()

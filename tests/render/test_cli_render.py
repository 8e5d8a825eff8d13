"""`ballast render` end to end, as GitOps pipelines run it (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.clirun import ballast
from tests.factories import llmservice_obj, vllm
from tests.render.conftest import EXAMPLES, GOLDENS


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders_as_yaml_and_json_with_the_same_objects(path: Path) -> None:
    as_yaml = ballast("render", "-f", str(path))
    as_json = ballast("render", "-f", str(path), "-o", "json")
    assert (as_yaml.returncode, as_json.returncode) == (0, 0), as_yaml.stderr + as_json.stderr
    docs = [d for d in yaml.safe_load_all(as_yaml.stdout) if d is not None]
    listing = json.loads(as_json.stdout)
    assert listing["kind"] == "List"
    assert docs == listing["items"]
    assert docs[0]["kind"] == "ConfigMap"
    # What the CLI prints is byte for byte what the reviewed golden file holds.
    assert as_yaml.stdout == (GOLDENS / f"example-{path.stem}.yaml").read_text(encoding="utf-8")


def test_invalid_input_gets_the_messages_and_exit_code_of_validate(tmp_path: Path) -> None:
    bad = llmservice_obj(vllm(scaling={"minReplicas": 5, "maxReplicas": 2}))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    rendered, validated = ballast("render", "-f", str(path)), ballast("validate", "-f", str(path))
    assert rendered.returncode == validated.returncode == 1
    assert rendered.stderr == validated.stderr
    assert "minReplicas must not exceed maxReplicas" in rendered.stderr
    assert rendered.stdout == ""
    assert "Traceback" not in rendered.stderr


def test_unusable_input_exits_2_like_validate() -> None:
    rendered = ballast("render", "-f", "-", stdin="backends: [\n  - {name: x")
    assert rendered.returncode == 2
    assert "not valid YAML at line" in rendered.stderr
    assert "Traceback" not in rendered.stderr

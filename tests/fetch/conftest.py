"""Fixtures: a fake hub on loopback (stopped after each test) and ``ballast fetch`` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fetch.fakehub import FakeHub, Served

#: Variables of the developer's or CI's environment that would change what the command does.
CLEARED = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_DISABLE_XET",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    log: str

    @property
    def result(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, self.stdout
        value = json.loads(lines[0])
        assert isinstance(value, dict)
        return value


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    served = Served(FakeHub()).start()
    try:
        yield served.hub
    finally:
        served.stop()


@pytest.fixture
def fetch(tmp_path: Path, hub: FakeHub) -> Any:
    """``fetch(*args, token=None) -> Run``: the command with HF_ENDPOINT at the fake hub."""
    home = tmp_path / "hf-home"
    log = tmp_path / "termination-log"

    def run(*args: str, token: str | None = None) -> Run:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update(
            HF_ENDPOINT=hub.url,
            HF_HOME=str(home),
            HF_HUB_DISABLE_TELEMETRY="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if token is not None:
            env["HF_TOKEN"] = token
        log.unlink(missing_ok=True)
        out = subprocess.run(
            [sys.executable, "-m", "ballast.cli", "fetch", *args, "--termination-log", str(log)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        text = log.read_text() if log.exists() else ""
        return Run(out.returncode, out.stdout, out.stderr, text)

    return run

"""The Ollama cache loader script, run for real by ``sh`` with a stand-in ``ollama`` program.

The stand-in answers ``list`` once its ``serve`` runs and ``pull`` writes a blob into
``OLLAMA_MODELS`` (or fails, when told to). Proven: the marker is written last and only
on success, the termination message carries the size, a second run does nothing, and a
failed pull exits 1 with the pull's message and no marker.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ballast.engines.ollama import LOADER_SCRIPT, MODEL_ENV

FAKE_OLLAMA = r"""#!/bin/sh
state="$FAKE_STATE"
case "$1" in
  serve) touch "$state/serving"; trap 'rm -f "$state/serving"; exit 0' TERM; while :; do sleep 0.1; done ;;
  list) [ -f "$state/serving" ] ;;
  pull)
    echo "pull $2" >> "$state/calls"
    if [ -n "$FAKE_FAIL" ]; then echo "pulling manifest: $FAKE_FAIL" >&2; exit 1; fi
    mkdir -p "$OLLAMA_MODELS/blobs" && printf 'weights' > "$OLLAMA_MODELS/blobs/sha256-1" ;;
esac
"""


@pytest.fixture
def loader(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ollama"
    fake.write_text(FAKE_OLLAMA)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "state").mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(tmp_path / "state"),
        "BALLAST_CACHE_DIR": str(tmp_path / "cache" / "key"),
        "OLLAMA_MODELS": str(tmp_path / "cache" / "key"),
        "BALLAST_TERMINATION_LOG": str(tmp_path / "termination-log"),
        MODEL_ENV: "qwen2.5:1.5b",
        "HOME": str(tmp_path),
    }


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", LOADER_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_pull_fills_the_directory_and_writes_the_marker_last(loader: dict[str, str]) -> None:
    done = run(loader)
    assert done.returncode == 0, done.stderr
    dest = Path(loader["BALLAST_CACHE_DIR"])
    marker = json.loads((dest / ".ballast-complete").read_text())
    assert marker["source"] == "ollama"
    assert marker["model"] == "qwen2.5:1.5b"
    assert marker["bytes"] > 0
    report = json.loads(Path(loader["BALLAST_TERMINATION_LOG"]).read_text())
    assert report == {"revision": None, "bytes": marker["bytes"]}
    assert not (dest / ".ballast-complete.tmp").exists()
    assert not (Path(loader["FAKE_STATE"]) / "serving").exists()  # the server was stopped

    again = run(loader)
    assert again.returncode == 0
    calls = (Path(loader["FAKE_STATE"]) / "calls").read_text().splitlines()
    assert calls == ["pull qwen2.5:1.5b"]  # the second run found the marker


def test_a_failed_pull_leaves_no_marker_and_reports_why(loader: dict[str, str]) -> None:
    failed = run({**loader, "FAKE_FAIL": "file does not exist"})
    assert failed.returncode == 1
    assert not (Path(loader["BALLAST_CACHE_DIR"]) / ".ballast-complete").exists()
    assert "file does not exist" in Path(loader["BALLAST_TERMINATION_LOG"]).read_text()

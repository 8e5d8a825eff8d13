"""Run the ``ballast`` command as a user does: a subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys


def ballast(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``ballast ARGS…`` with ``stdin``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "ballast.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

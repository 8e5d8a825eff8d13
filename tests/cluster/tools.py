"""The real `kubectl` and `helm` binaries (from `hack/k8s-tools.sh`), bound to one
kubeconfig, as callables that return the finished process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .binaries import REPO


class ToolFailed(AssertionError):
    """A CLI call that was expected to succeed did not; carries its output."""


def tools_dir() -> Path:
    """The directory holding `kubectl` and `helm` (downloaded once, then cached)."""
    out = subprocess.run(
        [str(REPO / "hack/k8s-tools.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"hack/k8s-tools.sh failed:\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1])


class Tool:
    """`tool(*args)` runs the binary against `kubeconfig` and returns the CompletedProcess.

    With `check=True` (the default) a non-zero exit raises `ToolFailed` showing
    stdout and stderr, so a failing test says what the tool said.
    """

    def __init__(self, binary: Path, kubeconfig: Path, env: Mapping[str, str] | None = None):
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = dict(env or {})

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        argv = [str(self.binary), *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ToolFailed(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

"""The real operator (`ballast run`) as a child process of a test, against a real API
server, plus what it needs around it on loopback.

* `AuditedPlane`: a `ControlPlane` whose audit policy also records every *read* by
  chosen users, so a forbidden GET/LIST/WATCH shows up as a 403 in the audit log
  (the default policy records writes only).
* `Fleet`: one threaded HTTP server on 127.0.0.1 standing in for every backend;
  self-hosted probes reach it through `BALLAST_PROBE_URL_OVERRIDE` as
  `/<namespace>/<service>/<backend>/<health path>`, external backends use
  `Fleet.url(...)` and must send the API key.
* `OperatorProcess`: `python -m ballast.cli run ARGS` with a kubeconfig, in its own
  process group, dying with the test process; `kill()` is a SIGKILL, `stop()` a
  SIGTERM then SIGKILL. Its output goes to a log file the tests read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .audit import POLICY, WRITE_VERBS
from .binaries import REPO
from .controlplane import ControlPlane
from .poll import wait_for
from .procs import _die_with_parent


class AuditedPlane(ControlPlane):
    """A control plane that also audits every request (reads too) of `users`."""

    def __init__(self, *args: Any, audit_users: Iterable[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audit_users = list(audit_users)

    def _write_pki(self) -> None:
        super()._write_pki()
        policy = {
            **POLICY,
            "rules": [
                {"level": "Metadata", "users": self.audit_users},
                {"level": "Metadata", "verbs": list(WRITE_VERBS)},
                {"level": "None"},
            ],
        }
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))


class Fleet:
    """Loopback HTTP backends: 200 for every health path unless a backend is set down."""

    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.down: set[str] = set()
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                external = parts[0] == "ext"
                key = "/".join(parts[1:4] if external else parts[:3])
                with fleet._lock:
                    fleet.hits[key] = fleet.hits.get(key, 0) + 1
                status = 200
                if external and self.headers.get("Authorization") != f"Bearer {fleet.api_key}":
                    status = 401
                elif key in fleet.down:
                    status = 503
                body = b'{"object": "list", "data": []}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Fleet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def override(self) -> dict[str, str]:
        """`BALLAST_PROBE_URL_OVERRIDE`: every self-hosted backend probed here."""
        return {"*": self.base + "/{namespace}/{service}/{backend}"}

    def url(self, namespace: str, service: str, backend: str) -> str:
        """The `url` of an external backend (an OpenAI base URL ending in /v1)."""
        return f"{self.base}/ext/{namespace}/{service}/{backend}/v1"

    def probed(self, namespace: str, service: str, backend: str) -> int:
        with self._lock:
            return self.hits.get(f"{namespace}/{service}/{backend}", 0)


class OperatorProcess:
    """`ballast run` as a child process; restartable (each start appends to the same log)."""

    def __init__(
        self,
        kubeconfig: Path,
        args: Sequence[str],
        health_port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.args = list(args)
        self.health_port = health_port
        self.log = log
        self.extra_env = dict(env or {})
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BALLAST_", "KUBE"))}
        return {**inherited, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until kopf's liveness endpoint answers (startup handlers done)."""
        if self.running():
            raise RuntimeError("operator already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: ballast {' '.join(self.args)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ballast.cli", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=REPO,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        wait_for(self._alive_or_exited, timeout=timeout, what="the operator's /healthz")
        if not self.running():
            raise AssertionError(f"operator exited at start:\n{self.tail()}")

    def _alive_or_exited(self) -> bool:
        return not self.running() or self.alive()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def alive(self) -> bool:
        """The process runs and kopf's liveness endpoint answers 200."""
        if not self.running():
            return False
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as rsp:
                return bool(rsp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, as when a node dies."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (kopf's graceful exit), SIGKILL after `grace`; the exit code (None: killed)."""
        proc = self._proc
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._proc = None
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

"""What the controller tier runs: the real operator as a subprocess, and loopback backends.

:class:`Operator` starts ``python -m ballast.cli run`` against an emulator (its
kubeconfig), with probes pointed at the loopback :class:`Fleet` through
``BALLAST_PROBE_URL_OVERRIDE``; :meth:`Operator.kill` is a SIGKILL, :meth:`Operator.stop`
a SIGTERM (kopf's graceful exit). Every process and server is stopped by its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web

from tests.emulator import KubeEmulator, write_kubeconfig

OPERATOR_AGENTS = ("ballast/", "kopf/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def by_operator(request: Any) -> bool:
    """True for requests the operator made (its client or kopf's), not the test's."""
    agent = next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")
    return agent.startswith(OPERATOR_AGENTS)


class Fleet:
    """One loopback HTTP server standing in for every backend, healthy unless told otherwise.

    Probes reach it as ``/<namespace>/<service>/<backend>/<health path>`` (self-hosted, via
    the ``"*"`` probe URL override) or at an external backend's ``url`` from :meth:`url`.
    External paths need ``Authorization: Bearer <api_key>``.
    """

    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.down: set[str] = set()
        self.hits: dict[str, int] = {}
        self.base = ""
        self._runner: aiohttp.web.AppRunner | None = None

    def url(self, namespace: str, service: str, backend: str) -> str:
        """The ``url`` of an external backend (an OpenAI base URL ending in /v1)."""
        return f"{self.base}/ext/{namespace}/{service}/{backend}/v1"

    @property
    def override(self) -> dict[str, str]:
        return {"*": self.base + "/{namespace}/{service}/{backend}"}

    def set(self, key: str, healthy: bool) -> None:
        """Make backend ``namespace/service/backend`` answer 200 (healthy) or 503."""
        (self.down.discard if healthy else self.down.add)(key)

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        parts = request.path.strip("/").split("/")
        external = parts[0] == "ext"
        key = "/".join(parts[1:4] if external else parts[:3])
        self.hits[key] = self.hits.get(key, 0) + 1
        if external and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return aiohttp.web.json_response({"error": "bad key"}, status=401)
        if key in self.down:
            return aiohttp.web.json_response({"error": "down"}, status=503)
        return aiohttp.web.json_response({"object": "list", "data": []})

    async def __aenter__(self) -> Fleet:
        app = aiohttp.web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Operator:
    """``ballast run`` as a child process against the emulator."""

    def __init__(
        self,
        api: KubeEmulator,
        workdir: Path,
        probes: Mapping[str, str] | None = None,
        args: tuple[str, ...] = ("--standalone", "--all-namespaces"),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.extra_env = dict(env or {})
        self.api = api
        self.workdir = workdir
        self.probes = dict(probes or {})
        self.args = args
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log = workdir / "operator.log"
        self.process: asyncio.subprocess.Process | None = None

    def env(self) -> dict[str, str]:
        kubeconfig = write_kubeconfig(self.api, self.workdir / "kubeconfig")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BALLAST_", "KUBE"))}
        env.update(
            KUBECONFIG=str(kubeconfig),
            BALLAST_PROBE_URL_OVERRIDE=json.dumps(self.probes),
            BALLAST_LOG_FORMAT="plain",
            BALLAST_WATCH_TIMEOUT="60",
            BALLAST_SECRET_RETRY="1",
        )
        env.update(self.extra_env)
        return env

    async def start(self) -> Operator:
        args = [
            sys.executable,
            "-m",
            "ballast.cli",
            "run",
            *self.args,
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
        ]
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *args, env=self.env(), stdout=log, stderr=log, cwd=self.workdir
            )
        await asyncio.wait_for(self.wait_alive(), 30)
        return self

    async def _alive_async(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as s,
                s.get(
                    f"http://127.0.0.1:{self.health_port}/healthz",
                    timeout=aiohttp.ClientTimeout(total=1),
                ) as rsp,
            ):
                return rsp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def health_check(self) -> bool:
        """kopf's liveness endpoint answers 200."""
        return await self._alive_async()

    async def wait_alive(self) -> None:
        while not await self._alive_async():
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"operator exited:\n{self.tail()}")
            await asyncio.sleep(0.2)

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as rsp,
        ):
            return await rsp.text()

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            await self.kill()


@contextlib.asynccontextmanager
async def operator(api: KubeEmulator, workdir: Path, **kwargs: Any) -> AsyncIterator[Operator]:
    op = Operator(api, workdir, **kwargs)
    try:
        await op.start()
        yield op
    finally:
        await op.stop()

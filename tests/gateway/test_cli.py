"""``ballast gateway`` as a real process: flags, env vars, fail-fast, graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.backends import free_port
from tests.gateway.conftest import BackendFactory
from tests.gateway.harness import backend_row, table

CLI = [sys.executable, "-m", "ballast.cli", "gateway"]


async def wait_ready(url: str, proc: asyncio.subprocess.Process, within: float = 15) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    async with aiohttp.ClientSession() as http:
        while loop.time() < end:
            assert proc.returncode is None, "gateway exited"
            try:
                async with http.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway not ready")


@pytest.mark.slow
async def test_sigterm_drains_in_flight_request(backend: BackendFactory, tmp_path: Path) -> None:
    primary = await backend("primary")
    primary.behave(delay=1.0)
    routes = tmp_path / "routes.yaml"
    routes.write_text(json.dumps(table("chat", [backend_row("primary", primary.url)])))
    port, metrics_port = free_port(), free_port()
    env = os.environ | {"BALLAST_GATEWAY_PORT": str(port), "BALLAST_GATEWAY_LOG_LEVEL": "warning",
                        "BALLAST_GATEWAY_METRICS_PORT": str(metrics_port)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *CLI, "--routes", str(routes), "--host", "127.0.0.1", "--loop", "asyncio",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                assert r.status == 200
                assert "ballast_gateway_in_flight" in await r.text()
            async with http.get(url + "/metrics") as r:
                assert r.status == 404  # never on the API port
            body = {"model": "chat", "input": "x"}
            pending = asyncio.create_task(http.post(url + "/v1/embeddings", json=body))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            resp = await pending
            assert resp.status == 200
            assert (await resp.json())["model"] == "chat"  # the served name, as asked
            assert resp.headers["x-ballast-upstream-model"] == "primary-upstream"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_unusable_routes_file_fails_fast(tmp_path: Path) -> None:
    broken = tmp_path / "routes.yaml"
    broken.write_text("model: chat\nbackends: []\n")
    for path in (broken, tmp_path / "missing.yaml"):
        out = subprocess.run(
            [*CLI, "--routes", str(path), "--port", "0"], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2
        assert str(path) in out.stderr
        assert "Traceback" not in out.stderr


def test_help_lists_flags_and_env_vars() -> None:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=30, check=True)
    for flag in ("--routes", "--namespace", "--host", "--port", "--max-body-bytes", "--log-level",
                 "--metrics-port", "--auth", "--auth-namespace", "--body-timeout",
                 "--max-connections", "--hold-keepalive-seconds"):  # fmt: skip
        assert flag in out.stdout
    assert "BALLAST_GATEWAY_ROUTES" in out.stdout


def test_a_keep_alive_interval_of_zero_fails_fast(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(table("chat", [backend_row("a", "http://127.0.0.1:9/v1")])))
    out = subprocess.run(
        [*CLI, "--routes", str(routes), "--port", "0", "--hold-keepalive-seconds", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--hold-keepalive-seconds" in out.stderr


def test_keys_without_a_kubernetes_api_fail_fast(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(table("chat", [backend_row("a", "http://127.0.0.1:9/v1")])))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [*CLI, "--routes", str(routes), "--auth", "keys", "--auth-namespace", "gw"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--auth keys needs the Kubernetes API" in out.stderr


def test_cli_module_imports_no_aiohttp() -> None:
    code = "import sys, ballast.gateway.cli; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "False"


def test_bad_env_value_only_breaks_the_gateway_command(tmp_path: Path) -> None:
    env = os.environ | {"BALLAST_GATEWAY_PORT": "not-a-port"}
    other = subprocess.run(
        [sys.executable, "-m", "ballast.cli", "crd"], env=env, capture_output=True, timeout=60
    )
    assert other.returncode == 0
    gw = subprocess.run(
        [*CLI, "--routes", "x"], env=env, capture_output=True, text=True, timeout=60
    )
    assert gw.returncode == 2
    assert "--port" in gw.stderr


def test_no_routes_and_no_cluster_fails_fast(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(CLI, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "kubeconfig" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_the_process_writes_one_access_line_per_request_to_stderr(
    backend: BackendFactory, tmp_path: Path, fmt: str
) -> None:
    """The access lines of the real process (batched past the logging module), down to the
    last request drained at SIGTERM; every other log line in the same format."""
    primary = await backend("primary")
    routes = tmp_path / "routes.yaml"
    routes.write_text(json.dumps(table("chat", [backend_row("primary", primary.url)])))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *CLI, "--routes", str(routes), "--host", "127.0.0.1", "--port", str(port),
        "--metrics-port", "0", "--loop", "asyncio", "--log-format", fmt,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    ids = []
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, proc)
        async with aiohttp.ClientSession() as http:
            for model, rid in (("chat", "first"), ("nope", "second"), ("chat", "third")):
                body = {"model": model, "messages": [{"role": "user", "content": "s3cret"}]}
                async with http.post(
                    url + "/v1/chat/completions", json=body, headers={"X-Request-Id": rid}
                ) as r:
                    ids.append((r.headers["X-Request-Id"], r.status))
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert ids == [("first", 200), ("second", 404), ("third", 200)]
    text = err.decode()
    assert "s3cret" not in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
        access = [a for a in lines if a["logger"] == "ballast.access"]
        assert [(a["request_id"], a["status"]) for a in access] == ids
        assert access[0]["backend"] == "primary"
        assert access[0]["completion_tokens"] == 3
    else:
        access = [line for line in text.splitlines() if "ballast.access: request" in line]
        assert len(access) == 3
        assert "request_id=first" in access[0]
        assert "status=200" in access[0]
        assert "request_id=second" in access[1]
        assert "status=404" in access[1]

"""Bodies and connections are bounded; every bad input gets a 4xx and at most one log line.

Raw sockets on loopback: HTTP libraries refuse to send most of these requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.gateway.backends import free_port
from tests.gateway.conftest import BackendFactory, GatewayFactory
from tests.gateway.harness import GatewayUnderTest, backend_row, table
from tests.gateway.test_cli import wait_ready

CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def gateway_for(
    backend: BackendFactory, gateway: GatewayFactory, **cfg: object
) -> GatewayUnderTest:
    primary = await backend("primary")
    return await gateway([table("chat", [backend_row("primary", primary.url)])], **cfg)


def port_of(gw: GatewayUnderTest) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def head(length: int | None = None, extra: str = "") -> bytes:
    lines = [f"POST {CHAT} HTTP/1.1", "Host: gw", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length bodies); a gateway
    that never answers fails the test after 30 s instead of hanging it."""
    return await asyncio.wait_for(_answer(reader), 30)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    assert status_line, "connection closed without an answer"
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def test_trickled_body_is_cut_with_408(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_for(backend, gateway, body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(head(len(BODY)))

    async def trickle() -> None:
        for byte in BODY:  # one byte every 0.1 s: the whole body would take seconds
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    status, headers, body = await answer(reader)
    sender.cancel()
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert headers.get("connection") == "close"
    writer.close()


async def test_stalled_body_is_cut_with_408(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_for(backend, gateway, body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(head(len(BODY)) + BODY[:10])  # then nothing
    status, _, _ = await answer(reader)
    assert status == 408
    assert await reader.read() == b""  # and the connection is closed
    writer.close()


async def test_declared_length_over_the_limit_is_413_before_the_body(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_for(backend, gateway, max_body_bytes=1024, body_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(head(10**9))  # not a byte of the body follows: only the head can decide
    status, _, body = await answer(reader)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    writer.close()


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip body whose JSON inflates to ``inflated_mib`` MiB, built without holding it."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(b'{"model": "chat", "pad": "')]
    block = b"a" * (1 << 20)
    parts.extend(deflate.compress(block) for _ in range(inflated_mib))
    parts.append(deflate.compress(b'"}') + deflate.flush())
    return b"".join(parts)


async def test_compressed_body_is_inflated_within_the_limit(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])], max_body_bytes=4096)
    small = zlib.compress(BODY)  # deflate (zlib-wrapped), well within the limit
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(head(len(small), "Content-Encoding: deflate\r\n") + small)
    status, _, _ = await answer(reader)
    assert status == 200
    assert primary.seen[0].body["messages"][0]["content"] == "hi"
    assert "content-encoding" not in {k.lower() for k in primary.seen[0].headers}
    bomb = gzip_bomb(2)
    writer.write(head(len(bomb), "Content-Encoding: gzip\r\n") + bomb)
    status, _, body = await answer(reader)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    writer.close()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_gzip_bombs_cost_at_most_the_body_limit(
    backend: BackendFactory, tmp_path: Path
) -> None:
    """Ten 300 MiB gzip bombs at once against the real process: each is refused with 413 and
    the process's peak memory grows by far less than one inflated bomb."""
    primary = await backend("primary")
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(table("chat", [backend_row("primary", primary.url)])))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ballast.cli", "gateway", "--routes", str(routes), "--host",
        "127.0.0.1", "--port", str(port), "--metrics-port", "0", "--max-body-bytes",
        str(1 << 20), "--log-level", "warning",
        env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        before = peak_rss_kib(proc.pid)
        bomb = gzip_bomb(300)
        assert len(bomb) < 400 * 1024

        async def one() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head(len(bomb), "Content-Encoding: gzip\r\n") + bomb)
            status, _, _ = await answer(reader)
            writer.close()
            return status

        assert await asyncio.gather(*(one() for _ in range(10))) == [413] * 10
        grown_mib = (peak_rss_kib(proc.pid) - before) / 1024
        assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB"  # one bomb: 300 MiB
    finally:
        proc.terminate()
        await proc.wait()


async def test_connections_over_the_bound_get_503_and_are_closed(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_for(backend, gateway, max_connections=2)
    held = [await asyncio.open_connection("127.0.0.1", port_of(gw)) for _ in range(2)]
    for reader, writer in held:  # both are served
        writer.write(head(len(BODY)) + BODY)
        assert (await answer(reader))[0] == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    status, _headers, body = await answer(reader)
    assert status == 503
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    assert await reader.read() == b""
    writer.close()
    held[0][1].close()
    await held[0][1].wait_closed()

    async def served() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
        writer.write(head(len(BODY)) + BODY)
        status = (await answer(reader))[0]
        writer.close()
        return status

    for _ in range(100):  # the server notices the closed connection within a loop turn or two
        if await served() == 200:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("a freed connection slot was never reused")
    held[1][1].close()


async def test_deeply_nested_json_is_400(backend: BackendFactory, gateway: GatewayFactory) -> None:
    gw = await gateway_for(backend, gateway)
    body = b'{"model": "chat", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    writer.write(head(len(body)) + body)
    status, _, raw = await answer(reader)
    assert status == 400
    assert json.loads(raw)["error"]["code"] == "invalid_request"
    writer.close()


SMUGGLING = [
    # both lengths: a request-smuggling classic
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-SECRET-123\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # a header line without a colon, after the credentials
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-SECRET-123\r\n"
    b"Broken sk-SECRET-123\r\n\r\n",
]


async def test_malformed_http_is_one_log_line_without_raw_bytes(
    backend: BackendFactory, gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await gateway_for(backend, gateway)
    for raw in SMUGGLING * 3:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
        writer.write(raw)
        status, headers, body = await answer(reader)
        assert status == 400
        assert json.loads(body)["error"]["code"] == "malformed_request"  # OpenAI shape
        assert headers["server"] == "ballast"
        assert b"SECRET" not in body
        writer.close()
    assert gw.sample("ballast_gateway_malformed_requests_total") == 6
    records = [r for r in caplog.records if "aiohttp" in r.name or "malformed" in r.getMessage()]
    assert 1 <= len(records) <= 2, [r.getMessage() for r in records]  # one line per second
    for record in caplog.records:
        assert record.exc_info is None or record.name != "aiohttp.server"
        text = record.getMessage() + str(record.exc_info or "") + str(record.exc_text or "")
        assert "SECRET" not in text
    assert "malformed HTTP request from 127.0.0.1 refused" in records[0].getMessage()

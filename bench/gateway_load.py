"""Load generators for the gateway benchmark: ``wrk`` for throughput and latency, and a
raw-socket client for streaming time-to-first-token (each runs in a process of its own).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateway_keys_api import BENCH_KEY

CHAT_BODY = (
    b'{"model":"bench","messages":[{"role":"system","content":"You are terse."},'
    b'{"role":"user","content":"Say something about foxes."}],"max_tokens":16,"temperature":0}'
)
STREAM_BODY = CHAT_BODY[:-1] + b',"stream":true}'

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    #: CPU time the measured process spent per request (set by the caller).
    cpu_us: float = 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> LoadResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return LoadResult(rps, p50, p99, errors, requests)


def wrk(url: str, connections: int, seconds: float) -> LoadResult:
    """Run wrk (one thread: it shares two cores with everything else) against ``url``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % (CHAT_BODY.decode(), BENCH_KEY))
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script, "--latency", url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        Path(script).unlink()
    return parse_wrk(out)


async def _stream_once(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> float:
    """Send one streaming request; seconds until the first SSE chunk (then drain the rest)."""
    start = time.perf_counter()
    writer.write(request)
    await reader.readuntil(b"\r\n\r\n")
    first: float | None = None
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            break
        data = await reader.readexactly(size + 2)
        if first is None and b"data:" in data:
            first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("stream had no data event")
    return first


async def _ttft(host: str, port: int, path: str, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), host.encode(), BENCH_KEY.encode(), len(STREAM_BODY), STREAM_BODY)
    )
    try:
        for _ in range(20):  # warm-up
            await _stream_once(reader, writer, request)
        return [await _stream_once(reader, writer, request) for _ in range(count)]
    finally:
        writer.close()


def ttft(
    host: str, port: int, path: str = "/v1/chat/completions", count: int = 500
) -> tuple[float, float]:
    """(p50, p99) time to the first streamed event, in ms, over ``count`` sequential streams."""
    samples = sorted(asyncio.run(_ttft(host, port, path, count)))
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) * 1000, p99 * 1000

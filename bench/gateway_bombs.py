"""Peak memory of a gateway process under concurrent compressed-body bombs.

Starts ``ballast gateway`` (and, with ``--before DIR``, another checkout's gateway) with
``--max-body-bytes`` at its default (10 MiB), then sends ``--bombs`` gzip bodies at once,
each about 300 KB that inflate to ``--inflated-mib`` MiB of JSON, over raw sockets. Reports
each process's answers, the time until the last answer and its peak RSS (VmHWM) before and
after. Prints Markdown.

    .venv/bin/python bench/gateway_bombs.py [--bombs 20] [--inflated-mib 300] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bomb(inflated_mib: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(b'{"model": "bench", "pad": "')]
    block = b"a" * (1 << 20)
    parts.extend(deflate.compress(block) for _ in range(inflated_mib))
    parts.append(deflate.compress(b'"}') + deflate.flush())
    return b"".join(parts)


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def send(port: int, body: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        writer.write(head.encode() + body)
        line = await reader.readline()
        return line.split()[1].decode() if line else "closed"
    except ConnectionError:
        return "reset"
    finally:
        writer.close()


async def attack(port: int, body: bytes, n: int) -> tuple[Counter[str], float]:
    start = time.perf_counter()
    answers = await asyncio.gather(*(send(port, body) for _ in range(n)))
    return Counter(answers), time.perf_counter() - start


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(0.5)
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not listen")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bombs", type=int, default=20)
    parser.add_argument("--inflated-mib", type=int, default=300)
    parser.add_argument("--before", type=Path, help="another checkout's operator/ directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bombs-"))
    routes = workdir / "routes.json"
    table = {"model": "bench", "backends": [{"name": "a", "engine": "vllm",
             "url": "http://127.0.0.1:9/v1", "upstreamModel": "a"}]}  # fmt: skip
    routes.write_text(json.dumps(table))
    body = bomb(args.inflated_mib)
    runs = [("gateway", {}, ["--metrics-port", "0"])]
    if args.before is not None:
        runs.insert(0, ("gateway/before", {"PYTHONPATH": str(args.before.resolve())}, []))
    print(f"{args.bombs} concurrent gzip bodies of {len(body) / 1024:.0f} KiB, each inflating "
          f"to {args.inflated_mib} MiB; --max-body-bytes 10 MiB (default)\n")  # fmt: skip
    print(
        "| gateway | answers | seconds to the last answer | peak RSS before MiB | peak RSS after MiB |"
    )
    print("|---|---|---:|---:|---:|")
    for name, env, extra in runs:
        port = free_port()
        cmd = [sys.executable, "-m", "ballast.cli", "gateway", "--routes", str(routes),
               "--host", "127.0.0.1", "--port", str(port), "--loop", "asyncio",
               "--log-level", "error", *extra]  # fmt: skip
        proc = start(cmd, port, env)
        try:
            before = peak_mib(proc.pid)
            answers, seconds = asyncio.run(attack(port, body, args.bombs))
            after = peak_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        shown = ", ".join(f"{n} x {a}" for a, n in sorted(answers.items()))
        print(f"| {name} | {shown} | {seconds:.2f} | {before:.0f} | {after:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

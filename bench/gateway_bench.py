"""Gateway benchmark: direct to a fast upstream vs through the gateway (and a bare floor).

Everything runs in its own process: the upstream (``gateway_upstream.py``), each target
in front of it (``ballast gateway`` in several configurations, and the 30-line aiohttp
pass-through ``gateway_floor.py``), and the load generators (``wrk``; a raw-socket
client for time-to-first-token). All targets are started at once and measured back to
back per connection count, so a change in background load hits them alike; ratios
measured in one run are what to compare. Prints Markdown tables (and ``--json``).

    .venv/bin/python bench/gateway_bench.py [--seconds 5] [--rounds 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_load import LoadResult, ttft, wrk  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
MODELS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    name: str
    note: str
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


def routes_file(upstream: str, models: int) -> Path:
    rows = [{"name": "local", "engine": "vllm", "url": upstream, "upstreamModel": "bench-upstream"}]
    names = ["bench"] + [f"bench-{i:03d}" for i in range(1, models)]
    tables = [{"model": m, "backends": rows} for m in names]
    path = Path(tempfile.mkdtemp(prefix="gateway-bench-")) / "routes.json"
    path.write_text(json.dumps({"tables": tables}))
    return path


def gateway_cmd(routes: Path, port: int, loop: str) -> list[str]:
    return [PY, "-m", "ballast.cli", "gateway", "--routes", str(routes), "--host", "127.0.0.1",
            "--port", str(port), "--loop", loop, "--log-level", "warning"]  # fmt: skip


def targets(upstream: str, routes: Path) -> list[Target]:
    out = [
        Target("gateway", "ballast gateway, asyncio loop, aiohttp C parser", env={}),
        Target("gateway+uvloop", "ballast gateway, uvloop", env={}),
        Target("gateway-no-cext", "ballast gateway, asyncio, AIOHTTP_NO_EXTENSIONS=1", env={"AIOHTTP_NO_EXTENSIONS": "1"}),
        Target("floor", "bare aiohttp pass-through (gateway_floor.py), asyncio"),
        Target("floor+uvloop", "bare aiohttp pass-through, uvloop"),
    ]  # fmt: skip
    for t in out:
        t.port = free_port()
        if t.name.startswith("gateway"):
            t.cmd = gateway_cmd(routes, t.port, "uvloop" if "uvloop" in t.name else "asyncio")
        else:
            t.cmd = [PY, str(HERE / "gateway_floor.py"), str(t.port), upstream.removesuffix("/v1")]
            t.cmd += ["--uvloop"] if "uvloop" in t.name else []
    return out


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=os.environ | (env or {}), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_load() -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [" ".join(line.split()) for line in top.splitlines()[1:6]]
    return f"loadavg {' '.join(load)}; top CPU: {', '.join(busy)}"


def measure(all_targets: list[Target], direct: Target, conns: list[int], seconds: float, rounds: int) -> dict[str, dict[int, LoadResult]]:
    samples: dict[str, dict[int, list[LoadResult]]] = {t.name: {c: [] for c in conns} for t in [direct, *all_targets]}
    for t in [direct, *all_targets]:
        wrk(t.url, 16, 1.0)  # warm-up: connections, code paths
    for _ in range(rounds):
        for c in conns:
            for t in [direct, *all_targets]:
                samples[t.name][c].append(wrk(t.url, c, seconds))
                print(f"  {t.name:16} c={c:<3} {samples[t.name][c][-1]}", file=sys.stderr)
    return {name: {c: _median(rs) for c, rs in by_c.items()} for name, by_c in samples.items()}


def _median(results: list[LoadResult]) -> LoadResult:
    best = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    return LoadResult(best.rps, statistics.median(r.p50_ms for r in results), statistics.median(r.p99_ms for r in results), sum(r.errors for r in results))


def report(results: dict[str, dict[int, LoadResult]], ttfts: dict[str, tuple[float, float]], rss: dict[str, float], conns: list[int], notes: dict[str, str]) -> str:
    direct = results["direct"]
    lines = ["| target | conns | req/s | % of direct | p50 ms | p99 ms | added p50 ms | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in conns:
        for name, by_c in results.items():
            r = by_c[c]
            lines.append(f"| {name} | {c} | {r.rps:,.0f} | {100 * r.rps / direct[c].rps:.0f}% | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.p50_ms - direct[c].p50_ms:+.3f} | {r.errors} |")
    lines += ["", "| target | TTFT p50 ms | TTFT p99 ms | added p50 ms |", "|---|---:|---:|---:|"]
    for name, (p50, p99) in ttfts.items():
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 - ttfts['direct'][0]:+.3f} |")
    lines += ["", "| process | RSS MiB |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rss.items()]
    lines += ["", "Targets:"] + [f"- `{k}`: {v}" for k, v in notes.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per cell")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the matrix; report medians")
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--only", default="", help="comma-separated target names (default: all)")
    parser.add_argument("--upstream", choices=["aiohttp", "raw"], default="aiohttp")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    up_port = free_port()
    flags = ["--raw", "--uvloop"] if args.upstream == "raw" else []
    upstream = start([PY, str(HERE / "gateway_upstream.py"), str(up_port), *flags], up_port)
    kind = "raw asyncio protocol on uvloop" if flags else "minimal aiohttp app, asyncio loop"
    direct = Target("direct", f"the upstream itself ({kind})", port=up_port)
    routes = routes_file(f"http://127.0.0.1:{up_port}/v1", MODELS)
    chosen = [t for t in targets(f"http://127.0.0.1:{up_port}/v1", routes) if not args.only or t.name in args.only.split(",")]
    before = machine_load()
    try:
        for t in chosen:
            t.proc = start(t.cmd, t.port, t.env)
        rss = {f"{t.name} ({MODELS} models), idle": rss_mib(t.proc.pid) for t in chosen if t.proc and t.name.startswith("gateway")}
        results = measure(chosen, direct, conns, args.seconds, args.rounds)
        rss |= {f"{t.name} ({MODELS} models), after load": rss_mib(t.proc.pid) for t in chosen if t.proc and t.name.startswith("gateway")}
        with ProcessPoolExecutor(1) as pool:
            ttfts = {t.name: pool.submit(ttft, "127.0.0.1", t.port).result() for t in [direct, *chosen]}
    finally:
        for t in chosen:
            stop(t.proc)
        stop(upstream)
    notes = {t.name: t.note for t in [direct, *chosen]}
    print(report(results, ttfts, rss, conns, notes))
    print(f"\nmachine before: {before}\nmachine after:  {machine_load()}")
    if args.json:
        raw = {"load": {n: {c: asdict(r) for c, r in by.items()} for n, by in results.items()}, "ttft_ms": ttfts, "rss_mib": rss}
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

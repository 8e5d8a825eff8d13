"""Gateway benchmark: direct to a fast upstream vs through the gateway (and a bare floor).

Everything runs in its own process: the upstream (``gateway_upstream.py``), each target
in front of it (``ballast gateway`` in several configurations, and the 30-line aiohttp
pass-through ``gateway_floor.py``), and the load generators (``wrk``; a raw-socket
client for time-to-first-token). All targets are started at once and measured back to
back per connection count, so a change in background load hits them alike: compare the
ratios of one run. Besides throughput and latency it reports the CPU time each target
process spent per request, which background load barely moves. Prints Markdown.

    .venv/bin/python bench/gateway_bench.py [--seconds 5] [--rounds 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from gateway_keys_api import kubeconfig
from gateway_load import LoadResult, ttft, wrk

HERE = Path(__file__).resolve().parent
PY = sys.executable
MODELS = 100
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    note: str
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    #: Where this target's stderr goes (default: the shared process log).
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def is_gateway(self) -> bool:
        return self.name.startswith("gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def routes_file(upstream: str, models: int, workdir: Path) -> Path:
    backend = {
        "name": "local",
        "engine": "vllm",
        "url": upstream,
        "upstreamModel": "bench-upstream",
    }
    names = ["bench"] + [f"bench-{i:03d}" for i in range(1, models)]
    path = workdir / f"routes-{models}.json"
    path.write_text(json.dumps({"tables": [{"model": m, "backends": [backend]} for m in names]}))
    return path


def gateway(
    name: str,
    note: str,
    routes: Path,
    loop: str = "asyncio",
    client: str = "h1",
    extra: tuple[str, ...] = (),
    **env: str,
) -> Target:
    t = Target(name, note, env=env, port=free_port())
    t.cmd = [PY, "-m", "ballast.cli", "gateway", "--routes", str(routes), "--host", "127.0.0.1",
             "--port", str(t.port), "--metrics-port", "0", "--loop", loop,
             "--upstream-client", client, "--access-log", "off", *extra]  # fmt: skip
    return t


def access_logged(name: str, note: str, routes: Path, log: Path) -> Target:
    """``gateway`` writing its JSON access line for every request to a file of its own."""
    t = gateway(name, note, routes)
    t.cmd[t.cmd.index("--access-log") + 1] = "all"
    t.log = log
    return t


def keyed(name: str, note: str, routes: Path, keys_api: Path) -> Target:
    """``gateway`` with client authentication on: keys from the stand-in API (100 keys)."""
    extra = ("--kubeconfig", str(keys_api), "--auth", "keys", "--auth-namespace", "bench")
    return gateway(name, note, routes, extra=extra)


def floor(name: str, note: str, upstream: str, uvloop: bool = False) -> Target:
    t = Target(name, note, port=free_port())
    t.cmd = [PY, str(HERE / "gateway_floor.py"), str(t.port), upstream.removesuffix("/v1")]
    t.cmd += ["--uvloop"] if uvloop else []
    return t


def targets(upstream: str, routes: Path, keys_api: Path, access: Path) -> list[Target]:
    return [
        gateway("gateway", "ballast gateway: h1 upstream client, asyncio loop, aiohttp C parser, access log off", routes),
        access_logged("gateway+access-log", "same as `gateway` with the access log on (--access-log all: one JSON line per request, to a file)", routes, access),
        keyed("gateway+auth", "same as `gateway` with --auth keys (100 keys, every request authenticated)", routes, keys_api),
        gateway("gateway+uvloop", "same with --loop uvloop", routes, loop="uvloop"),
        gateway("gateway/aiohttp-client", "same as `gateway` with --upstream-client aiohttp", routes, client="aiohttp"),
        gateway("gateway/no-cext", "same as `gateway` with AIOHTTP_NO_EXTENSIONS=1 (pure-Python HTTP parser)", routes, AIOHTTP_NO_EXTENSIONS="1"),
        floor("floor", "bare aiohttp pass-through (bench/gateway_floor.py), asyncio loop", upstream),
        floor("floor+uvloop", "the same on uvloop", upstream, uvloop=True),
    ]  # fmt: skip


def start(
    cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            cmd, env=os.environ | (env or {}), stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}; see {log}")
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_load() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True)
    busy = [" ".join(line.split()) for line in ps.stdout.splitlines()[1:6]]
    return f"loadavg {load}; busiest: {', '.join(busy)}"


def run_cell(t: Target, pid: int, conns: int, seconds: float) -> LoadResult:
    before = cpu_seconds(pid)
    result = wrk(t.url, conns, seconds)
    result.cpu_us = (cpu_seconds(pid) - before) / max(1, result.requests) * 1e6
    print(
        f"  {t.name:24} c={conns:<3} {result.rps:9.0f} req/s  p50 {result.p50_ms:.3f} ms  cpu {result.cpu_us:.0f} us/req",
        file=sys.stderr,
    )
    return result


def measure(
    all_targets: list[Target], pids: dict[str, int], conns: list[int], seconds: float, rounds: int
) -> dict[str, dict[int, LoadResult]]:
    samples: dict[str, dict[int, list[LoadResult]]] = {
        t.name: {c: [] for c in conns} for t in all_targets
    }
    for t in all_targets:
        wrk(t.url, 16, 1)  # warm-up: connections, code paths
    for _ in range(rounds):
        for c in conns:
            for t in all_targets:
                samples[t.name][c].append(run_cell(t, pids[t.name], c, seconds))
    return {name: {c: _median(rs) for c, rs in by_c.items()} for name, by_c in samples.items()}


def _median(results: list[LoadResult]) -> LoadResult:
    mid = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    return LoadResult(
        mid.rps, statistics.median(r.p50_ms for r in results), statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results), mid.requests, statistics.median(r.cpu_us for r in results),
    )  # fmt: skip


def report(
    results: dict[str, dict[int, LoadResult]],
    ttfts: dict[str, tuple[float, float]],
    rss: dict[str, float],
    conns: list[int],
) -> str:
    direct = results["direct"]
    lines = ["| target | conns | req/s | % of direct | p50 ms | p99 ms | added p50 ms | CPU µs/req | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for c in conns:
        for name, by_c in results.items():
            r, d = by_c[c], direct[c]
            lines.append(
                f"| {name} | {c} | {r.rps:,.0f} | {100 * r.rps / d.rps:.0f}% | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.p50_ms - d.p50_ms:+.3f} | {r.cpu_us:.0f} | {r.errors} |"
            )
    lines += ["", "| target | TTFT p50 ms | TTFT p99 ms | added p50 ms |", "|---|---:|---:|---:|"]
    for name, (p50, p99) in ttfts.items():
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 - ttfts['direct'][0]:+.3f} |")
    lines += ["", "| gateway process | RSS MiB |", "|---|---:|"] + [
        f"| {k} | {v:.1f} |" for k, v in rss.items()
    ]
    return "\n".join(lines)


def access_volume(path: Path) -> str:
    """The access log's size per 1,000 requests (every line of it is one request)."""
    lines = [line for line in path.read_bytes().splitlines() if b'"ballast.access"' in line]
    if not lines:
        return "access log: no lines"
    size = sum(len(line) + 1 for line in lines)
    return (
        f"access log: {len(lines):,} lines, {size / len(lines):.0f} bytes per line,"
        f" {size / len(lines) * 1000 / 1024:.0f} KiB per 1,000 requests"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per cell")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the matrix; report medians")
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--only", default="", help="comma-separated target names (default: all)")
    parser.add_argument("--upstream", choices=["aiohttp", "raw"], default="aiohttp")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--before",
        type=Path,
        help="also run `gateway/before`: the gateway from another checkout's operator/ "
        "directory (e.g. `git archive <commit> operator | tar -x -C DIR`), same flags as "
        "`gateway` minus those it does not know",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    conns = [int(c) for c in args.connections.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    log = workdir / "processes.log"
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}/v1"
    flags = ["--raw", "--uvloop"] if args.upstream == "raw" else []
    kind = "raw asyncio protocol on uvloop" if flags else "minimal aiohttp app, asyncio loop"
    direct = Target(
        "direct", f"the upstream itself ({kind}, bench/gateway_upstream.py)", port=up_port
    )
    keys_port = free_port()
    keys_config = kubeconfig(keys_port, workdir / "keys.kubeconfig")
    access_log = workdir / "access.log"
    chosen = [t for t in targets(upstream_url, routes_file(upstream_url, MODELS, workdir), keys_config, access_log)
              if not args.only or t.name in args.only.split(",")]  # fmt: skip
    if args.before is not None:
        old = gateway("gateway/before", f"`gateway` from {args.before}", workdir / "routes-100.json",
                      PYTHONPATH=str(args.before.resolve()))  # fmt: skip
        old.cmd.remove("--metrics-port")
        old.cmd.remove("0")
        at = old.cmd.index("--access-log")  # older gateways: no access log; quiet at warning
        old.cmd[at : at + 2] = ["--log-level", "warning"]
        chosen.insert(0, old)
    one_model = gateway("gateway-1-model", "", routes_file(upstream_url, 1, workdir))
    before = machine_load()
    upstream = start([PY, str(HERE / "gateway_upstream.py"), str(up_port), *flags], up_port, log)
    keys_api = start([PY, str(HERE / "gateway_keys_api.py"), str(keys_port)], keys_port, log)
    try:
        for t in [*chosen, one_model]:
            t.proc = start(t.cmd, t.port, t.log or log, t.env)
        time.sleep(1)
        rss = {
            f"{t.name}, {MODELS} models, idle": rss_mib(t.proc.pid)
            for t in chosen
            if t.proc and t.is_gateway
        }
        rss["gateway, 1 model, idle"] = rss_mib(one_model.proc.pid)  # type: ignore[union-attr]
        stop(one_model.proc)
        pids = {t.name: t.proc.pid for t in chosen if t.proc} | {"direct": upstream.pid}
        results = measure([direct, *chosen], pids, conns, args.seconds, args.rounds)
        rss |= {
            f"{t.name}, {MODELS} models, after load": rss_mib(t.proc.pid)
            for t in chosen
            if t.proc and t.is_gateway
        }
        with ProcessPoolExecutor(1) as pool:
            ttfts = {
                t.name: pool.submit(ttft, "127.0.0.1", t.port).result() for t in [direct, *chosen]
            }
    finally:
        for t in chosen:
            stop(t.proc)
        stop(upstream)
        stop(keys_api)
    print(report(results, ttfts, rss, conns))
    if access_log.exists():
        print("\n" + access_volume(access_log))
    print("\nTargets:\n" + "\n".join(f"- `{t.name}`: {t.note}" for t in [direct, *chosen]))
    print(f"\nmachine before: {before}\nmachine after:  {machine_load()}\nprocess logs: {log}")
    if args.json:
        raw = {
            "load": {n: {c: asdict(r) for c, r in by.items()} for n, by in results.items()},
            "ttft_ms": ttfts,
            "rss_mib": rss,
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

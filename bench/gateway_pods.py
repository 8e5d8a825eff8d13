"""Pod choice benchmark (issue 13): the gateway in front of 4 local fake pods vs one URL.

Starts 4 fake pods (``bench/gateway_upstream.py`` on 127.0.0.1: the fast ones one process
on 4 ports, so both gateway rows load the same upstream process; the slow set one process
each) and
gateways (one process each) that route one model:

| target | what |
| --- | --- |
| `direct` | wrk straight at one pod |
| `gateway/service-url` | the backend reached through one URL, as before pod choice (today's path) |
| `gateway/pods` | the same backend with its 4 pods listed (a static EndpointSlice per pod): leastLoaded |

then, with one pod 10x slower than the others (50 ms vs 5 ms per answer):

| target | what |
| --- | --- |
| `slow/leastLoaded` | pods chosen by fewest requests in flight |
| `slow/round-robin` | the same gateway with the choice replaced by round robin (bench only) |

wrk (one thread) posts the 160-byte chat request at ``--connections`` for ``--seconds``,
cells back to back, ``--rounds`` times (medians). The spread over pods and the slow pod's
share come from the gateway's own ``ballast_gateway_pod_requests_total``.

    .venv/bin/python bench/gateway_pods.py --seconds 4 --rounds 3

The gateway processes run ``python bench/gateway_pods.py serve PORT ...`` (below).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_bench import cpu_seconds, free_port, machine_load, start, stop
from gateway_load import LoadResult, wrk

HERE = Path(__file__).resolve().parent
SERVICE = {"namespace": "bench", "name": "bench-pods", "portName": "http"}


def table(url: str) -> dict[str, Any]:
    backend = {"name": "pods", "engine": "vllm", "url": url, "upstreamModel": "bench-upstream",
               "service": SERVICE}  # fmt: skip
    return {"model": "bench", "backends": [backend]}


def slice_of(port: int) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": SERVICE["name"]}
    return {"addressType": "IPv4", "metadata": {"namespace": "bench", "name": f"p{port}",
            "labels": labels}, "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True},
                           "targetRef": {"name": f"pod-{port}"}}]}  # fmt: skip


def serve(port: int, metrics_port: int, pods: list[int], service_url: str, pick: str) -> None:
    """One gateway process: the bench table, the pods as static EndpointSlices."""
    import asyncio

    import ballast.gateway.balancer as balancer
    from ballast.gateway.app import create_app
    from ballast.gateway.config import GatewayConfig
    from ballast.gateway.endpoints import Endpoints
    from ballast.gateway.server import serve as run_gateway
    from ballast.gateway.sources import StaticSource
    from ballast.routing import RoutingTable

    endpoints = None
    if pods:
        endpoints = Endpoints()
        endpoints.set_readable(None, True)
        for p in pods:
            endpoints.apply("ADDED", slice_of(p))
    if pick == "round-robin":
        turn = itertools.count()

        def round_robin(candidates: Any, rng: random.Random) -> Any:
            return candidates[next(turn) % len(candidates)]

        balancer.least_loaded = round_robin  # type: ignore[assignment]
    tables = [RoutingTable.model_validate(table(service_url))]
    config = GatewayConfig(host="127.0.0.1", port=port, metrics_port=metrics_port)
    app = create_app(config, StaticSource(tables), endpoints=endpoints)
    asyncio.run(run_gateway(app, shutdown_timeout=5))


def pod_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("ballast_gateway_pod_requests_total{"):
            pod = line.split('pod="', 1)[1].split('"', 1)[0]
            out[pod] = float(line.rsplit(" ", 1)[1])
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    procs = []
    try:
        fast, slow = [free_port() for _ in range(4)], [free_port() for _ in range(4)]
        log = workdir / "bench.log"
        upstream = [sys.executable, str(HERE / "gateway_upstream.py")]
        # The 4 fast pods are one process listening on 4 ports, so the service-url and pods
        # gateways load the same upstream process and differ only in the gateway.
        procs.append(start([*upstream, ",".join(map(str, fast))], fast[0], log))
        for i, p in enumerate(slow):
            ms = "50" if i == 0 else "5"
            procs.append(start([*upstream, str(p), "--delay-ms", ms], p, log))
        gateways = {
            "gateway/service-url": ([], fast[0], "leastLoaded"),
            "gateway/pods": (fast, fast[0], "leastLoaded"),
            "slow/leastLoaded": (slow, slow[0], "leastLoaded"),
            "slow/round-robin": (slow, slow[0], "round-robin"),
        }
        ports, metrics_ports, pids = {}, {}, {}
        for name, (pods, url_port, pick) in gateways.items():
            port, metrics_port = free_port(), free_port()
            cmd = [sys.executable, __file__, "serve", str(port), "--metrics-port", str(metrics_port),
                   "--pods", ",".join(map(str, pods)),
                   "--service-url", f"http://127.0.0.1:{url_port}/v1", "--pick", pick]  # fmt: skip
            proc = start(cmd, port, log)
            procs.append(proc)
            ports[name], metrics_ports[name], pids[name] = port, metrics_port, proc.pid
        urls = {"direct": f"http://127.0.0.1:{fast[0]}/v1/chat/completions"}
        urls |= {n: f"http://127.0.0.1:{p}/v1/chat/completions" for n, p in ports.items()}
        return measure(args, urls, pids, metrics_ports, slow)
    finally:
        for proc in procs:
            stop(proc)


def measure(
    args: argparse.Namespace,
    urls: dict[str, str],
    pids: dict[str, int],
    ports: dict[str, int],
    slow: list[int],
) -> dict[str, Any]:
    print(f"before: {machine_load()}", file=sys.stderr)
    cells: dict[str, list[LoadResult]] = {n: [] for n in urls}
    for url in urls.values():
        wrk(url, args.connections, 1)  # warm-up
    for _ in range(args.rounds):
        for name, url in urls.items():
            before = cpu_seconds(pids[name]) if name in pids else 0.0
            r = wrk(url, args.connections, args.seconds)
            if name in pids:
                r.cpu_us = (cpu_seconds(pids[name]) - before) / max(1, r.requests) * 1e6
            cells[name].append(r)
            print(f"  {name:22} {r.rps:8.0f} req/s p99 {r.p99_ms:.2f} ms", file=sys.stderr)
    out: dict[str, Any] = {"load_after": machine_load(), "cells": {}}
    for name, rs in cells.items():
        mid = sorted(rs, key=lambda r: r.rps)[len(rs) // 2]
        out["cells"][name] = {"rps": mid.rps, "p50_ms": mid.p50_ms, "p99_ms": mid.p99_ms,
                              "p99_ms_median": statistics.median(r.p99_ms for r in rs),
                              "cpu_us": mid.cpu_us, "errors": sum(r.errors for r in rs)}  # fmt: skip
        if name in ports:
            counts = pod_counts(ports[name])
            out["cells"][name]["pods"] = counts
            if counts:
                out["cells"][name]["max_over_min"] = max(counts.values()) / max(
                    1, min(counts.values())
                )
                out["cells"][name]["slow_share"] = counts.get(f"pod-{slow[0]}", 0) / sum(
                    counts.values()
                )
    return out


def report(result: dict[str, Any]) -> None:
    cells = result["cells"]
    direct = cells["direct"]["rps"]
    print(
        "| target | req/s | % of direct | p50 ms | p99 ms | CPU us/req | max/min pod share | slow pod share | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in cells.items():
        spread = (
            f"{c['max_over_min']:.2f}"
            if "max_over_min" in c and name != "gateway/service-url"
            else ""
        )
        share = f"{c['slow_share']:.1%}" if name.startswith("slow/") else ""
        print(f"| {name} | {c['rps']:,.0f} | {c['rps'] / direct:.0%} | {c['p50_ms']:.2f} | "
              f"{c['p99_ms']:.2f} | {c['cpu_us']:.0f} | {spread} | {share} | {c['errors']} |")  # fmt: skip
    print(f"\nafter: {result['load_after']}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("port", type=int)
        p.add_argument("--metrics-port", type=int, required=True)
        p.add_argument("--pods", default="")
        p.add_argument("--service-url", required=True)
        p.add_argument("--pick", default="leastLoaded")
        a = p.parse_args()
        serve(
            a.port, a.metrics_port, [int(x) for x in a.pods.split(",") if x], a.service_url, a.pick
        )
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ballast-bench-") as tmp:
        result = run(args, Path(tmp))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

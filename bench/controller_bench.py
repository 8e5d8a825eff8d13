"""Controller benchmark: API requests, no-op writes, convergence time and memory, against the emulator.

Runs the real operator (``python -m ballast.cli run``, a subprocess) against the
in-process emulator of the controller tier (``tests/emulator``) with loopback
backends, and measures:

1. requests the operator makes to converge one new 3-backend LLMService (goal <= 10),
   and for one whose engines come up after its first status (one change more);
2. writes of a no-op reconcile: an operator restart over converged services
   (kopf resumes every one; the minute after it), and a metadata-only edit (goal 0 by Ballast);
3. time and requests to converge 100 new LLMServices;
4. the operator's resident memory with no, 100 and 1,000 LLMServices, and after a restart
   over 1,000 (goal <= 150 MB, and no higher after a restart).

Usage: ``.venv/bin/python bench/controller_bench.py [--services 100] [--rss-services 1000]
[--json FILE]``. Requests are counted from the emulator's request log (User-Agent
``ballast/`` or ``kopf/``; long-lived watch streams are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.controller.conftest import Cluster, emulated  # noqa: E402
from tests.controller.harness import by_operator  # noqa: E402
from tests.emulator.poll import eventually  # noqa: E402

PERIOD = {"periodSeconds": 5, "timeoutSeconds": 2}
#: Extra BALLAST_* settings for the operator (``--env NAME=VALUE``).
ENV: dict[str, str] = {}


def three_backends(cluster: Cluster, name: str) -> dict[str, Any]:
    """The shape of manifests/examples/three-tier-autoscaling.yaml: autoscaled vLLM, llama.cpp, external."""
    backends = [
        {
            "name": "gpu",
            "engine": "vllm",
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "health": PERIOD,
            "scaling": {"minReplicas": 2, "maxReplicas": 8},
        },
        {
            "name": "cpu",
            "engine": "llamacpp",
            "model": "x/y-GGUF:Q4_K_M",
            "priority": 1,
            "health": PERIOD,
        },
        {
            "name": "cloud",
            "engine": "openai",
            "model": "gpt-4o-mini",
            "priority": 2,
            "health": PERIOD,
            "url": cluster.fleet.url("ai", name, "cloud"),
            "apiKeySecretRef": {"name": "llm-keys", "key": "openai"},
        },
    ]
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": "ai"},
        "spec": {"backends": backends, "fallback": {"healthyAfter": 1}},
    }


def operator_requests(cluster: Cluster, since: int) -> list[Any]:
    return [
        r
        for r in cluster.api.requests[since:]
        if by_operator(r) and r.params.get("watch") != "true"
    ]


def summary(requests: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in requests:
        what = f"{r.method.value} {r.resource.plural if r.resource else r.url.path}"
        what += "/status" if r.subresource == "status" else ""
        out[what] = out.get(what, 0) + 1
    return dict(sorted(out.items()))


async def converge(
    cluster: Cluster, names: list[str], quiet: float = 3.0, limit: float = 600
) -> float:
    """Seconds until every service is Ready; then waits for ``quiet`` seconds without operator writes."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = set(names)
    while pending:
        pending = {n for n in pending if cluster.status(n).get("phase") != "Ready"}
        if loop.time() - started > limit:
            raise TimeoutError(f"{len(pending)} services not Ready after {limit}s")
        await asyncio.sleep(0.2)
    ready_after = loop.time() - started
    last, since = len(cluster.operator_writes()), loop.time()
    while loop.time() - since < quiet:
        await asyncio.sleep(0.2)
        if (now := len(cluster.operator_writes())) != last:
            last, since = now, loop.time()
    return ready_after


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def idle(cluster: Cluster, quiet: float = 1.5) -> None:
    """Wait until the operator has made no (non-watch) request for ``quiet`` seconds."""
    loop = asyncio.get_running_loop()
    last, since = len(operator_requests(cluster, 0)), loop.time()
    while loop.time() - since < quiet:
        await asyncio.sleep(0.2)
        if (now := len(operator_requests(cluster, 0))) != last:
            last, since = now, loop.time()


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def one_service(workdir: Path) -> dict[str, Any]:
    async with emulated(workdir, env=ENV) as cluster:
        await idle(cluster)  # kopf's start-up discovery and listings are not part of it
        start = len(cluster.api.requests)
        cluster.create(three_backends(cluster, "assistant"))
        seconds = await converge(cluster, ["assistant"])
        requests = operator_requests(cluster, start)
        writes = [r for r in requests if r.method.value != "GET"]
        result: dict[str, Any] = {
            "ready_seconds": round(seconds, 2),
            "requests": len(requests),
            "writes": len(writes),
            "by_kind": summary(requests),
            "objects": len(cluster.children("assistant")),
        }
        # A second service, its engines loading (no ready pod) until its first status is
        # written, then ready: the first status, and what one more change costs (its
        # external backend's Secret is the same, read already for the first service).
        cluster.deployments.ready_by_default = False
        start = len(cluster.api.requests)
        cluster.create(three_backends(cluster, "loading"))
        await eventually(lambda: cluster.status("loading").get("phase"), what="a first status")
        await idle(cluster)
        first = operator_requests(cluster, start)
        first_phase = cluster.status("loading").get("phase")
        for backend in ("gpu", "cpu"):
            cluster.deployments.set_ready("ai", f"loading-{backend}", True)
        await converge(cluster, ["loading"])
        result["staged"] = {
            "to_first_status": len(first),
            "to_first_status_by_kind": summary(first),
            "first_phase": first_phase,
            "to_ready": len(operator_requests(cluster, start)),
            "after_first_by_kind": summary(operator_requests(cluster, start)[len(first) :]),
        }
        start = len(cluster.api.requests)
        path = "/apis/ballast.dev/v1alpha1/namespaces/ai/llmservices/assistant"
        await cluster.user("PATCH", path, {"metadata": {"labels": {"team": "x"}}}, merge=True)
        await asyncio.sleep(3)
        label_writes = [r for r in cluster.api.writes(start) if by_operator(r)]
        result["metadata_only_update_writes"] = summary(label_writes)
        return result


async def many(workdir: Path, count: int, restart_window: float) -> dict[str, Any]:
    """Converge ``count`` services; then restart the operator and watch ``restart_window`` s."""
    async with emulated(workdir, env=ENV) as cluster:
        names = [f"svc-{i:04d}" for i in range(count)]
        await idle(cluster)
        operator = cluster.operator
        if operator is None or operator.process is None:
            raise RuntimeError("the operator is not running")
        rss_empty, _ = rss_mb(operator.process.pid)
        cpu = cpu_seconds(operator.process.pid)
        start = len(cluster.api.requests)
        wall = time.monotonic()
        for name in names:
            cluster.create(three_backends(cluster, name))
        seconds = await converge(cluster, names, limit=1800)
        requests = operator_requests(cluster, start)
        cpu = cpu_seconds(operator.process.pid) - cpu
        rss, peak = rss_mb(operator.process.pid)
        result: dict[str, Any] = {
            "services": count,
            "ready_seconds": round(seconds, 1),
            "wall_seconds": round(time.monotonic() - wall, 1),
            "requests": len(requests),
            "requests_per_service": round(len(requests) / count, 1),
            "rss_mb_no_services": round(rss_empty, 1),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "operator_cpu_seconds": round(cpu, 1),
            "objects": sum(1 for k in cluster.store.kinds.values() for _ in cluster.store.items(k)),
        }
        await operator.stop()
        start = len(cluster.api.requests)
        await operator.start()
        await asyncio.sleep(restart_window)
        await idle(cluster)
        if operator.process is None:
            raise RuntimeError("the operator is not running")
        after, after_peak = rss_mb(operator.process.pid)
        result["restart_window_seconds"] = restart_window
        result["restart_writes"] = len([r for r in cluster.api.writes(start) if by_operator(r)])
        result["restart_requests"] = summary(operator_requests(cluster, start))
        result["rss_mb_after_restart"] = round(after, 1)
        result["peak_rss_mb_after_restart"] = round(after_peak, 1)
        return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("one", "many", "rss"):
            (root / sub).mkdir()
        results["one_new_3_backend_service"] = await one_service(root / "one")
        print(json.dumps(results, indent=2), flush=True)
        if args.services:
            results[f"{args.services}_services"] = await many(root / "many", args.services, 60)
            print(json.dumps(results, indent=2), flush=True)
        if args.rss_services:
            results[f"{args.rss_services}_services"] = await many(
                root / "rss", args.rss_services, 10
            )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--rss-services", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="an operator setting, e.g. BALLAST_RECONCILE_CONCURRENCY=8",
    )  # fmt: skip
    options = parser.parse_args()
    ENV.update(item.split("=", 1) for item in options.env)
    out = asyncio.run(main(options))
    print(json.dumps(out, indent=2))
    if options.json:
        options.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")

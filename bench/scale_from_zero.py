"""Scale-from-zero benchmark on the real control plane: what Ballast adds to a cold start.

The stack of ``tests/cluster/test_scale_from_zero.py``: kube-apiserver, etcd and the
controller-manager (ReplicaSet, EndpointSlice, HPA controllers), the chart's operator as
its ServiceAccount, ``ballast gateway`` as a local process found by the operator through
an EndpointSlice of the chart's gateway-internal Service, and the fake kubelet serving the
operator's pods with a readiness delay standing in for the model load. Clients are the
official ``openai`` SDK.

1. **Overhead of a cold start**: one request to a backend at 0 (a fresh LLMService each
   round, readiness delay ``--load`` s); its answer time minus the model's load, broken
   down from the audit log (server times), the kubelet's marks and the engine's receive
   time: request -> the operator's ``replicas: 1`` patch (demand read about once a
   second) -> pod bound (ReplicaSet controller + the kubelet's 0.2 s poll) -> Running ->
   Ready (the load) -> the EndpointSlice controller's slice write -> the engine receives
   the held request (the gateway: watch event, release, connect) -> the client has the
   answer.
2. **Dispatch delay of a held burst**: 100 concurrent requests to a backend at 0; per
   request, from the pod's Ready status write (audit) to the engine receiving it, split
   into the EndpointSlice controller's part (Ready write -> slice write) and the gateway's
   (slice write -> engine receive); p50/p99 over all rounds.

Usage: ``.venv/bin/python bench/scale_from_zero.py [--rounds 5] [--bursts 3] [--load 5]
[--json FILE]`` (as root: addresses on ``lo``; needs ``make cluster-bin``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster._operator import Fleet  # noqa: E402
from tests.cluster._stack import (  # noqa: E402
    OPERATOR_USER,
    RELEASE,
    LocalGateway,
    install_chart,
    operator_process,
)
from tests.cluster.binaries import Binaries  # noqa: E402
from tests.cluster.test_scale_from_zero import (  # noqa: E402
    ReplicasAuditPlane,
    ask,
    audit_writes,
    burst,
    client,
    create,
    delete,
    engines_of,
    ready_write,
    wait_asleep,
    wait_known,
    zero_backend,
)
from tests.cluster.tools import tools_dir  # noqa: E402

SLICE_CONTROLLER = "system:serviceaccount:kube-system:endpointslice-controller"
#: wall clock = monotonic + OFFSET (the kubelet, engines and clients share this process)
OFFSET = time.time() - time.monotonic()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def pod_story(
    plane: ReplicasAuditPlane, kubelet: Any, ns: str, dep: str, mark: int
) -> dict[str, Any]:
    """Server times of the wake-up of `dep`'s one pod."""
    (key, marks), *_ = [(k, m) for k, m in kubelet.marks.items() if k.startswith(f"{ns}/{dep}-")]
    pod = key.split("/", 1)[1]
    writes = audit_writes(plane, ns, mark)
    patch = next(
        w for w in writes
        if w.user == OPERATOR_USER and w.resource == "deployments" and w.name == dep
        and ((w.body or {}).get("spec") or {}).get("replicas") == 1
    )  # fmt: skip
    ready = ready_write(writes, pod, marks.ready)
    service = dep
    slices = [
        w for w in writes
        if w.user == SLICE_CONTROLLER and w.resource == "endpointslices"
        and w.name.startswith(f"{service}-") and w.received >= ready.completed - 0.001
    ]  # fmt: skip
    return {
        "pod": pod,
        "patch": patch.completed,
        "bound": marks.bound[1],
        "running": marks.running[1],
        "ready": ready.completed,
        "slice": slices[0].completed if slices else float("nan"),
    }


def overhead_round(plane: ReplicasAuditPlane, kubelet: Any, gw: LocalGateway, ns: str,
                   load: float) -> dict[str, Any]:  # fmt: skip
    name = f"ovh-{uuid.uuid4().hex[:5]}"
    dep = f"{name}-gpu"
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=load)
    try:
        create(plane.api, ns, name, zero_backend(idle=600, max_replicas=1))
        wait_asleep(plane.api, ns, name)
        wait_known(gw, name)
        mark = plane.audit.mark()
        out = ask(client(gw), name, "first")
        if out.status != 200 or not out.cold:
            raise RuntimeError(f"the cold start failed: {out}")
        (engine,) = engines_of(kubelet, ns, dep).values()
        time.sleep(1.5)  # the last writes reach the audit log
        s = pod_story(plane, kubelet, ns, dep, mark)
        sent, done, recv = out.sent + OFFSET, out.done + OFFSET, engine.received[0] + OFFSET
        total = done - sent
        return {
            "total_s": round(total, 3),
            "load_s": round(s["ready"] - s["running"], 3),
            "overhead_s": round(total - load, 3),
            "overhead_beyond_actual_load_s": round(total - (s["ready"] - s["running"]), 3),
            "request_to_replicas_patch_ms": ms(s["patch"] - sent),
            "patch_to_bound_ms": ms(s["bound"] - s["patch"]),
            "bound_to_running_ms": ms(s["running"] - s["bound"]),
            "ready_to_slice_ms": ms(s["slice"] - s["ready"]),
            "slice_to_engine_ms": ms(recv - s["slice"]),
            "engine_to_answer_ms": ms(done - recv),
        }
    finally:
        delete(plane.api, ns, name)
        kubelet.unserve(rule)


def burst_round(plane: ReplicasAuditPlane, kubelet: Any, gw: LocalGateway, ns: str,
                load: float, n: int) -> dict[str, Any]:  # fmt: skip
    name = f"bst-{uuid.uuid4().hex[:5]}"
    dep = f"{name}-gpu"
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=load)
    try:
        create(plane.api, ns, name, zero_backend(idle=600, max_replicas=1))
        wait_asleep(plane.api, ns, name)
        wait_known(gw, name)
        mark = plane.audit.mark()
        outcomes = burst(client(gw), name, n, "burst")
        failed = [o for o in outcomes if o.status != 200]
        (engine,) = engines_of(kubelet, ns, dep).values()
        time.sleep(1.5)
        s = pod_story(plane, kubelet, ns, dep, mark)
        received = [t + OFFSET for t in engine.received]
        return {
            "failed": len(failed),
            "cold_headers": sum(o.cold for o in outcomes),
            "ready_to_slice_ms": ms(s["slice"] - s["ready"]),
            "ready_to_engine_ms": [ms(t - s["ready"]) for t in received],
            "slice_to_engine_ms": [ms(t - s["slice"]) for t in received],
        }
    finally:
        delete(plane.api, ns, name)
        kubelet.unserve(rule)


def summary(rounds: list[dict[str, Any]], bursts: list[dict[str, Any]]) -> dict[str, Any]:
    med = {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
    worst = {k: max(r[k] for r in rounds) for k in rounds[0]}
    ready = [x for b in bursts for x in b["ready_to_engine_ms"]]
    gateway = [x for b in bursts for x in b["slice_to_engine_ms"]]
    return {
        "overhead_median": med,
        "overhead_max": worst,
        "burst": {
            "requests": len(ready),
            "failed": sum(b["failed"] for b in bursts),
            "cold_headers": sum(b["cold_headers"] for b in bursts),
            "ready_to_engine_p50_ms": pct(ready, 50),
            "ready_to_engine_p99_ms": pct(ready, 99),
            "ready_to_engine_max_ms": max(ready),
            "endpointslice_controller_ms": [b["ready_to_slice_ms"] for b in bursts],
            "gateway_slice_to_engine_p50_ms": pct(gateway, 50),
            "gateway_slice_to_engine_p99_ms": pct(gateway, 99),
            "gateway_first_to_last_ms": [
                round(max(b["slice_to_engine_ms"]) - min(b["slice_to_engine_ms"]), 1)
                for b in bursts
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="cold starts of one request")
    parser.add_argument("--bursts", type=int, default=3, help="cold starts of a 100-burst")
    parser.add_argument("--load", type=float, default=5.0, help="readiness delay (model load) s")
    parser.add_argument("--burst-size", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    binaries = Binaries.from_cache()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stz-bench-")))
        plane = stack.enter_context(ReplicasAuditPlane(binaries))
        kubelet = stack.enter_context(plane.fake_kubelet())
        (work / "helm").mkdir()
        (work / "operator").mkdir()
        release = install_chart(plane, tools_dir(), work / "helm")  # type: ignore[arg-type]
        fleet = stack.enter_context(Fleet())
        op = operator_process(plane, release, fleet, work / "operator")  # type: ignore[arg-type]
        op.start()
        stack.callback(op.stop)
        ns = f"bench-{uuid.uuid4().hex[:5]}"
        plane.api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": ns}})  # fmt: skip
        gw = stack.enter_context(LocalGateway(plane, RELEASE, work, [ns],
                                              extra=("--access-log", "errors")))  # fmt: skip
        rounds = []
        for i in range(args.rounds):
            rounds.append(overhead_round(plane, kubelet, gw, ns, args.load))
            print(f"cold start {i + 1}: {json.dumps(rounds[-1])}", flush=True)
        bursts = []
        for i in range(args.bursts):
            bursts.append(burst_round(plane, kubelet, gw, ns, args.load, args.burst_size))
            b = bursts[-1]
            print(f"burst {i + 1}: failed={b['failed']} slice={b['ready_to_slice_ms']} ms "
                  f"ready->engine p50={pct(b['ready_to_engine_ms'], 50)} "
                  f"p99={pct(b['ready_to_engine_ms'], 99)} ms", flush=True)  # fmt: skip
    result = {"load_s": args.load, "summary": summary(rounds, bursts), "rounds": rounds}
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps({**result, "bursts": bursts}, indent=2))


if __name__ == "__main__":
    main()

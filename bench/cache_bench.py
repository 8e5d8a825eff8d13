"""Model cache benchmark: what a cached backend costs the API server, and what it fetches.

1. **Operator requests from nothing to ready**, on the real control plane of the
   cluster tier (kube-apiserver + the Job controller, the fake kubelet finishing the
   loader's pod at once): the operator's requests, counted from the audit log (reads
   and writes; long-lived watches are not counted), from creating one LLMService with a
   cached, autoscaled vLLM backend until it is Ready with its Deployment at the HPA's
   minimum, beside the same backend without a cache.
2. **Bytes fetched from the hub** by the loader (``ballast fetch``, a real process)
   from the fake Hugging Face hub of ``tests/fetch``: the first fill, and a second run
   (what a second replica, a restart or a second service costs: the marker is found).
   Serving replicas never reach the hub: they mount the filled directory.

Usage: ``.venv/bin/python bench/cache_bench.py [--json FILE]`` (needs the cluster
binaries: ``make cluster-bin``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster._llmservices import API_VERSION, llms_path  # noqa: E402
from tests.cluster._operator import AuditedPlane, Fleet  # noqa: E402
from tests.cluster._stack import OPERATOR_USER, install_chart, operator_process  # noqa: E402
from tests.cluster.binaries import Binaries  # noqa: E402
from tests.cluster.kubeapi import ApiError  # noqa: E402
from tests.cluster.poll import wait_for  # noqa: E402
from tests.cluster.tools import tools_dir  # noqa: E402

JSON = dict[str, Any]
WATCH = "watch"


def backend(cache: bool) -> JSON:
    out: JSON = {
        "name": "gpu",
        "engine": "vllm",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "scaling": {"minReplicas": 2, "maxReplicas": 4},
        "health": {"periodSeconds": 1},
    }
    if cache:
        out["cache"] = {"size": "20Gi", "revision": "a09a35458c702b33eeacc393d103063234e8bc28"}
    return out


def ready(plane: AuditedPlane, ns: str, name: str) -> bool:
    status = plane.api.get(llms_path(ns, name)).get("status") or {}
    try:
        dep = plane.api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}-gpu")
    except ApiError:
        return False
    return status.get("phase") == "Ready" and dep["spec"].get("replicas") == 2


def requests_to_ready(plane: AuditedPlane, ns: str, name: str, cache: bool) -> JSON:
    mark = plane.audit.mark()
    started = time.monotonic()
    body = {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backends": [backend(cache)]},
    }
    plane.api.post(llms_path(ns), body)
    wait_for(lambda: ready(plane, ns, name), timeout=120, what=f"{name} Ready")
    seconds = time.monotonic() - started
    time.sleep(3)  # let the last status write land in the audit log
    events = [
        e
        for e in plane.audit.events(mark)
        if e.user == OPERATOR_USER and e.verb != WATCH and e.namespace == ns
    ]
    by = Counter(
        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''}" for e in events
    )
    writes = sum(n for k, n in by.items() if not k.startswith(("get ", "list ")))
    return {"requests": len(events), "writes": writes, "seconds": round(seconds, 1), "by": dict(by)}


def operator_requests() -> JSON:
    binaries = Binaries.from_cache()
    with (
        tempfile.TemporaryDirectory() as tmp,
        AuditedPlane(binaries, audit_users=[OPERATOR_USER]) as plane,
    ):
        kubelet = plane.fake_kubelet()
        kubelet.job_outcome = lambda pod: (0, '{"revision": "a09a3545", "bytes": 15237458304}')
        for sub in ("helm", "operator"):
            (Path(tmp) / sub).mkdir()
        release = install_chart(plane, tools_dir(), Path(tmp) / "helm")
        with kubelet, Fleet() as fleet:
            op = operator_process(plane, release, fleet, Path(tmp) / "operator")
            op.start()
            try:
                out = {}
                for label, cache in (("uncached", False), ("cached", True)):
                    ns = f"bench-{label}"
                    plane.api.post(
                        "/api/v1/namespaces",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                    )
                    out[label] = requests_to_ready(plane, ns, "chat", cache)
                return out
            finally:
                op.stop()


def hub_bytes(size_mb: int = 64) -> JSON:
    """Bytes the loader fetches from the fake hub: a first fill, then a second run."""
    import os
    import subprocess

    from tests.fetch.fakehub import FakeHub, Repo, Served

    files = {
        "config.json": b'{"model_type": "qwen2"}',
        "tokenizer.json": b"{}" * 1024,
        "model.safetensors": os.urandom(size_mb * 1024 * 1024),
        "pytorch_model.bin": b"duplicate weights the loader skips" * 1024,
    }
    hub = FakeHub(repos={"org/model": Repo.single(files)})
    served = Served(hub).start()
    out: JSON = {"repo_bytes": sum(len(v) for v in files.values())}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HTTP"))},
                "HF_ENDPOINT": hub.url,
                "HF_HOME": f"{tmp}/hf-home",
                "NO_PROXY": "127.0.0.1",
            }
            command = [sys.executable, "-m", "ballast.cli", "fetch", "hf", "--repo", "org/model"]
            command += ["--dest", f"{tmp}/cache/key", "--termination-log", f"{tmp}/log"]
            for label in ("first fill", "second run (another replica, restart or service)"):
                hub.reset_counts()
                started = time.monotonic()
                subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
                out[label] = {
                    "bytes": hub.total_body_bytes(),
                    "requests": len(hub.seen),
                    "seconds": round(time.monotonic() - started, 2),
                }
    finally:
        served.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {"operator": operator_requests(), "hub": hub_bytes()}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()

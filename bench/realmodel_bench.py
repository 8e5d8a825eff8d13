"""The gateway's share next to a real model's: time to first token and tokens per second of
Gemma 3 270M on llama-server, through `ballast gateway` vs direct to the same process.

Starts the stack of the realmodel tier (tests/realmodel/stack.py: control plane, process
kubelet, operator, gateway, an LLMService with two llama.cpp tiers), then streams
`/v1/completions` (temperature 0, `ignore_eos`, a fixed number of tokens) to the primary
tier's llama-server directly and through the gateway (which routes to that same process),
at 1 and at 4 concurrent streams. Cells alternate (direct, gateway, direct, ...) for
`--rounds` rounds so drift on a shared machine hits both; the table has medians.

* TTFT: request sent -> first SSE event carrying text, per stream.
* tok/s per stream: (tokens - 1) / (last token - first token), the decode rate a client sees.
* aggregate tok/s: every stream's tokens / wall time of the cell.

    .venv/bin/python bench/realmodel_bench.py [--rounds 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.realmodel.stack import RealStack, llmservice  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea,"


async def one_stream(
    session: aiohttp.ClientSession, url: str, model: str, tokens: int
) -> tuple[float, float, int]:
    """(ttft seconds, decode tokens/s, tokens) of one streamed completion."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "seed": 1, "stream": True, "ignore_eos": True, "cache_prompt": False}  # fmt: skip
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    async with session.post(url + "/completions", json=body) as rsp:
        rsp.raise_for_status()
        async for raw in rsp.content:
            line = raw.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            choices = event.get("choices") or []
            if choices and choices[0].get("text"):
                now = time.perf_counter()
                count += 1
                if not first:
                    first = now
                last = now
    rate = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return first - start, rate, count


async def cell(url: str, model: str, streams: int, tokens: int, api_key: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {api_key}"}  # the gateway's client key
    async with aiohttp.ClientSession(headers=headers) as session:
        began = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(session, url, model, tokens) for _ in range(streams))
        )
        wall = time.perf_counter() - began
    return {
        "ttft": statistics.median(r[0] for r in results),
        "rate": statistics.median(r[1] for r in results),
        "aggregate": sum(r[2] for r in results) / wall,
        "tokens": min(r[2] for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama-server --threads (1: a core taken by a neighbour halves the rate instead "
        "of stalling llama.cpp's spinning thread pool)",
    )
    args = parser.parse_args()
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    with RealStack("bench", log=log) as stack:
        stack.apply(llmservice("gemma", "bench", args=("--threads", str(args.threads))))
        stack.wait_ready("gemma", timeout=300)
        engine = stack.engines()["primary"]
        targets = {"direct": f"http://{engine.ip}:8080/v1", "gateway": stack.base_url}
        model = "gemma-3-270m"
        # Warm both paths (first requests pay for connection set-up and the prompt cache).
        for url in targets.values():
            asyncio.run(cell(url, model, 1, 8, stack.api_key))
        cells: dict[tuple[str, int], list[dict[str, float]]] = {}
        for streams in (1, 4):
            for rnd in range(args.rounds):
                for name, url in targets.items():
                    out = asyncio.run(cell(url, model, streams, args.tokens, stack.api_key))
                    out["load"] = os.getloadavg()[0]
                    assert out["tokens"] == args.tokens, out
                    cells.setdefault((name, streams), []).append(out)
                    log(f"round {rnd + 1} {name} x{streams}: {out}")

    def med(name: str, streams: int, key: str) -> float:
        return statistics.median(c[key] for c in cells[(name, streams)])

    loads = [c["load"] for cs in cells.values() for c in cs]
    print(f"\n{args.tokens} tokens per stream, --threads {args.threads}, medians of "
          f"{args.rounds} rounds; 1-min load average {min(loads):.1f}-{max(loads):.1f}\n")  # fmt: skip
    print("| streams | path | TTFT ms | tok/s per stream | aggregate tok/s |")
    print("| --- | --- | --- | --- | --- |")
    for streams in (1, 4):
        for name in targets:
            print(f"| {streams} | {name} | {med(name, streams, 'ttft') * 1000:.1f} | "
                  f"{med(name, streams, 'rate'):.1f} | {med(name, streams, 'aggregate'):.1f} |")  # fmt: skip
    print("\n| streams | gateway - direct TTFT ms | gateway / direct tok/s per stream |")
    print("| --- | --- | --- |")
    for streams in (1, 4):
        dt = (med("gateway", streams, "ttft") - med("direct", streams, "ttft")) * 1000
        ratio = med("gateway", streams, "rate") / med("direct", streams, "rate")
        print(f"| {streams} | {dt:+.1f} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

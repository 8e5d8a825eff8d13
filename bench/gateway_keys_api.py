"""A stand-in Kubernetes API for the gateway benchmark's ``--auth keys`` target.

Serves ``GET /api/v1/namespaces/bench/secrets`` (a list of ``KEYS`` labelled key Secrets,
one of them ``BENCH_KEY``) and its watch (held open, no events), which is all a gateway with
``--routes FILE --auth keys --auth-namespace bench`` asks of the API. ``kubeconfig()`` writes
a kubeconfig pointing at it.

    python bench/gateway_keys_api.py PORT
"""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

from aiohttp import web

BENCH_KEY = "sk-bench-0123456789abcdef0123456789"
KEYS = 100


def _secret(i: int) -> dict[str, object]:
    key = BENCH_KEY if i == 0 else f"sk-other-{i:04d}-0123456789abcdef"
    return {
        "metadata": {"namespace": "bench", "name": f"key-{i}", "resourceVersion": "1",
                     "labels": {"ballast.dev/gateway-key": "true"}},
        "data": {"key": base64.b64encode(key.encode()).decode()},
    }  # fmt: skip


async def _secrets(request: web.Request) -> web.StreamResponse:
    if request.query.get("watch"):
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await asyncio.sleep(3600)
        return resp
    items = [_secret(i) for i in range(KEYS)]
    return web.json_response({"items": items, "metadata": {"resourceVersion": "1"}})


def kubeconfig(port: int, path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
        f"clusters: [{{name: bench, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: bench, user: {token: bench}}]\n"
        "contexts: [{name: bench, context: {cluster: bench, user: bench}}]\n"
    )
    return path


def main() -> None:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/bench/secrets", _secrets)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()

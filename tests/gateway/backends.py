"""A scriptable OpenAI-compatible backend for tests, served by aiohttp on 127.0.0.1.

It answers chat completions, completions and embeddings (streaming chat too), and can be
told to delay, fail with a status, drop the connection before answering, break a stream
after N chunks, or stop listening altogether (``kill``). It records what it received so
tests can check the rewritten model, forwarded fields and credentials.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Behaviour:
    mode: str = "answer"  # answer | status | drop | break
    status: int = 200
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: int = 3
    break_after: int = 1
    #: Extra headers of a ``status`` answer (Retry-After, rate-limit headers).
    headers: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: What every fake answer says its prompt cost (a chat answer: 3 completion tokens; a
#: stream with ``stream_options.include_usage``: one completion token per chunk).
PROMPT_TOKENS = 11


def _chat(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3, "total_tokens": 14},
    }  # fmt: skip


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
    }  # fmt: skip


def _embedding(model: str, text: str) -> dict[str, Any]:
    return {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }  # fmt: skip


def _chunk(model: str, text: str) -> bytes:
    data = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


BUILDERS = {"chat/completions": _chat, "completions": _completion, "embeddings": _embedding}


@dataclass
class FakeBackend:
    """One upstream engine; ``behaviour`` can be changed while requests flow."""

    name: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def behave(self, mode: str = "answer", **params: Any) -> None:
        self.behaviour = Behaviour(mode=mode, **params)

    async def start(self) -> FakeBackend:
        app = web.Application()
        app.router.add_post("/v1/{endpoint:.+}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        return self

    def kill(self) -> None:
        """Stop listening and reset every open connection, like a crashed process."""
        if self._runner is None or self._runner.server is None:
            return
        for site in list(self._runner.sites):
            server = getattr(site, "_server", None)
            if server is not None:
                server.close()
        for handler in list(self._runner.server.connections):
            if handler.transport is not None:
                handler.transport.abort()

    async def stop(self) -> None:
        if self._runner is not None:
            self.kill()
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(Seen(request.path, dict(request.headers), body))
        b = self.behaviour
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.mode == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        if b.mode == "status":
            error = {
                "error": {
                    "message": f"{self.name} says {b.status}",
                    "type": "x",
                    "param": None,
                    "code": None,
                }
            }
            return web.json_response(error, status=b.status, headers=b.headers)
        endpoint = request.match_info["endpoint"]
        if body.get("stream"):
            return await self._stream(request, body, b)
        return web.json_response(BUILDERS[endpoint](body["model"], f"hello from {self.name}"))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], b: Behaviour
    ) -> web.StreamResponse:
        model = body["model"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(b.chunks):
            if b.mode == "break" and i == b.break_after:
                if request.transport is not None:
                    request.transport.abort()
                return resp
            await resp.write(_chunk(model, f"{self.name}-{i} "))
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": b.chunks,
                     "total_tokens": PROMPT_TOKENS + b.chunks}  # fmt: skip
            last = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                    "model": model, "choices": [], "usage": usage}  # fmt: skip
            await resp.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

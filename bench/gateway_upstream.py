"""A fast fake OpenAI upstream for the gateway benchmark (not a test fixture).

Fixed answers: a chat completion for any POST, or, when the body asks for
``"stream": true``, a chunked server-sent-event stream whose first event is written at
once and the rest 1 ms later. Two implementations: a minimal aiohttp app (default; the
upstream the issue's goals were calibrated with: a bare aiohttp pass-through in front of
it reaches about 27% of its throughput) and a raw asyncio protocol (``--raw``, with
``--uvloop``), several times faster, to show what the gateway costs in absolute terms.

``--delay-ms N`` (aiohttp only) waits N ms before each answer: a pod with work to do, and
PORT may be a comma-separated list (aiohttp only): one process listening on each, like
several pods on one machine; both for the pod-choice benchmark (``bench/gateway_pods.py``).

    python bench/gateway_upstream.py PORT[,PORT...] [--raw] [--uvloop] [--delay-ms N]
"""

from __future__ import annotations

import asyncio
import json
import sys

CHAT = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-upstream",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "The quick brown fox jumps over the lazy dog.",
                },
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19},
    }
).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(CHAT)
    + CHAT
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _payload(i: int) -> bytes:
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench-upstream",
        "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _event(i: int) -> bytes:
    payload = _payload(i)
    return b"%x\r\n%s\r\n" % (len(payload), payload)


FIRST = SSE_HEAD + _event(0)
REST = b"".join(_event(i) for i in range(1, 8)) + (
    b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n")
)


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4 : total])
            del self.buf[:total]
            self._answer(body)

    def _answer(self, body: bytes) -> None:
        assert self.transport is not None
        if b'"stream":true' in body.replace(b" ", b""):
            self.transport.write(FIRST)
            asyncio.get_running_loop().call_later(0.001, self._rest)
        else:
            self.transport.write(ANSWER)

    def _rest(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(REST)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        Upstream, "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def serve_aiohttp(ports: list[int], delay: float = 0.0) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if delay:
            await asyncio.sleep(delay)
        if b'"stream":true' not in body.replace(b" ", b""):
            return web.Response(body=CHAT, content_type="application/json")
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        await out.write(_payload(0))
        await asyncio.sleep(0.001)
        for i in range(1, 8):
            await out.write(_payload(i))
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post("/{path:.*}", answer)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    if "--raw" in sys.argv:
        asyncio.run(serve(int(sys.argv[1])))
    else:
        ms = float(sys.argv[sys.argv.index("--delay-ms") + 1]) if "--delay-ms" in sys.argv else 0
        serve_aiohttp([int(p) for p in sys.argv[1].split(",")], ms / 1000)

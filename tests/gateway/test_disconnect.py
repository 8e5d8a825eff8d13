"""A client that leaves is noticed: the upstream request is closed at once, nothing retried.

The upstream here is a raw TCP server that takes the request and then says nothing more
(or, for a stream, one event and then nothing), as an engine deep in a long generation
does; it records when the gateway closes the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.gateway.conftest import BackendFactory, GatewayFactory
from tests.gateway.harness import backend_row, eventually, table

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class QuietUpstream:
    """Reads one request, optionally starts a stream, then stays silent until closed."""

    stream_first: bool
    requests: int = 0
    closed: int = 0
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def start(self) -> QuietUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )  # fmt: skip
        await reader.readexactly(length)
        self.requests += 1
        self.got_request.set()
        if self.stream_first:
            event = b'data: {"choices": [{"delta": {"content": "thinking"}}]}\n\n'
            writer.write(SSE_HEAD + f"{len(event):x}\r\n".encode() + event + b"\r\n")
        while await reader.read(1024):  # silent until the gateway closes the connection
            pass
        self.closed += 1
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_client_leaving_closes_the_upstream_request_at_once(
    backend: BackendFactory, gateway: GatewayFactory, stream: bool
) -> None:
    quiet = await QuietUpstream(stream_first=stream).start()
    cloud = await backend("cloud")
    rows = [backend_row("primary", quiet.url), backend_row("cloud", cloud.url, priority=1)]
    gw = await gateway([table("chat", rows, perTryTimeoutSeconds=60)])
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    try:
        async with aiohttp.ClientSession() as http:
            if stream:
                response = await http.post(gw.base_url + "/chat/completions", json=body)
                assert response.status == 200
                assert b"thinking" in await response.content.readuntil(b"\n\n")
                response.close()  # the client goes away in the middle of the stream
            else:
                pending = asyncio.create_task(
                    http.post(gw.base_url + "/chat/completions", json=body)
                )
                await asyncio.wait_for(quiet.got_request.wait(), 10)
                assert gw.state.metrics.in_flight == 1
                pending.cancel()  # the client goes away while the answer is being generated
                with pytest.raises(asyncio.CancelledError):
                    await pending
        await eventually(lambda: quiet.closed == 1, within=1.0)
        await eventually(lambda: gw.state.metrics.in_flight == 0, within=1.0)
        # the backend the client was waiting on, whether its answer had started or not
        outcome = {"model": "chat", "outcome": "client_closed", "backend": "primary"}
        await eventually(lambda: gw.sample("ballast_gateway_requests_total", **outcome) == 1)
        assert quiet.requests == 1
        assert not cloud.seen
        assert gw.state.board.get("chat", "primary").state == "closed"  # not the backend's fault
        text = json.dumps(gw.state.metrics.render().decode())
        assert "ballast_gateway_in_flight 0.0" in text
    finally:
        await quiet.stop()

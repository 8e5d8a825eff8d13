"""A small fake engine the fake kubelet runs for a pod, on the pod's own address.

The API server refuses loopback addresses (127.0.0.0/8) in EndpointSlices, so a served pod
gets a private address from 10.245.0.0/16 that the kubelet adds to the `lo` interface
(`ip addr add 10.245.x.y/32 dev lo`, root only) and removes when the pod goes. Connecting
to it stays on this machine. The engine answers the OpenAI paths with a fixed completion
(HTTP/1.1 keep-alive, one thread per connection), after `delay` seconds, and records which
prompts it served, how many requests, and the most it had in flight at once. `kill()`
makes it refuse connections like a crashed container (the address stays, as the pod's
does); `drain()` waits for requests in flight to finish, then stops, like a container
stopping after SIGTERM; `remove()` stops it and takes its address off `lo`.

`received` holds the monotonic time each request arrived (benchmarks measure dispatch
delays from it). Set `fail_status` (e.g. 503) to answer every request, probes included,
with that status and an OpenAI error body: on 127.0.0.1 with port 0 (the port chosen at
`start()`), a FakeEngine is also an external OpenAI-compatible API a test can break.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Pods that carry this annotation ("true") get an address on `lo` and a fake engine.
SERVE_ANNOTATION = "fake-kubelet.test/serve"


#: The served pods' addresses. A blackhole route for the whole range (while the kubelet
#: serves pods) makes an address no longer on `lo` unreachable at once: nothing sent to
#: this range can ever leave the machine.
SERVED_NETWORK = "10.245.0.0/16"


def blackhole(on: bool) -> None:
    verb = "replace" if on else "del"
    subprocess.run(
        ["ip", "route", verb, "blackhole", SERVED_NETWORK], check=on, capture_output=True
    )


def add_address(ip: str) -> None:
    # check=False: an address left by an earlier run is fine; binding to it proves it is there
    subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=False, capture_output=True)


def remove_address(ip: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False, capture_output=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A real engine's listen backlog (uvicorn: 2048), not socketserver's 5: a burst of held
    # requests released at once opens ~100 connections together, and with 5 the kernel
    # drops the rest of the handshakes and those requests hang.
    request_queue_size = 1024


class FakeEngine:
    """One pod's engine on `ip:port`."""

    def __init__(self, pod: str, ip: str, port: int) -> None:
        self.pod, self.ip, self.port = pod, ip, port
        self.delay = 0.0
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompts: list[str] = []
        self.received: list[float] = []
        self.fail_status: int | None = None
        self.failed = 0
        self.first_served_at: float | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def on_lo_address(self) -> bool:
        """True for a pod's private address (added to `lo`), False for 127.x."""
        return not self.ip.startswith("127.")

    def start(self) -> FakeEngine:
        if self.on_lo_address:
            add_address(self.ip)
        self._server = _Server((self.ip, self.port), _handler(self))
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop accepting connections and reset the open ones (a crashed process)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def remove(self) -> None:
        """Stop, and take the address off `lo` (the pod is gone)."""
        self.kill()
        if self.on_lo_address:
            remove_address(self.ip)

    def drain(self, timeout: float = 30.0) -> None:
        """Let requests in flight finish (up to `timeout`), then stop."""
        end = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < end:
            time.sleep(0.01)
        self.kill()

    @property
    def url(self) -> str:
        """The OpenAI base URL of this engine (for an external backend's `url`)."""
        return f"http://{self.ip}:{self.port}/v1"

    def _begin(self, prompt: str) -> None:
        with self._lock:
            self.received.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.prompts.append(prompt)

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.served += 1
            if self.first_served_at is None:
                self.first_served_at = time.monotonic()


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with engine._lock:
                engine._conns.add(self.connection)

        def finish(self) -> None:
            with engine._lock:
                engine._conns.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if engine.fail_status is not None:
                self._send(engine.fail_status, _error(engine.fail_status))
                return
            self._send(200, {"status": "ok"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if engine.fail_status is not None:
                with engine._lock:
                    engine.failed += 1
                self._send(engine.fail_status, _error(engine.fail_status))
                return
            messages = body.get("messages") or [{}]
            engine._begin(str(messages[-1].get("content", "")))
            try:
                if engine.delay:
                    time.sleep(engine.delay)
            finally:
                engine._end()  # before the answer: the gateway's window always covers it
            self._send(200, _completion(body.get("model", ""), engine.pod))

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            data = json.dumps(doc).encode()
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

    return Handler


def _error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"fake engine told to answer {status}", "type": "server_error"}}


def _completion(model: str, pod: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"hello from {pod}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

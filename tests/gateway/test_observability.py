"""What the gateway says about each request: its id, one access line, tokens, the model name.

Every test drives the gateway as a client does (the official openai SDK or raw HTTP) and
reads what an operator would read: response headers, the JSON log lines, /metrics.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from ballast.gateway.access import ACCESS_LOGGER, JsonFormatter, _RequestIdFilter
from tests.gateway.backends import PROMPT_TOKENS, free_port
from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, eventually, table

SECRET_PROMPT = "the-launch-code-is-0000"
CLIENT_KEY = "client-key"  # what async_client sends as its bearer key


class LogLines:
    """Every record of the gateway's loggers, formatted as the gateway writes them (JSON)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(_RequestIdFilter())

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["logger"] == ACCESS_LOGGER]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def lines() -> Iterator[LogLines]:
    out = LogLines()
    root = logging.getLogger()
    old = root.level
    root.addHandler(out.handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(out.handler)
    root.setLevel(old)


def sent_id(up: Any) -> str | None:
    """The X-Request-Id the backend received with its last request."""
    return {k.lower(): v for k, v in up.seen[-1].headers.items()}.get("x-request-id")


def chat(**extra: Any) -> dict[str, Any]:
    body = {"model": "chat", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    return body | extra


async def test_a_request_id_is_kept_echoed_and_sent_upstream(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    up = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", up.url)])])
    client = async_client(gw)
    raw = await client.chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": "trace-4bf92f3577b34da6:a3ce929d/0e0e=@+"},
    )
    assert raw.headers["x-request-id"] == "trace-4bf92f3577b34da6:a3ce929d/0e0e=@+"
    assert sent_id(up) == "trace-4bf92f3577b34da6:a3ce929d/0e0e=@+"
    # an id that could write into a log (spaces, quotes, newline) or is too long is replaced
    async with aiohttp.ClientSession() as http:
        for bad in ['x" level=error', "a" * 129, "é", ""]:
            async with http.post(
                gw.base_url + "/chat/completions",
                json=chat(),
                headers={"X-Request-Id": bad, "Authorization": "Bearer k"},
            ) as r:
                assert r.status == 200
                new = r.headers["X-Request-Id"]
                assert re.fullmatch(r"[0-9a-f]{32}", new), new
                assert sent_id(up) == new
        # no id: a new one, different for every request, on errors too
        ids = set()
        for body in (chat(), chat(model="nope"), {"model": 3}):
            async with http.post(gw.base_url + "/chat/completions", json=body) as r:
                ids.add(r.headers["X-Request-Id"])
        assert len(ids) == 3
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_an_upstream_request_id_is_passed_on_under_its_own_name(
    gateway: GatewayFactory,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        doc = {"id": "c", "object": "chat.completion", "model": "m", "choices": []}
        return web.json_response(doc, headers={"X-Request-Id": "engine-17"})

    async with _raw_upstream(answer) as url:
        gw = await gateway([table("chat", [backend_row("primary", url)])])
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                gw.base_url + "/chat/completions", json=chat(), headers={"X-Request-Id": "mine"}
            ) as r,
        ):
            assert r.status == 200
            assert r.headers.getall("X-Request-Id") == ["mine"]
            assert r.headers["x-upstream-request-id"] == "engine-17"


async def test_one_access_line_per_request_whatever_its_end_and_never_a_body_or_key(
    backend: BackendFactory, gateway: GatewayFactory, lines: LogLines
) -> None:
    primary, fallback = await backend("primary"), await backend("fallback")
    rows = [
        backend_row("primary", primary.url, priority=0),
        backend_row("fallback", fallback.url, priority=1),
    ]
    gone = backend_row("gone", f"http://127.0.0.1:{free_port()}/v1")
    gw = await gateway(
        [table("chat", rows, retryOn=["5xx", "connect-failure"]), table("down", [gone])]
    )
    client = async_client(gw)
    ids: list[str] = []

    async def call(**kw: Any) -> None:
        try:
            raw = await client.chat.completions.with_raw_response.create(
                messages=[{"role": "user", "content": SECRET_PROMPT}], **kw
            )
            ids.append(raw.headers["x-request-id"])
            if kw.get("stream"):
                async for _ in raw.parse():  # type: ignore[attr-defined]
                    pass
        except openai.APIStatusError as e:
            ids.append(e.response.headers["x-request-id"])

    await call(model="chat")  # ok at the primary
    primary.behave("status", status=500)
    await call(model="chat")  # failover: the primary's 500, then the fallback
    await call(model="nope")  # 404 before any backend
    await call(model="down")  # 503: nothing listens
    primary.behave("answer")
    await call(model="chat", stream=True, stream_options={"include_usage": True})
    fallback.behave("status", status=400)
    primary.behave("status", status=400)
    await call(model="chat")  # the upstream's own 400, passed through
    await eventually(lambda: len(lines.access()) == 6)

    access = lines.access()
    assert [a["request_id"] for a in access] == ids
    ok, failover, unknown, down, stream, bad = access
    assert (ok["status"], ok["outcome"], ok["backend"], ok["attempts"]) == (200, "ok", "primary", 1)
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == (PROMPT_TOKENS, 3)
    assert ok["upstream_model"] == "primary-upstream"
    assert ok["stream"] is False
    assert ok["model"] == "chat"
    assert ok["path"] == "/v1/chat/completions"
    assert "ttft_ms" not in ok
    assert ok["latency_ms"] > 0
    assert (failover["status"], failover["backend"], failover["attempts"]) == (200, "fallback", 2)
    assert (unknown["status"], unknown["outcome"], unknown["attempts"]) == (404, "rejected", 0)
    assert (down["status"], down["outcome"], down["backend"]) == (503, "unavailable", "gone")
    assert stream["stream"] is True
    assert stream["status"] == 200
    assert stream["outcome"] == "ok"
    assert 0 < stream["ttft_ms"] <= stream["latency_ms"]
    assert (stream["prompt_tokens"], stream["completion_tokens"]) == (PROMPT_TOKENS, 3)
    assert (bad["status"], bad["outcome"], bad["backend"]) == (400, "client_error", "primary")
    assert all(a["level"] == "info" and a["message"] == "request" for a in access)

    # the warning about the primary's failed attempt carries the failover request's id
    warned = [r for r in lines.all() if r["level"] == "warning" and "attempt" in r["message"]]
    assert warned
    assert warned[0]["request_id"] == failover["request_id"]
    # nothing of a body, a prompt or a key anywhere in the log
    assert SECRET_PROMPT not in lines.text()
    assert CLIENT_KEY not in lines.text()
    assert "Bearer" not in lines.text()


async def test_a_client_that_leaves_mid_stream_gets_its_line(
    backend: BackendFactory, gateway: GatewayFactory, lines: LogLines
) -> None:
    up = await backend("primary")
    up.behave("answer", chunks=50, chunk_delay=0.05)
    gw = await gateway([table("chat", [backend_row("primary", up.url)])])
    async with aiohttp.ClientSession() as http:
        r = await http.post(gw.base_url + "/chat/completions", json=chat(stream=True))
        rid = r.headers["X-Request-Id"]
        await r.content.readuntil(b"\n\n")
        r.close()
    await eventually(lambda: len(lines.access()) == 1)
    (line,) = lines.access()
    assert (line["request_id"], line["status"], line["outcome"]) == (rid, 200, "client_closed")
    assert line["backend"] == "primary"
    assert line["stream"] is True
    assert "ttft_ms" in line


async def test_the_access_log_can_be_cut_to_errors_or_sampled_or_switched_off(
    backend: BackendFactory, gateway: GatewayFactory, lines: LogLines
) -> None:
    up = await backend("primary")
    tables = [table("chat", [backend_row("primary", up.url)])]
    for mode, sample, expect_ok in (("errors", 1.0, 0), ("all", 0.0, 0), ("off", 1.0, 0)):
        gw = await gateway(tables, access_log=mode, access_log_sample=sample)
        client = async_client(gw)
        before = len(lines.access())
        for _ in range(5):
            await client.chat.completions.create(model="chat", messages=[])
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=[])
        await asyncio.sleep(0.05)
        new = lines.access()[before:]
        assert len([a for a in new if a["status"] == 200]) == expect_ok
        assert len([a for a in new if a["status"] == 404]) == (0 if mode == "off" else 1)
        await gw.stop()


async def test_token_counters_add_up_the_usage_of_every_answer(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    up = await backend("primary")
    up.behave("answer", chunks=4)
    gw = await gateway([table("chat", [backend_row("primary", up.url)])])
    client = async_client(gw)
    for _ in range(3):  # non-stream answers: usage 11 prompt + 3 completion each
        await client.chat.completions.create(model="chat", messages=[])
    for _ in range(2):  # streams that asked for usage: 11 + 4 each
        stream = await client.chat.completions.create(
            model="chat", messages=[], stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 4
    stream = await client.chat.completions.create(model="chat", messages=[], stream=True)
    assert [c async for c in stream]  # a stream without usage counts no tokens

    def tokens(kind: str) -> float:
        labels = {"model": "chat", "backend": "primary", "kind": kind}
        return gw.sample("ballast_gateway_tokens_total", **labels)

    await eventually(lambda: tokens("completion") == 3 * 3 + 2 * 4)
    assert tokens("prompt") == 5 * PROMPT_TOKENS
    ttft = "ballast_gateway_time_to_first_token_seconds_count"
    assert gw.sample(ttft, model="chat", backend="primary") == 3  # the streams only
    tpot = "ballast_gateway_time_per_output_token_seconds_count"
    assert gw.sample(tpot, model="chat", backend="primary") == 2  # streams that gave usage
    duration = "ballast_gateway_request_duration_seconds_count"
    assert gw.sample(duration, model="chat", backend="primary") == 6
    # buckets that reach minutes: a cold start is not lost in +Inf
    bucket = "ballast_gateway_time_to_first_token_seconds_bucket"
    assert gw.sample(bucket, model="chat", backend="primary", le="300.0") == 3


class _raw_upstream:
    """An upstream on 127.0.0.1 that answers every POST with ``handler``."""

    def __init__(self, handler: Any) -> None:
        self.app = web.Application()
        self.app.router.add_post("/v1/{endpoint:.+}", handler)
        self.runner = web.AppRunner(self.app, access_log=None)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


# An engine's answer, spelled unusually: spaces, key order, unicode, the name nested too.
ODD_ANSWER = (
    b'{ "id" : "chatcmpl-9",\n  "choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"caf\\u00e9 \xe2\x98\x95","model":"inner"}}],\n'
    b'  "model" :\t"org/Engine-Model-\\u00e9" , "created":1,"usage":{"prompt_tokens":2,'
    b'"completion_tokens":5,"total_tokens":7}}\n'
)


async def test_the_served_model_name_replaces_the_upstreams_and_nothing_else_changes(
    gateway: GatewayFactory,
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        doc = await request.json()
        if not doc.get("stream"):
            return web.Response(body=ODD_ANSWER, content_type="application/json")
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for event in STREAM_EVENTS:
            await out.write(event)
        await out.write_eof()
        return out

    async with _raw_upstream(answer) as url:
        gw = await gateway([table("llama-3.1-8b", [backend_row("primary", url)])])
        async with aiohttp.ClientSession() as http:
            body = {"model": "llama-3.1-8b", "messages": []}
            async with http.post(gw.base_url + "/chat/completions", json=body) as r:
                got = await r.read()
                assert r.headers["x-ballast-upstream-model"] == "org/Engine-Model-é"
            expected = ODD_ANSWER.replace(b'"org/Engine-Model-\\u00e9"', b'"llama-3.1-8b"')
            assert got == expected
            async with http.post(
                gw.base_url + "/chat/completions", json=body | {"stream": True}
            ) as r:
                streamed = await r.read()
            assert streamed == b"".join(STREAM_EVENTS).replace(
                b'"model":"org/m"', b'"model":"llama-3.1-8b"'
            )
        # and the SDK sees the served name in every chunk and in the answer
        client = async_client(gw)
        whole = await client.chat.completions.create(model="llama-3.1-8b", messages=[])
        assert whole.model == "llama-3.1-8b"
        assert whole.usage is not None
        assert whole.usage.completion_tokens == 5
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="llama-3.1-8b", messages=[], stream=True
            )
        ]
        assert chunks
        assert {c.model for c in chunks} == {"llama-3.1-8b"}


# A stream split mid-event, with a comment, CRLF line ends and a multi-byte character cut.
_E1 = b'data: {"id":"c","object":"chat.completion.chunk","model":"org/m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
_E2 = 'data: {"id":"c","object":"chat.completion.chunk","model":"org/m","choices":[{"index":0,"delta":{"content":"☕ ok"}}]}\r\n\r\n'.encode()
STREAM_EVENTS = [
    b": keep-alive\n\n" + _E1[:40],
    _E1[40:] + _E2[:100],
    _E2[100:103],
    _E2[103:] + b"data: [DONE]\n\n",
]


async def test_every_backend_of_the_tables_has_a_circuit_series_until_it_leaves(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    up = await backend("primary")
    rows = [backend_row("primary", up.url), backend_row("cloud", up.url, priority=1)]
    gw = await gateway([table("chat", rows)])

    def circuit(name: str) -> float | None:
        labels = {"model": "chat", "backend": name}
        return gw.state.metrics.registry.get_sample_value("ballast_gateway_circuit_open", labels)

    assert (circuit("primary"), circuit("cloud")) == (0.0, 0.0)  # before any request
    gw.write([table("chat", rows[:1])])
    await eventually(lambda: circuit("cloud") is None)
    assert circuit("primary") == 0.0

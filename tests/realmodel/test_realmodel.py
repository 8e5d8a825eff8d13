"""A real model answers through Ballast: llama.cpp's `llama-server` run by the process
kubelet from the Deployment the operator rendered, reached through the gateway with the
official `openai` SDK.

What a fake engine cannot show: the rendered command line starts the real server (flags,
model path, alias), its `/health` is the right probe for startup and readiness, its SSE
stream passes through the gateway chunk by chunk, and killing it under load moves the
traffic to the second tier.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.cluster.kubeapi import ApiError
from tests.cluster.poll import wait_for
from tests.cluster.processkubelet import EngineProcess
from tests.monitoring.queries import (
    Query,
    alert_queries,
    dashboard,
    panel_queries,
    render,
    rule_groups,
    run_promtool_tests,
    scraped_names,
    selectors,
    variable_queries,
)

from .stack import RealStack

MODEL = "gemma-3-270m"
PROMPT = "The capital of France is"
SEED = 42


def client(base_url: str, api_key: str = "unused") -> openai.OpenAI:
    """An SDK client; the gateway needs the stack's client key, an engine ignores it."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)


def direct_url(stack: RealStack, backend: str) -> str:
    engine = stack.engines()[backend]
    return f"http://{engine.ip}:8080/v1"


def complete(c: openai.OpenAI, max_tokens: int = 16) -> tuple[Any, dict[str, str]]:
    raw = c.completions.with_raw_response.create(
        model=MODEL, prompt=PROMPT, max_tokens=max_tokens, temperature=0, seed=SEED
    )
    return raw.parse(), dict(raw.headers)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the gateway's /metrics (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_engine_runs_the_rendered_command_line(stack: RealStack, gemma: str) -> None:
    """Each tier's pod runs the rendered args with the real server on its own address."""
    engines = stack.engines()
    assert set(engines) == {"primary", "fallback"}
    for backend, engine in engines.items():
        dep = stack.api.get(
            f"/apis/apps/v1/namespaces/{stack.namespace}/deployments/{gemma}-{backend}"
        )
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert engine.argv[0] == str(stack.server)
        assert engine.argv[1:] == [
            engine.ip if a == "0.0.0.0" else engine.paths.translate(a) for a in container["args"]
        ]
        assert engine.alive(), engine.tail()
        models = client(direct_url(stack, backend)).models.list()
        assert [m.id for m in models.data] == [MODEL]  # --alias is the served model name
        # --metrics: the path the pod template's prometheus.io annotations name
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        url = f"http://{engine.ip}:{annotations['prometheus.io/port']}{annotations['prometheus.io/path']}"
        with urllib.request.urlopen(url, timeout=10) as rsp:
            assert "llamacpp:prompt_tokens_total" in rsp.read().decode()


def test_deterministic_completion_through_the_gateway(stack: RealStack, gemma: str) -> None:
    """temperature 0 and a fixed seed: the gateway's answer is the engine's, every time."""
    gw = client(stack.base_url, stack.api_key)
    first, headers = complete(gw)
    second, _ = complete(gw)
    direct, _ = complete(client(direct_url(stack, "primary")))
    text = first.choices[0].text
    assert text.strip(), first
    assert headers["x-ballast-backend"] == "primary"
    assert second.choices[0].text == text
    assert direct.choices[0].text == text
    assert first.choices[0].finish_reason == "length"
    assert first.model == MODEL


def test_usage_and_gateway_metrics(stack: RealStack, gemma: str) -> None:
    """Token usage comes back through the gateway, which counts it: prompt and completion
    tokens of the real engine's answer, a non-stream request (no time to first token) and a
    stream with `stream_options.include_usage` (time to first token and per output token)."""
    labels = {"model": MODEL, "backend": "primary"}
    tokens = "ballast_gateway_tokens_total"
    before = stack.metrics()
    answer, _ = complete(client(stack.base_url, stack.api_key), max_tokens=8)
    after = stack.metrics()
    usage = answer.usage
    assert usage is not None
    assert usage.completion_tokens == 8
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    requests = "ballast_gateway_requests_total"
    ok = {**labels, "outcome": "ok"}
    assert metric(after, requests, **ok) == metric(before, requests, **ok) + 1, after
    for kind, count in (("prompt", usage.prompt_tokens), ("completion", 8)):
        grew = metric(after, tokens, **labels, kind=kind) - metric(
            before, tokens, **labels, kind=kind
        )
        assert grew == count, kind
    ttft = "ballast_gateway_time_to_first_token_seconds_count"
    assert metric(after, ttft, **labels) == metric(before, ttft, **labels)  # streams only

    gw = client(stack.base_url, stack.api_key)
    chunks = list(gw.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, seed=SEED, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    final = chunks[-1].usage
    assert final is not None
    streamed = stack.metrics()
    assert metric(streamed, ttft, **labels) == metric(after, ttft, **labels) + 1
    tpot = "ballast_gateway_time_per_output_token_seconds_count"
    assert metric(streamed, tpot, **labels) == metric(after, tpot, **labels) + 1
    grew = metric(streamed, tokens, **labels, kind="completion") - metric(
        after, tokens, **labels, kind="completion"
    )
    assert grew == final.completion_tokens


def test_streaming_chunk_by_chunk(stack: RealStack, gemma: str) -> None:
    """A streamed chat answer arrives as one SSE chunk per token and equals the unstreamed one."""
    gw = client(stack.base_url, stack.api_key)
    messages = [{"role": "user", "content": "Write one short sentence about the sea."}]
    kwargs: dict[str, Any] = {"model": MODEL, "messages": messages, "max_tokens": 12,
                              "temperature": 0, "seed": SEED}  # fmt: skip
    whole = gw.chat.completions.create(**kwargs)
    chunks = list(
        gw.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert whole.choices[0].message.content
    assert "".join(pieces) == whole.choices[0].message.content
    assert whole.usage is not None
    assert (
        len(pieces) >= whole.usage.completion_tokens - 1
    )  # one chunk per token (the last may be empty)
    assert len(pieces) > 1
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["length"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_startup_probe_tolerates_the_real_load(stack: RealStack, gemma: str) -> None:
    """The startup probe gives the load its time: no engine was restarted, each became ready
    only after llama-server said the model was loaded, and the rendered budget covers
    `startupTimeoutSeconds`."""
    for backend, engine in stack.engines().items():
        assert engine.restarts == 0, engine.tail()
        log = engine.log.read_text(errors="replace")
        loaded = log.index("main: model loaded")
        first_ok = re.search(r"GET /health \S+ 200", log)
        assert first_ok is not None, engine.tail()
        assert first_ok.start() > loaded, f"{backend}: /health said 200 before the model loaded"
        dep = stack.api.get(
            f"/apis/apps/v1/namespaces/{stack.namespace}/deployments/{gemma}-{backend}"
        )
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        startup = container["startupProbe"]
        assert startup["httpGet"]["path"] == "/health"
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 1800  # the default startupTimeoutSeconds, not the 1 s probe period


def last_start(engine: EngineProcess) -> str:
    """The engine's log since its latest start."""
    return engine.log.read_text(errors="replace").rsplit("--- start ", 1)[-1]


def kill_while_loading(engine: EngineProcess, attempts: int = 5) -> None:
    """End the restart back-off and SIGKILL the new process before its model is loaded.

    The load takes about a second; a start that finished loading before the kill is
    retried (the kill is checked, not assumed)."""
    for _ in range(attempts):
        starts = engine.restarts
        engine.restart_now()
        wait_for(
            lambda n=starts: engine.restarts > n and engine.alive(), timeout=60, what="restart"
        )
        engine.crash()
        wait_for(lambda: not engine.alive(), timeout=30, what="the killed engine to exit")
        if "main: model loaded" not in last_start(engine):
            return
    raise AssertionError(f"the engine loaded faster than it could be killed:\n{engine.tail()}")


def test_failover_when_the_primary_engine_is_killed_under_load(
    stack: RealStack, gemma: str
) -> None:
    """SIGKILL the primary's llama-server while it streams: the cut stream fails (it had
    started, so it is not retried), the next requests are answered by the fallback tier,
    the operator takes the primary out of the route; killed again while its restart loads
    the model, the fallback keeps answering; after the next restart the primary is back."""
    engines = stack.engines()
    primary = engines["primary"]
    primary.backoff = 300.0  # the kubelet waits until restart_now(): no race with the restart
    gw = client(stack.base_url, stack.api_key)
    stream = gw.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count from one to one hundred."}],
        max_tokens=400, temperature=0, seed=SEED, stream=True,
    )  # fmt: skip
    outcome: dict[str, Any] = {}
    started = threading.Event()

    def read() -> None:
        try:
            for chunk in stream:
                started.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    outcome["finish"] = chunk.choices[0].finish_reason
        except Exception as err:  # the connection is cut mid-stream
            outcome["error"] = err
        finally:
            started.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(60)
    primary.crash()
    reader.join(60)
    assert not reader.is_alive()
    assert "finish" not in outcome, outcome  # the stream did not complete normally

    answer, headers = complete(gw)
    assert headers["x-ballast-backend"] == "fallback"
    assert answer.choices[0].text.strip()
    wait_for(
        lambda: stack.in_route(gemma).get("primary") is False,
        timeout=60,
        what="the operator taking primary out of the route",
    )
    assert stack.phase(gemma) == "Degraded"
    again, headers = complete(gw)
    assert headers["x-ballast-backend"] == "fallback"
    assert again.choices[0].text == answer.choices[0].text  # same model, same seed

    # Killed again while it loads the model: still the fallback, still out of the route.
    kill_while_loading(primary)
    during, headers = complete(gw)
    assert headers["x-ballast-backend"] == "fallback"
    assert during.choices[0].text == answer.choices[0].text
    assert stack.in_route(gemma).get("primary") is False

    primary.backoff = 10.0
    primary.restart_now()
    stack.wait_ready(gemma, timeout=120)
    assert primary.restarts >= 2
    back, headers = complete(gw)
    assert headers["x-ballast-backend"] == "primary"
    assert back.choices[0].text == answer.choices[0].text


def test_the_dashboard_and_alerts_read_what_ran(
    stack: RealStack, gemma: str, tmp_path: Path
) -> None:
    """The shipped dashboard and alert rules against this run: every metric they name is
    exported by the real gateway and operator after the traffic above (streams, a failover,
    a killed engine), and every panel query (and every alert's measured side) returns data
    when Prometheus's engine (`promtool test rules`) evaluates it over the run's scrapes."""
    stack.scrape()
    objects = render()
    board, groups = dashboard(objects), rule_groups(objects)
    panels, alerts = panel_queries(board), alert_queries(groups)
    scraped = set().union(*(scraped_names(text) for text in stack.scrapes))
    for q in [*panels, *alerts, *variable_queries(board)]:
        for name, _ in selectors(q.expr):
            assert name in scraped, f"{q.where}: {name} was not exported during the run"
    for name in ("ballast_gateway_fallbacks_total", "ballast_gateway_tokens_total"):
        assert name in scraped  # the failover and the usage really happened

    # The scrapes as series one minute apart; each query evaluated at the last one.
    series = scrapes_as_series(stack.scrapes)
    end = f"{len(stack.scrapes) - 1}m"
    measured = [Query(a.where, re.split(r" (?:>|==) [^ ]+$", a.expr)[0]) for a in alerts]
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {"expr": f"clamp_max(count({q.expr}), 1)", "eval_time": end,
             "exp_samples": [{"labels": "{}", "value": 1}]}
            for q in [*panels, *measured]
        ],
    }]}  # fmt: skip
    try:
        run_promtool_tests(tmp_path, groups, tests)
    except AssertionError as err:
        wheres = "\n".join(f"{i}: {q.where}: {q.expr}" for i, q in enumerate([*panels, *measured]))
        raise AssertionError(f"{err}\nqueries:\n{wheres}") from None


def scrapes_as_series(scrapes: list[str]) -> list[dict[str, str]]:
    """Prometheus text expositions -> promtool input series (``_`` where a series is absent)."""
    values: dict[str, list[str]] = {}
    for i, text in enumerate(scrapes):
        for line in text.splitlines():
            if not line.startswith("ballast_") or "_created" in line.split(" ", 1)[0]:
                continue
            series, value = line.rsplit(" ", 1)
            if value in ("NaN", "+Inf", "-Inf"):
                continue
            values.setdefault(series, ["_"] * len(scrapes))[i] = value
    return [{"series": s, "values": " ".join(v)} for s, v in values.items()]


def test_deleting_a_pod_stops_its_llama_server_and_the_replacement_serves(
    stack: RealStack, gemma: str
) -> None:
    """The process kubelet ends the engine of a deleted pod (SIGTERM within its grace
    period), and the pod the Deployment creates in its place starts its own llama-server,
    which answers through the gateway once Ready."""
    old = stack.engines()["primary"]
    pid = old.pid
    assert pid is not None
    assert old.alive()
    stack.api.delete(f"/api/v1/namespaces/{old.namespace}/pods/{old.pod}")
    wait_for(lambda: not old.alive(), timeout=60, what="the deleted pod's llama-server exiting")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not a zombie left behind

    def replaced() -> bool:
        try:
            engine = stack.engines().get("primary")
        except ApiError:  # a pod the kubelet still lists is gone from the API: not yet
            return False
        return engine is not None and engine.pod != old.pod

    wait_for(replaced, timeout=60, what="the replacement pod's engine")
    stack.wait_ready(gemma, timeout=120)
    answer, headers = complete(client(stack.base_url, stack.api_key))
    assert headers["x-ballast-backend"] == "primary"
    assert answer.choices[0].text

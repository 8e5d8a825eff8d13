"""Scale from zero with held requests, and a cold standby, on the real control plane (issue 17).

The chart is installed and its operator runs as the chart's ServiceAccount; `ballast
gateway` runs as a local process with the chart's gateway ServiceAccount token, on a
private address on `lo`, and a hand-made EndpointSlice of the chart's headless
`ballast-gateway-internal` Service lists it, so the operator finds its demand report
through `BALLAST_GATEWAY_SERVICE` exactly as it finds gateway pods. The fake kubelet
serves the pods the operator renders (a fake engine per pod on its own address) and
reports them Ready only some seconds after they run (the model load). The real
EndpointSlice controller tells the gateway when a pod is ready. Clients are the official
`openai` SDK. Proven:

* a burst of 100 concurrent requests to a backend at 0: all held, none reaches the engine
  before its pod is Ready, all answered 200 with `x-ballast-cold-start: true`;
* more than `hold.maxPending`: the excess gets 503 with `Retry-After` at once; the held
  ones get 504 past `hold.timeoutSeconds` (pods that never become ready);
* idle: back to 0 after `idleAfterSeconds`; requests arriving as it goes to 0 (while the
  pod terminates and after it is gone) are held and served, none lost; the audit log (at
  Request level for Deployments) shows one writer of replicas at a time: the operator
  sets `spec.replicas` only while no HPA exists, the HPA is created only after the first
  pod was Ready, and only the HPA controller (while its HPA exists) writes the scale;
* a cold standby below an external API (a fake on loopback that answers 503 when told):
  Cold -> Warming -> Active as the external fails, requests sent while it warms are held
  for it and served, traffic moves to it, then back to the external and Cooling -> Cold
  (0 replicas) after the cooldown once the external recovers, with 0 client errors from
  the moment the standby warms; status and Events tell the story.

Figures (overhead, dispatch delay) are measured by bench/scale_from_zero.py, not asserted
here beyond generous sanity bounds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from ._llmservices import API_VERSION, llms_path
from ._operator import OperatorProcess
from ._stack import OPERATOR_USER, RELEASE, LocalGateway, running_operator
from .binaries import Binaries
from .controlplane import ControlPlane
from .fakeengine import FakeEngine
from .fakekubelet import FakeKubelet
from .kubeapi import JSON, ApiError, KubeApi
from .poll import wait_for

COLD_START = "x-ballast-cold-start"
HPA_CONTROLLER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


class ReplicasAuditPlane(ControlPlane):
    """A control plane whose audit log also keeps the *body* of Deployment writes (Request
    level), so who set `spec.replicas` is read from the log, not guessed."""

    def _write_pki(self) -> None:
        super()._write_pki()
        path = self.workdir / "audit-policy.yaml"
        policy = yaml.safe_load(path.read_text())
        rule = {
            "level": "Request",
            "verbs": ["create", "update", "patch"],
            "resources": [{"group": "apps", "resources": ["deployments", "deployments/scale"]}],
        }
        policy["rules"].insert(0, rule)
        path.write_text(yaml.safe_dump(policy))


@dataclass(frozen=True)
class Write:
    """One write in the audit log, with the server's times (Unix seconds)."""

    user: str
    verb: str
    resource: str
    subresource: str
    name: str
    code: int
    received: float
    completed: float
    body: JSON | None


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def audit_writes(plane: ControlPlane, namespace: str, since: int = 0) -> list[Write]:
    """Every completed write in `namespace` after `since` (an audit mark), in log order."""
    with plane.audit.path.open("rb") as f:
        f.seek(since)
        data = f.read()
    out = []
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        raw = json.loads(line)
        ref = raw.get("objectRef") or {}
        if raw.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
            continue
        if raw.get("verb") not in ("create", "update", "patch", "delete"):
            continue
        out.append(
            Write(
                user=raw["user"]["username"],
                verb=raw["verb"],
                resource=ref.get("resource", ""),
                subresource=ref.get("subresource", ""),
                name=ref.get("name", ""),
                code=int((raw.get("responseStatus") or {}).get("code", 0)),
                received=_ts(raw["requestReceivedTimestamp"]),
                completed=_ts(raw["stageTimestamp"]),
                body=raw.get("requestObject"),
            )
        )
    return out


def ready_write(writes: list[Write], pod: str, ready_mark: tuple[float, float]) -> Write:
    """The kubelet's status write that made ``pod`` Ready: the first the API server received
    after the kubelet marked sending it (``marks.ready``; server against local wall clock)."""
    return next(
        w
        for w in writes
        if (w.resource, w.subresource, w.name) == ("pods", "status", pod)
        and w.received >= ready_mark[1]
    )


# --- the stack: one control plane, kubelet, operator, namespace and gateway per module ---


@pytest.fixture(scope="module")
def plane(cluster_binaries: Binaries) -> Iterator[ReplicasAuditPlane]:
    with ReplicasAuditPlane(cluster_binaries) as plane:
        yield plane


@pytest.fixture(scope="module")
def kubelet(plane: ReplicasAuditPlane) -> Iterator[FakeKubelet]:
    with plane.fake_kubelet() as kubelet:
        yield kubelet


@pytest.fixture(scope="module")
def operator(
    plane: ReplicasAuditPlane,
    kubelet: FakeKubelet,
    k8s_tools: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    with running_operator(plane, k8s_tools, tmp_path_factory) as op:  # type: ignore[arg-type]
        yield op


@pytest.fixture(scope="module")
def ns(plane: ReplicasAuditPlane) -> Iterator[str]:
    name = f"stz-{uuid.uuid4().hex[:6]}"
    plane.api.post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    try:
        plane.api.delete(f"/api/v1/namespaces/{name}")
    except ApiError as err:
        if err.status != 404:
            raise


@pytest.fixture(scope="module")
def gateway(
    plane: ReplicasAuditPlane,
    operator: OperatorProcess,
    ns: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalGateway]:
    with LocalGateway(plane, RELEASE, tmp_path_factory.mktemp("gateway"), [ns]) as gw:
        yield gw


# --- LLMServices, their state, and clients ---


def zero_backend(
    idle: int = 10, max_replicas: int = 2, hold: JSON | None = None, **extra: Any
) -> JSON:
    backend: JSON = {
        "name": "gpu",
        "engine": "vllm",
        "model": "org/chat",
        "scaling": {"minReplicas": 0, "maxReplicas": max_replicas, "idleAfterSeconds": idle},
        "health": {"periodSeconds": 1},
        **extra,
    }
    if hold is not None:
        backend["hold"] = hold
    return backend


def create(api: KubeApi, ns: str, name: str, *backends: JSON, **spec: Any) -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backends": list(backends), **spec},
    }
    api.post(llms_path(ns), body)


def delete(api: KubeApi, ns: str, name: str) -> None:
    try:
        api.delete(llms_path(ns, name))
    except ApiError as err:
        if err.status != 404:
            raise


def backend_status(api: KubeApi, ns: str, name: str, backend: str) -> JSON:
    status = api.get(llms_path(ns, name)).get("status") or {}
    return next((b for b in status.get("backends") or () if b["name"] == backend), {})


def replicas(api: KubeApi, ns: str, deployment: str) -> int | None:
    try:
        dep = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment}")
    except ApiError as err:
        if err.status == 404:
            return None
        raise
    return dep["spec"].get("replicas")  # type: ignore[no-any-return]


def hpa_exists(api: KubeApi, ns: str, name: str) -> bool:
    return api.exists(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}")


def reasons(api: KubeApi, ns: str, name: str) -> list[str]:
    return [
        e["reason"]
        for e in api.get(f"/api/v1/namespaces/{ns}/events")["items"]
        if e["involvedObject"].get("kind") == "LLMService" and e["involvedObject"]["name"] == name
        for _ in range(e.get("count") or 1)
    ]


def wait_asleep(api: KubeApi, ns: str, name: str, timeout: float = 60) -> None:
    """The service is Ready with its `gpu` backend at 0 on purpose."""

    def asleep() -> bool:
        status = api.get(llms_path(ns, name)).get("status") or {}
        gpu = backend_status(api, ns, name, "gpu")
        return (
            status.get("phase") == "Ready"
            and gpu.get("scaledToZero") is True
            and replicas(api, ns, f"{name}-gpu") == 0
        )

    wait_for(asleep, timeout=timeout, what=f"{name} Ready at 0")


def wait_known(gw: LocalGateway, model: str) -> None:
    """The gateway has loaded `model`'s routing table."""
    c = client(gw, timeout=5)

    def known() -> bool:
        try:
            c.models.retrieve(model)
        except openai.OpenAIError:
            return False
        return True

    wait_for(known, timeout=30, what=f"the gateway to know {model}")


def client(gw: LocalGateway, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=timeout)


@dataclass
class Outcome:
    """One chat completion: status (0: no HTTP answer), headers, the answer or the error."""

    status: int
    headers: dict[str, str]
    text: str
    sent: float
    done: float
    error: str = ""

    @property
    def cold(self) -> bool:
        return self.headers.get(COLD_START) == "true"

    @property
    def seconds(self) -> float:
        return self.done - self.sent


def ask(c: openai.OpenAI, model: str, prompt: str = "hi") -> Outcome:
    sent = time.monotonic()
    messages: Any = [{"role": "user", "content": prompt}]
    try:
        raw = c.chat.completions.with_raw_response.create(model=model, messages=messages)
        completion = raw.parse()
        text = completion.choices[0].message.content or ""
        return Outcome(raw.status_code, dict(raw.headers), text, sent, time.monotonic())
    except openai.APIStatusError as e:
        body = e.response.text
        return Outcome(
            e.status_code, dict(e.response.headers), body, sent, time.monotonic(), repr(e)
        )
    except openai.OpenAIError as e:
        return Outcome(0, {}, "", sent, time.monotonic(), repr(e))


def burst(c: openai.OpenAI, model: str, n: int, prefix: str) -> list[Outcome]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: ask(c, model, f"{prefix}-{i}"), range(n)))


def engines_of(kubelet: FakeKubelet, ns: str, deployment: str) -> dict[str, FakeEngine]:
    prefix = f"{ns}/{deployment}-"
    return {k: e for k, e in list(kubelet.engines.items()) if k.startswith(prefix)}


def ready_marks(kubelet: FakeKubelet, ns: str, deployment: str) -> dict[str, float]:
    """Pod -> monotonic time the kubelet sent the status write that reported it Ready."""
    prefix = f"{ns}/{deployment}-"
    return {
        k: m.ready[0] for k, m in list(kubelet.marks.items()) if k.startswith(prefix) and m.ready
    }


def held(gw: LocalGateway, name: str, backend: str) -> int:
    rows = gw.demand().get("backends") or []
    return sum(r.get("held", 0) for r in rows if (r["service"], r["backend"]) == (name, backend))


# --- the scenarios ---


def test_a_burst_of_100_at_zero_is_held_until_the_pod_is_ready_then_all_served(
    plane: ReplicasAuditPlane, kubelet: FakeKubelet, gateway: LocalGateway, ns: str
) -> None:
    api, name, load = plane.api, "burst", 8.0
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=load)
    try:
        create(api, ns, name, zero_backend(idle=30))
        wait_asleep(api, ns, name)
        assert not hpa_exists(api, ns, f"{name}-gpu")
        wait_known(gateway, name)
        started = time.monotonic()
        outcomes = burst(client(gateway), name, 100, "burst")
        failed = [o for o in outcomes if o.status != 200]
        assert failed == [], failed[:3]
        assert all(o.cold for o in outcomes), [o.headers for o in outcomes if not o.cold][:3]
        assert all(o.text.startswith(f"hello from {name}-gpu-") for o in outcomes)
        (engine,) = engines_of(kubelet, ns, f"{name}-gpu").values()
        (ready_at,) = ready_marks(kubelet, ns, f"{name}-gpu").values()
        assert len(engine.received) == 100
        # None reached the engine before its pod was Ready, and all soon after (sanity).
        assert min(engine.received) >= ready_at
        assert max(engine.received) - ready_at < 30
        # They waited for the model load (the pod ran `load` s before it was Ready).
        assert min(o.seconds for o in outcomes) >= load - 0.5
        assert time.monotonic() - started < 120
        wait_for(lambda: {"ScalingFromZero", "ScaledFromZero"} <= set(reasons(api, ns, name)),
                 timeout=30, what="the ScalingFromZero and ScaledFromZero Events")  # fmt: skip
    finally:
        delete(api, ns, name)
        kubelet.unserve(rule)


def test_over_max_pending_503_with_retry_after_at_once_and_504_past_the_timeout(
    plane: ReplicasAuditPlane, kubelet: FakeKubelet, gateway: LocalGateway, ns: str
) -> None:
    api, name, timeout = plane.api, "full", 10
    # Pods that never become ready: the held requests can only time out.
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=math.inf)
    try:
        create(api, ns, name, zero_backend(hold={"maxPending": 5, "timeoutSeconds": timeout}))
        wait_asleep(api, ns, name)
        wait_known(gateway, name)
        c = client(gateway)
        with ThreadPoolExecutor(5) as pool:
            waiting = [pool.submit(ask, c, name, f"held-{i}") for i in range(5)]
            wait_for(lambda: held(gateway, name, "gpu") == 5, timeout=20, what="5 held")
            excess = [ask(c, name, f"excess-{i}") for i in range(3)]
            outcomes = [f.result() for f in waiting]
        for o in excess:
            assert o.status == 503, o
            assert o.headers.get("retry-after"), o.headers
            assert json.loads(o.text)["error"]["message"], o.text
            assert o.seconds < 5, o  # at once (a generous bound: it is not held at all)
        for o in outcomes:
            assert o.status == 504, o
            assert o.cold, o.headers
            assert json.loads(o.text)["error"]["message"], o.text
            assert o.seconds >= timeout - 1, o
            assert o.seconds < timeout + 30, o
        # The demand woke the backend; its pod runs but never became ready.
        assert replicas(api, ns, f"{name}-gpu") == 1
        assert not hpa_exists(api, ns, f"{name}-gpu")
        assert held(gateway, name, "gpu") == 0
        assert 'reason="full"' in gateway.metrics()
    finally:
        delete(api, ns, name)
        kubelet.unserve(rule)


def test_idle_goes_to_zero_requests_racing_the_scale_down_are_served_one_writer_of_replicas(
    plane: ReplicasAuditPlane, kubelet: FakeKubelet, gateway: LocalGateway, ns: str
) -> None:
    api, name, idle = plane.api, "idle", 10
    dep = f"{name}-gpu"
    mark = plane.audit.mark()
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=2.0)
    try:
        create(api, ns, name, zero_backend(idle=idle))
        wait_asleep(api, ns, name)
        wait_known(gateway, name)
        c = client(gateway)
        first = ask(c, name, "wake")
        assert first.status == 200, first
        assert first.cold, first
        wait_for(lambda: hpa_exists(api, ns, dep), timeout=30, what="the HPA")
        wait_for(
            lambda: backend_status(api, ns, name, "gpu").get("scaledToZero") is False,
            timeout=30,
            what="status up",
        )
        again = ask(c, name, "warm")
        assert again.status == 200, again
        assert not again.cold, again
        last_request = again.done

        # Idle: the operator takes it to 0. The moment it does, requests keep arriving:
        # while the pod terminates, after it is gone, and as the backend wakes again.
        wait_for(lambda: replicas(api, ns, dep) == 0, timeout=idle + 40, interval=0.05,
                 what="scaled to 0")  # fmt: skip
        assert time.monotonic() - last_request >= idle
        racing: list[Outcome] = []
        with ThreadPoolExecutor(8) as pool:
            futures = []
            for delay in (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0):
                futures.append(pool.submit(lambda d: (time.sleep(d), ask(c, name, f"race-{d}"))[1],
                                           delay))  # fmt: skip
            racing = [f.result() for f in futures]
        lost = [o for o in racing if o.status != 200]
        assert lost == [], lost
        assert any(o.cold for o in racing), racing  # some had to wait for the next pod
        wait_for(
            lambda: reasons(api, ns, name).count("ScalingFromZero") >= 2,
            timeout=30,
            what="a second ScalingFromZero",
        )
        assert "ScaledToZero" in reasons(api, ns, name)
        assert "BackendLeftRoute" not in reasons(api, ns, name)
        wait_for(lambda: hpa_exists(api, ns, dep), timeout=30, what="the HPA again")
        time.sleep(2)  # the last writes reach the audit log
        check_one_writer(plane, kubelet, ns, dep, mark)
    finally:
        delete(api, ns, name)
        kubelet.unserve(rule)


def hpa_lifetimes(writes: list[Write], name: str) -> list[tuple[float, float]]:
    """(created, deleted) server times of each HPA `name` (deleted: inf while it exists)."""
    spans: list[tuple[float, float]] = []
    for w in writes:
        if w.resource != "horizontalpodautoscalers" or w.name != name or w.subresource:
            continue
        if w.verb in ("create", "patch") and w.code == 201:
            spans.append((w.received, math.inf))
        elif w.verb == "delete" and w.code in (200, 202) and spans:
            spans[-1] = (spans[-1][0], w.completed)
    return spans


def story(writes: list[Write], dep: str) -> list[str]:
    """The writes on `dep` and its HPA, one line each (for failure messages)."""
    t0 = writes[0].received if writes else 0.0
    out = []
    for w in writes:
        if w.name != dep or w.subresource == "status":
            continue
        spec = (w.body or {}).get("spec") or {}
        out.append(f"{w.received - t0:7.3f} {w.user.rsplit(':', 1)[-1]} {w.verb} {w.resource}"
                   f"/{w.subresource} {w.code} replicas={spec.get('replicas', '-')}")  # fmt: skip
    return out


def sets_replicas(w: Write) -> bool:
    return "replicas" in ((w.body or {}).get("spec") or {})


def check_one_writer(
    plane: ControlPlane, kubelet: FakeKubelet, ns: str, dep: str, mark: int
) -> None:
    writes = audit_writes(plane, ns, mark)
    spans = hpa_lifetimes(writes, dep)
    assert len(spans) == 2, spans  # woken twice
    during = lambda t0, t1: any(a <= t1 and t0 <= b for a, b in spans)  # noqa: E731
    on_dep = [w for w in writes if w.resource == "deployments" and w.name == dep]
    assert on_dep, writes
    # Who writes the Deployment's spec (not its status): the operator, and the HPA
    # controller through the scale subresource; nobody else.
    spec_writers = {(w.user, w.subresource) for w in on_dep if w.subresource != "status"}
    assert spec_writers <= {(OPERATOR_USER, ""), (HPA_CONTROLLER, "scale")}, spec_writers
    operator_sets = [w for w in on_dep if w.user == OPERATOR_USER and sets_replicas(w)]
    bodies = [w for w in on_dep if w.user == OPERATOR_USER]
    assert all(w.body is not None for w in bodies), "the audit log kept no request bodies"
    assert len(operator_sets) >= 3, operator_sets  # 0 at first, 1 when woken, 0 again, 1
    # The operator sets replicas only while no HPA exists...
    clash = [w for w in operator_sets if during(w.received, w.completed)]
    assert clash == [], "\n".join([*story(writes, dep), repr(spans)])
    # ...and the HPA controller writes the scale only while its HPA exists.
    scale = [w for w in on_dep if w.user == HPA_CONTROLLER]
    assert all(during(w.received, w.completed) for w in scale), (scale, spans)
    # Each HPA was created only after a pod of that wake-up was Ready: after the API server
    # received the kubelet's status write that made it Ready (server times, no clock skew).
    ready_writes = []
    for key, marks in list(kubelet.marks.items()):
        if not key.startswith(f"{ns}/{dep}-") or marks.ready is None:
            continue
        ready_writes.append(ready_write(writes, key.split("/", 1)[1], marks.ready).received)
    ready_writes.sort()
    assert len(ready_writes) >= 2, ready_writes
    for (created, _), ready in zip(spans, ready_writes, strict=False):
        assert created >= ready, (created, ready)


@dataclass
class Ticker:
    """A client asking every `every` seconds in a thread, recording each outcome."""

    c: openai.OpenAI
    model: str
    every: float = 0.25
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workers: int = 2) -> Ticker:
        for i in range(workers):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            self.outcomes.append(ask(self.c, self.model, f"tick-{worker}-{n}"))
            n += 1
            self._stop.wait(self.every)

    def halt(self) -> None:
        """Send no more (requests under way go on)."""
        self._stop.set()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(150)
        return self.outcomes


@dataclass
class StateLog:
    """The standby's status states as polled, in order (consecutive repeats dropped)."""

    read: Callable[[], str]
    states: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StateLog:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                state = self.read()
            except Exception:  # a slow read is a missed sample, not a failure
                continue
            if state and (not self.states or self.states[-1] != state):
                self.states.append(state)

    def stop(self) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.states


def test_a_cold_standby_warms_when_the_external_fails_serves_then_goes_cold_again(
    plane: ReplicasAuditPlane, kubelet: FakeKubelet, gateway: LocalGateway, ns: str
) -> None:
    api, name = plane.api, "sb"
    dep = f"{name}-local"
    external = FakeEngine("external", "127.0.0.1", 0).start()
    rule = kubelet.serve(ns, {"ballast.dev/service": name}, ready_after=6.0)
    fast = {"periodSeconds": 1}
    standby = {"activateAfterSeconds": 2, "cooldownSeconds": 6}

    def standby_state() -> str:
        return str((backend_status(api, ns, name, "local").get("standby") or {}).get("state", ""))

    def local_holds() -> bool:
        routes = api.get(f"/api/v1/namespaces/{ns}/configmaps/{name}-routes")["data"]
        table = json.loads(routes["routes.json"])
        rows = [b for b in table.get("backends") or () if b.get("name") == "local"]
        return bool(rows and rows[0].get("hold"))

    states = StateLog(standby_state)
    try:
        create(
            api, ns, name,
            {"name": "cloud", "engine": "openai", "url": external.url, "model": "m",
             "priority": 0, "health": fast},
            {"name": "local", "engine": "vllm", "model": "org/m", "priority": 1, "replicas": 1,
             "standby": standby, "health": fast},
            fallback={"healthyAfter": 1, "unhealthyAfter": 2},
        )  # fmt: skip
        wait_for(lambda: standby_state() == "Cold" and replicas(api, ns, dep) == 0, timeout=60,
                 what="standby Cold at 0")  # fmt: skip
        wait_known(gateway, name)
        states.start()
        c = client(gateway)
        healthy = [ask(c, name, f"healthy-{i}") for i in range(5)]
        assert [o.status for o in healthy] == [200] * 5, healthy
        assert external.served == 5
        assert not engines_of(kubelet, ns, dep)

        # The external fails. While the standby is Cold nothing holds for it (by design: it
        # comes up when the tiers above fail, not on demand), so those requests fail, cleanly
        # (an OpenAI error with a status, never a reset connection).
        external.fail_status = 503
        gap = Ticker(c, name, every=0.5).start(workers=1)
        wait_for(lambda: standby_state() == "Warming", timeout=60, what="standby Warming")
        wait_for(local_holds, timeout=30, what="the route holding for the warming standby")
        gap.halt()  # its last request may already be held (joined below)
        time.sleep(0.5)  # the gateway's ConfigMap watch delivers the table that holds

        # From here on: 0 client errors, through warm-up, activity, recovery and cooldown.
        ticker = Ticker(c, name, every=0.25).start(workers=2)
        warming = burst(c, name, 20, "warming")
        assert [o.status for o in warming] == [200] * 20, [o for o in warming if o.status != 200]
        (local,) = engines_of(kubelet, ns, dep).values()
        (ready_at,) = ready_marks(kubelet, ns, dep).values()
        assert min(local.received) >= ready_at  # held until the standby's pod was Ready
        early = [o for o in warming if o.sent < ready_at]
        assert early, warming
        assert all(o.cold for o in early), warming  # those sent while it warmed were held
        gap_outcomes = gap.stop()
        # (one sent just as the gateway got the holding table may be held and served)
        clean = [o for o in gap_outcomes if o.status == 200 or (o.status >= 500 and o.error)]
        assert clean == gap_outcomes, gap_outcomes
        assert any(o.status >= 500 for o in gap_outcomes), gap_outcomes
        wait_for(lambda: standby_state() == "Active", timeout=30, what="standby Active")
        wait_for(lambda: backend_status(api, ns, name, "local").get("inRoute"), timeout=30,
                 what="standby in route")  # fmt: skip
        served_by_local = local.served

        external.fail_status = None  # the external recovers
        wait_for(lambda: standby_state() == "Cooling", timeout=30, what="standby Cooling")
        wait_for(lambda: standby_state() == "Cold" and replicas(api, ns, dep) == 0, timeout=60,
                 what="standby Cold again")  # fmt: skip
        external_before = external.served
        time.sleep(1.5)
        outcomes = ticker.stop()
        assert [o for o in outcomes if o.status != 200] == []
        assert local.served > served_by_local or served_by_local > 20  # traffic moved to it
        assert external.served > external_before  # and back to the external once Cold

        status = backend_status(api, ns, name, "local")
        assert status["standby"]["state"] == "Cold"
        assert "healthy" in status["standby"]["reason"]
        assert status["standby"]["since"]
        assert status.get("replicas", 0) == 0
        seen = states.stop()
        assert seen[:5] == ["Cold", "Warming", "Active", "Cooling", "Cold"], seen
        events = reasons(api, ns, name)
        for reason in ("StandbyWarming", "StandbyActive", "StandbyCooling", "StandbyCold"):
            assert reason in events, events
        assert not hpa_exists(api, ns, dep)  # a fixed-replica standby has no HPA
    finally:
        states.stop()
        delete(api, ns, name)
        kubelet.unserve(rule)
        external.remove()

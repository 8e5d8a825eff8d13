"""Scale to zero and cold standbys: the pure state machine (no I/O, no clock)."""

from __future__ import annotations

import time
from typing import Any

from ballast import render
from ballast.api import BackendStatus, StandbyState, StandbyStatus
from ballast.controller.children import Child
from ballast.controller.demand import Round, gateway_urls, merge
from ballast.controller.scaler import (
    ACTIVE,
    ASLEEP,
    AWAKE,
    COLD,
    CONFIRM_SECONDS,
    COOLING,
    WAKING,
    WARMING,
    Demand,
    Power,
    Signals,
    infer,
    pin,
    powers_for,
    scale_of,
    step,
)
from ballast.render.scale import Scale
from ballast.routing.demand import BackendDemand, DemandReport
from tests.factories import external, make_llmservice, vllm

NOW = "2026-12-07T00:00:00Z"
ZERO = {"minReplicas": 0, "maxReplicas": 3, "idleAfterSeconds": 60}


def to_zero(**more: Any) -> Any:
    return make_llmservice(vllm(scaling=ZERO, **more), uid="u").spec.backends[0]


def standby(**more: Any) -> Any:
    svc = make_llmservice(
        external(priority=0), vllm(priority=1, replicas=2, standby=more or {}), uid="u"
    )
    return svc.spec.backends[1]


def idle(ready: int = 1) -> Signals:
    return Signals(Demand(), ready)


def test_a_held_request_wakes_a_backend_at_zero_and_a_ready_pod_hands_it_to_the_hpa() -> None:
    b, p = to_zero(), Power(ASLEEP, NOW)
    assert step(b, p, idle(0), 0.0, NOW) is None
    assert p.state == ASLEEP
    change = step(b, p, Signals(Demand(held=3), 0), 1.0, NOW)
    assert change is not None
    assert (change.before, change.after) == (ASLEEP, WAKING)
    assert change.reason == "ScalingFromZero"
    assert "3 held" in change.message
    assert pin(b, p) == 1
    assert step(b, p, Signals(Demand(held=3), 0), 2.0, NOW) is None  # still starting
    change = step(b, p, Signals(Demand(held=3), 1), 3.0, NOW)
    assert change is not None
    assert change.after == AWAKE
    assert pin(b, p) is None


def test_demand_unknown_never_wakes_and_never_sleeps() -> None:
    b = to_zero()
    asleep = Power(ASLEEP, NOW)
    assert step(b, asleep, Signals(None, 0), 0.0, NOW) is None
    assert asleep.state == ASLEEP
    awake = Power(AWAKE, NOW)
    for t in range(0, 1000, 10):
        assert step(b, awake, Signals(None, 1), float(t), NOW) is None
    assert awake.state == AWAKE


def test_idle_for_idle_after_seconds_then_confirmed_goes_to_zero() -> None:
    b, p = to_zero(), Power(AWAKE, NOW)
    assert step(b, p, idle(), 0.0, NOW) is None  # quiet from now
    assert step(b, p, idle(), 59.0, NOW) is None
    assert step(b, p, idle(), 60.0, NOW) is None  # first confirmation
    assert step(b, p, idle(), 60.0 + CONFIRM_SECONDS - 0.1, NOW) is None
    change = step(b, p, idle(), 60.0 + CONFIRM_SECONDS, NOW)
    assert change is not None
    assert (change.after, change.reason) == (ASLEEP, "ScaledToZero")
    assert pin(b, p) == 0


def test_any_request_between_the_two_confirmations_keeps_it_up() -> None:
    b, p = to_zero(), Power(AWAKE, NOW)
    step(b, p, idle(), 0.0, NOW)
    step(b, p, idle(), 61.0, NOW)  # confirmed once
    for demand in (Demand(new=1), Demand(in_flight=1), Demand(held=1)):
        assert step(b, p, Signals(demand, 1), 62.0, NOW) is None
        assert (p.quiet_since, p.confirmed_at) == (None, None)
    # the idle time starts again from the last request
    step(b, p, idle(), 63.0, NOW)
    assert step(b, p, idle(), 63.0 + 59, NOW) is None
    assert p.state == AWAKE


def test_an_unread_gateway_between_confirmations_cancels_the_confirmation() -> None:
    b, p = to_zero(), Power(AWAKE, NOW)
    step(b, p, idle(), 0.0, NOW)
    step(b, p, idle(), 60.0, NOW)
    assert step(b, p, Signals(None, 1), 61.0, NOW) is None
    assert p.confirmed_at is None
    assert step(b, p, idle(), 60.0 + CONFIRM_SECONDS, NOW) is None  # confirms again first
    assert step(b, p, idle(), 60.0 + 2 * CONFIRM_SECONDS, NOW) is not None


def test_a_standby_warms_after_activate_after_seconds_of_trouble_above() -> None:
    b = standby(activateAfterSeconds=30, cooldownSeconds=100)
    p = Power(COLD, NOW)
    down = Signals(Demand(), 0, above_down=True)
    assert step(b, p, down, 0.0, NOW) is None
    assert step(b, p, Signals(Demand(), 0), 10.0, NOW) is None  # recovered: the clock restarts
    assert step(b, p, down, 20.0, NOW) is None
    assert step(b, p, down, 49.0, NOW) is None
    change = step(b, p, down, 50.0, NOW)
    assert change is not None
    assert change.after == WARMING
    assert change.warning
    assert pin(b, p) == 2  # its replicas
    change = step(b, p, Signals(Demand(), 1, above_down=True), 51.0, NOW)
    assert change is not None
    assert change.after == ACTIVE
    assert pin(b, p) is None


def test_a_standby_cools_down_and_returns_to_active_if_the_tiers_above_fail_again() -> None:
    b = standby(activateAfterSeconds=0, cooldownSeconds=100)
    p = Power(ACTIVE, NOW)
    healthy = Signals(Demand(), 2)
    change = step(b, p, healthy, 0.0, NOW)
    assert change is not None
    assert change.after == COOLING
    assert step(b, p, healthy, 50.0, NOW) is None
    change = step(b, p, Signals(Demand(), 2, above_down=True), 60.0, NOW)
    assert change is not None
    assert change.after == ACTIVE
    step(b, p, healthy, 70.0, NOW)  # cooling again, from 70
    assert step(b, p, healthy, 169.0, NOW) is None
    change = step(b, p, healthy, 170.0, NOW)
    assert change is not None
    assert (change.after, change.reason) == (COLD, "StandbyCold")
    assert pin(b, p) == 0


def test_state_on_first_sight_comes_from_the_children() -> None:
    b = to_zero()
    name = "chat-primary"
    dep = ("Deployment", name)
    hpa = ("HorizontalPodAutoscaler", name)

    def child(kind: str, spec_replicas: int | None = None, ready: int = 0) -> Child:
        return Child(kind, name, "h", "u", ready_replicas=ready, spec_replicas=spec_replicas)

    assert infer(b, name, {}, None, NOW).state == ASLEEP
    assert infer(b, name, {dep: child("Deployment", 0)}, None, NOW).state == ASLEEP
    assert infer(b, name, {dep: child("Deployment", 1)}, None, NOW).state == WAKING
    both = {dep: child("Deployment", None, 1), hpa: child("HorizontalPodAutoscaler")}
    assert infer(b, name, both, None, NOW).state == AWAKE
    shown = BackendStatus(
        name="primary", engine="vllm", scaled_to_zero=True, scaled_to_zero_since="then"
    )
    assert infer(b, name, {}, shown, NOW).since == "then"  # a restart keeps the time
    s = standby()
    assert infer(s, name, {}, None, NOW).state == COLD
    assert infer(s, name, {dep: child("Deployment", 2)}, None, NOW).state == WARMING
    assert infer(s, name, {dep: child("Deployment", 2, ready=1)}, None, NOW).state == ACTIVE
    cold = BackendStatus(
        name="b",
        engine="vllm",
        standby=StandbyStatus(state=StandbyState.COLD, since="x", reason="cooled down"),
    )
    again = infer(s, name, {}, cold, NOW)
    assert (again.since, again.reason) == ("x", "cooled down")  # a restart rewrites nothing
    assert infer(s, name, {dep: child("Deployment", 2)}, cold, NOW).since == NOW
    # Cooling looks like Active from the children: the status says which, and since when
    long_ago = "2000-01-01T00:00:00Z"
    cooling = BackendStatus(
        name="b", engine="vllm", standby=StandbyStatus(state=StandbyState.COOLING, since=long_ago)
    )
    up = {dep: child("Deployment", 2, ready=1)}
    power = infer(s, name, up, cooling, NOW)
    assert (power.state, power.since) == (COOLING, long_ago)
    change = step(s, power, Signals(Demand(), 1), time.monotonic(), NOW)
    assert change is not None
    assert change.after == COLD


def test_rendering_follows_the_pins() -> None:
    svc = make_llmservice(vllm(scaling=ZERO), uid="u")
    kinds = lambda objs: {(o["kind"], o.get("spec", {}).get("replicas")) for o in objs}  # noqa: E731
    asleep = render.objects(svc, {}, scale=Scale({"primary": 0}))
    assert ("Deployment", 0) in kinds(asleep)
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in asleep}
    waking = render.objects(svc, {}, scale=Scale({"primary": 1}))
    assert ("Deployment", 1) in kinds(waking)
    awake = render.objects(svc, {}, scale=Scale())
    hpa = next(o for o in awake if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 1  # an HPA cannot scale from 0
    dep = next(o for o in awake if o["kind"] == "Deployment")
    assert "replicas" not in dep["spec"]
    # without a decision (ballast render, a first reconcile): at 0
    assert render.objects(svc, {}) == asleep
    routes = next(o for o in asleep if o["kind"] == "ConfigMap")
    assert '"hold":{"maxPending":100,"timeoutSeconds":600}' in routes["data"]["routes.json"]


def test_powers_follow_the_spec() -> None:
    svc = make_llmservice(vllm(scaling=ZERO), external(), uid="u")
    powers: dict[str, Power] = {}
    powers_for(svc, powers, {}, {}, NOW)
    assert list(powers) == ["primary"]
    assert powers["primary"].state == ASLEEP
    assert scale_of(svc, powers) == Scale({"primary": 0})
    plain = make_llmservice(vllm(scaling={"maxReplicas": 2}), external(), uid="u")
    powers_for(plain, powers, {}, {}, NOW)
    assert powers == {}


def test_gateway_urls_from_endpoint_slices() -> None:
    slices = [
        {
            "ports": [{"name": "metrics", "port": 9091}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {"addresses": ["fd00::3"]},
            ],
        },
        {"ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["10.0.0.9"]}]},
    ]
    assert gateway_urls(slices) == [
        "http://10.0.0.1:9091/internal/demand",
        "http://[fd00::3]:9091/internal/demand",
    ]


def test_merge_sums_gateways_and_counts_requests_between_rounds() -> None:
    def report(gw: str, started: float, requests: int, held: int = 0, open_: bool = False) -> Any:
        b = BackendDemand(
            namespace="ai", service="chat", backend="gpu", held=held, requests=requests,
            circuit_open=open_,
        )  # fmt: skip
        return DemandReport(gateway=gw, started=started, backends=[b])

    key = ("ai", "chat", "gpu")
    demand, opened, counters = merge([report("a", 1, 10), report("b", 1, 5, held=2)], {})
    assert demand[key] == Demand(held=2, in_flight=0, new=0)  # first sight: no new requests
    demand, opened, counters = merge([report("a", 1, 12), report("b", 1, 5)], counters)
    assert demand[key] == Demand(held=0, in_flight=0, new=2)
    assert not opened
    # gateway a restarted (new start time): its counter starts again, nothing is lost or faked
    demand, opened, counters = merge([report("a", 2, 1, open_=True), report("b", 1, 5)], counters)
    assert demand[key].new == 0
    assert opened == {key}
    round_ = Round(demand, opened, complete=False)
    assert round_.of(("ai", "chat", "other")) is None  # unknown, not "no demand"
    assert Round(complete=True).of(key) == Demand()

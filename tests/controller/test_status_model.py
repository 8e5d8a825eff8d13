"""Status from what the operator knows: phase, conditions and their transition times."""

from __future__ import annotations

from ballast.api import LLMServiceStatus, SpecError, parse_llmservice
from ballast.api.resource import Problem
from ballast.controller.health import BackendHealth, ServiceHealth
from ballast.controller.status import observed, rejected
from tests.factories import external, make_llmservice, vllm

ENDPOINT = "http://gw/v1"


def health(**backends: BackendHealth) -> ServiceHealth:
    return ServiceHealth(uid="u", backends=dict(backends))


def conditions(status: LLMServiceStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_all_backends_in_route_is_ready() -> None:
    svc = make_llmservice(vllm(), external())
    up = BackendHealth(healthy=True, ever_healthy=True)
    status = observed(svc, health(primary=up, cloud=up), 3, ENDPOINT, now="t1")
    assert (status.phase, status.backends_in_route, status.observed_generation) == (
        "Ready",
        "2/2",
        3,
    )
    assert conditions(status) == {
        "Ready": ("True", "AllBackendsInRoute"),
        "Available": ("True", "BackendsInRoute"),
        "Progressing": ("False", "Reconciled"),
        "Degraded": ("False", "AllBackendsHealthy"),
    }
    assert all(
        c.observed_generation == 3 and c.last_transition_time == "t1" for c in status.conditions
    )


def test_a_failing_backend_degrades_but_the_service_stays_available() -> None:
    svc = make_llmservice(vllm(), external())
    down = BackendHealth(ever_healthy=True, reason="ProbeFailed", message="HTTP 503")
    status = observed(
        svc, health(primary=down, cloud=BackendHealth(healthy=True, ever_healthy=True)), 1, ENDPOINT
    )
    assert status.phase == "Degraded"
    assert conditions(status)["Degraded"] == ("True", "BackendsUnhealthy")
    assert conditions(status)["Available"][0] == "True"
    assert status.backends[0].message == "HTTP 503"
    assert "primary: HTTP 503" in (status.condition("Ready") or status.conditions[0]).message


def test_backends_still_starting_are_progressing_not_degraded() -> None:
    svc = make_llmservice(vllm())
    status = observed(
        svc, health(primary=BackendHealth(probed=True, reason="NoReadyReplicas")), 1, ENDPOINT
    )
    assert status.phase == "Progressing"
    assert conditions(status)["Progressing"] == ("True", "BackendsStarting")
    assert conditions(status)["Available"] == ("False", "NoBackendInRoute")


def test_a_missing_secret_is_the_ready_reason() -> None:
    svc = make_llmservice(vllm(), external())
    secret = BackendHealth(
        probed=True, reason="SecretNotFound", message="Secret llm-keys not found"
    )
    up = BackendHealth(healthy=True, ever_healthy=True)
    status = observed(svc, health(primary=up, cloud=secret), 1, ENDPOINT)
    assert conditions(status)["Ready"] == ("False", "SecretNotFound")
    assert status.phase == "Degraded"


def test_transition_times_move_only_when_a_condition_status_does() -> None:
    svc = make_llmservice(vllm())
    up = health(primary=BackendHealth(healthy=True, ever_healthy=True))
    first = observed(svc, up, 1, ENDPOINT, now="t1")
    same = observed(svc, up, 1, ENDPOINT, previous=first, now="t2")
    assert same == first
    down = health(primary=BackendHealth(ever_healthy=True, reason="ProbeFailed"))
    changed = observed(svc, down, 1, ENDPOINT, previous=first, now="t3")
    times = {c.type: c.last_transition_time for c in changed.conditions}
    assert times == {"Ready": "t3", "Available": "t3", "Progressing": "t1", "Degraded": "t3"}


def test_a_rejected_spec_fails_with_the_rule_reason_and_problems() -> None:
    error = SpecError([Problem("spec.backends[1].name", "duplicate", "DuplicateBackendName")])
    status = rejected(error, 4, ENDPOINT, None, now="t")
    assert status.phase == "Failed"
    assert conditions(status)["Ready"] == ("False", "DuplicateBackendName")
    assert "spec.backends[1].name: duplicate" in status.conditions[0].message
    assert status.observed_generation == 4


def test_status_json_is_camel_case_without_nulls() -> None:
    svc = parse_llmservice({"metadata": {"name": "x"}, "spec": {"backends": [vllm()]}})
    data = observed(svc, health(), 1, ENDPOINT, now="t").to_json()
    assert set(data) == {
        "observedGeneration",
        "phase",
        "servedModelName",
        "endpoint",
        "backendsInRoute",
        "conditions",
        "backends",
    }


def test_in_route_is_where_the_gateway_sends_requests_including_try_all() -> None:
    down = BackendHealth(ever_healthy=True, reason="ProbeFailed", message="HTTP 503")
    up = BackendHealth(healthy=True, ever_healthy=True)

    def routed(policy: str, **backends: BackendHealth) -> tuple[list[bool], str]:
        svc = make_llmservice(vllm(), external(), fallback={"whenAllUnhealthy": policy})
        status = observed(svc, health(**backends), 1, ENDPOINT)
        return [b.in_route for b in status.backends], status.backends_in_route

    # One healthy backend: only it takes requests, under either policy.
    assert routed("tryAll", primary=down, cloud=up) == ([False, True], "1/2")
    # None healthy: tryAll sends requests to every backend, reject to none.
    assert routed("tryAll", primary=down, cloud=down) == ([True, True], "2/2")
    assert routed("reject", primary=down, cloud=down) == ([False, False], "0/2")

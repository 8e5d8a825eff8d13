"""Hysteresis: how many probe results move a backend into or out of the route."""

from __future__ import annotations

from ballast.api import LLMServiceStatus, parse_llmservice
from ballast.controller.health import BackendHealth, ServiceHealth, readiness
from ballast.controller.probes import ProbeResult
from ballast.controller.services import entry_from
from tests.factories import external, llmservice_obj, make_llmservice, vllm

OK = ProbeResult(True)
BAD = ProbeResult(False, "ProbeFailed", "health check answered HTTP 503")


def test_a_backend_enters_after_healthy_after_successes() -> None:
    h = BackendHealth()
    assert h.observe(OK, healthy_after=2, unhealthy_after=3) is None
    assert not h.healthy
    assert h.observe(OK, healthy_after=2, unhealthy_after=3) == "in"
    assert h.healthy
    assert h.ever_healthy


def test_a_backend_leaves_after_unhealthy_after_failures_in_a_row() -> None:
    h = BackendHealth(healthy=True, ever_healthy=True)
    assert h.observe(BAD, 2, 3) is None
    assert h.observe(OK, 2, 3) is None  # a success resets the count
    assert [h.observe(BAD, 2, 3) for _ in range(3)] == [None, None, "out"]
    assert not h.healthy
    assert not h.starting  # it was healthy before: failing, not starting


def test_good_probes_below_the_threshold_do_not_change_what_status_shows() -> None:
    h = BackendHealth()
    before = h.signature()
    h.observe(OK, healthy_after=3, unhealthy_after=3)
    assert h.signature() == before


def test_no_ready_replica_is_a_failed_observation_for_self_hosted_only() -> None:
    assert readiness(make_llmservice(vllm()).spec.backends[0], 0) is not None
    assert readiness(make_llmservice(vllm()).spec.backends[0], 1) is None
    assert readiness(make_llmservice(external()).spec.backends[0], 0) is None


def test_state_starts_from_the_stored_status_so_a_restart_does_not_flap() -> None:
    obj = llmservice_obj(vllm(), external())
    obj["status"] = {
        "backends": [
            {
                "name": "primary",
                "engine": "vllm",
                "replicas": 2,
                "readyReplicas": 2,
                "healthy": True,
                "inRoute": True,
            },
            {
                "name": "cloud",
                "engine": "openai",
                "healthy": False,
                "inRoute": False,
                "message": "down",
            },
        ]
    }
    state = ServiceHealth.start(parse_llmservice(obj))
    assert state.route() == {"primary": True, "cloud": False}
    assert (state.backends["primary"].replicas, state.backends["cloud"].message) == (2, "down")


def test_the_index_keeps_status_as_json_and_health_still_starts_from_it() -> None:
    """The controller's index parses the spec only; the stored status is read back on use."""
    obj = llmservice_obj(vllm(), external(), uid="u-1")
    obj["status"] = {
        "phase": "Degraded",
        "backends": [
            {"name": "primary", "engine": "vllm", "replicas": 1, "readyReplicas": 1,
             "healthy": True, "inRoute": True},
            {"name": "cloud", "engine": "openai", "healthy": False, "inRoute": False,
             "message": "down"},
        ],
    }  # fmt: skip
    entry = entry_from(obj)
    assert entry is not None
    assert entry.svc is not None
    assert entry.svc.status is None  # no parsed copy of the status in the index
    assert entry.status == obj["status"]  # the stored status, decoded as it was
    assert entry.status is not entry.status  # a fresh dict each time: callers cannot edit it
    stored = LLMServiceStatus.model_validate(entry.status)
    state = ServiceHealth.start(entry.svc, stored)
    assert state.route() == {"primary": True, "cloud": False}
    assert state.backends["cloud"].message == "down"
    # Without the stored status a backend starts unknown (probed at once), out of the route.
    assert ServiceHealth.start(entry.svc).route() == {"primary": False, "cloud": False}


def test_an_entry_without_status_has_none() -> None:
    entry = entry_from(llmservice_obj(vllm()))
    assert entry is not None
    assert entry.status is None
    assert entry.status_json is None


def test_sync_follows_added_and_removed_backends() -> None:
    state = ServiceHealth.start(make_llmservice(vllm()))
    state.sync(make_llmservice(vllm("other")), now=5.0)
    assert set(state.backends) == {"other"}
    assert state.due == {"other": 5.0}

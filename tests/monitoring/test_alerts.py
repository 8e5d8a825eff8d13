"""The shipped alerts, evaluated by Prometheus's own rule engine (`promtool test rules`) over
synthetic series: each fires when its condition has held for its `for`, with the labels and
summary an on-call engineer reads, and stays silent on a healthy system and on a blip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .queries import render, rule_groups, run_promtool_tests

pytestmark = pytest.mark.promtool

GW = "ballast_gateway_requests_total"


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def alert(name: str, at: str, *firing: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(firing)}


def fired(labels: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": labels}


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    return rule_groups(render())  # type: ignore[arg-type]


def annotations_of(groups: list[dict[str, Any]], name: str) -> dict[str, str]:
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == name]
    return dict(rule["annotations"])


def expect(
    groups: list[dict[str, Any]], name: str, labels: dict[str, str], summary: str
) -> dict[str, Any]:
    """An expected alert with every annotation the rule has (promtool compares them all)."""
    notes = annotations_of(groups, name) | {"summary": summary}
    return {"exp_labels": labels, "exp_annotations": notes}


def test_backend_out_of_route_and_model_unavailable(
    tmp_path: Path, groups: list[dict[str, Any]]
) -> None:
    ns = {"namespace": "ai", "service": "chat"}
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            # primary leaves the route at minute 2 and stays out; cloud blips out for 2 minutes
            series("ballast_backend_in_route", "1 1 0x10", **ns, backend="primary"),
            series("ballast_backend_in_route", "1 0 0 1x10", **ns, backend="cloud"),
            # nothing healthy from minute 3
            series("ballast_backends_healthy", "2 2 1 0x10", **ns),
        ],
        "alert_rule_test": [
            alert("BallastBackendOutOfRoute", "5m"),  # out for 3 minutes: pending
            alert("BallastBackendOutOfRoute", "8m", expect(groups, "BallastBackendOutOfRoute",
                  {"severity": "warning", **ns, "backend": "primary"},
                  "ai/chat: backend primary has been out of the route for 5 minutes")),
            alert("BallastModelUnavailable", "4m"),
            alert("BallastModelUnavailable", "6m", expect(groups, "BallastModelUnavailable",
                  {"severity": "critical", **ns}, "ai/chat: no backend is healthy")),
        ],
    }]}  # fmt: skip
    out = run_promtool_tests(tmp_path, groups, tests)
    assert "SUCCESS" in out


def test_gateway_error_fallback_and_ttft_alerts(
    tmp_path: Path, groups: list[dict[str, Any]]
) -> None:
    m = {"model": "chat"}
    # 10 requests a minute: from minute 10 one in five fails (unavailable) and one in two
    # falls back; client errors at a high rate never count as errors.
    ok = "0+600x10 6000+480x20"
    failing = "0x10 0+120x20"
    client = "0+300x30"
    ttft_fast = "0+60x30"  # 60 streams a minute under 1 s; from minute 10, 60 more over 20 s
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series(GW, ok, **m, backend="primary", outcome="ok"),
            series(GW, failing, **m, backend="primary", outcome="unavailable"),
            series(GW, client, **m, backend="primary", outcome="client_error"),
            series("ballast_gateway_fallbacks_total", "0x10 0+300x20", **m),
            # TTFT buckets: fast streams under 1 s; slow ones above 20 s
            *[series("ballast_gateway_time_to_first_token_seconds_bucket", ttft_fast, **m,
                     backend="primary", le=le) for le in ("1", "10", "20")],
            *[series("ballast_gateway_time_to_first_token_seconds_bucket",
                     "0+60x10 600+120x20", **m, backend="primary", le=le) for le in ("30", "+Inf")],
        ],
        "alert_rule_test": [
            alert("BallastGatewayErrorRatioHigh", "9m"),
            alert("BallastGatewayErrorRatioHigh", "13m"),  # pending (for: 5m)
            alert("BallastGatewayErrorRatioHigh", "20m", fired({"severity": "critical", **m})),
            alert("BallastGatewayFallbackRatioHigh", "14m"),
            alert("BallastGatewayFallbackRatioHigh", "25m", fired({"severity": "warning", **m})),
            alert("BallastGatewayTimeToFirstTokenHigh", "9m"),
            alert("BallastGatewayTimeToFirstTokenHigh", "25m", fired({"severity": "warning", **m})),
        ],
    }]}  # fmt: skip
    # promtool compares every annotation, and these summaries print the ratio ($value): the
    # rules are evaluated here without annotations (their templates are checked elsewhere).
    bare = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                            for r in g["rules"]]} for g in groups]  # fmt: skip
    out = run_promtool_tests(tmp_path, bare, tests)
    assert "SUCCESS" in out


def test_operator_reconcile_failing(tmp_path: Path, groups: list[dict[str, Any]]) -> None:
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("ballast_reconciles_total", "0+5x30", result="success"),
            # one failed reconcile at minute 3 (a blip), then failing from minute 10 on
            series("ballast_reconciles_total", "0 0 0 1x7 1+2x20", result="error"),
        ],
        "alert_rule_test": [
            alert("BallastOperatorReconcileFailing", "9m"),
            alert("BallastOperatorReconcileFailing", "25m", expect(groups,
                  "BallastOperatorReconcileFailing", {"severity": "warning"},
                  "The Ballast operator keeps failing to reconcile LLMServices")),
        ],
    }]}  # fmt: skip
    out = run_promtool_tests(tmp_path, groups, tests)
    assert "SUCCESS" in out

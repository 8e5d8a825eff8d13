"""The shipped dashboard and alerts, checked against the product without running it:
every query parses, names only metrics the gateway's and operator's registries define,
reads counters and histograms through rate() (never a lifetime average), and every alert
has a runbook in docs/metrics.md. (That the metrics are really exported after traffic is
checked over a real run in tests/realmodel; the alerts are evaluated in test_alerts.py.)"""

from __future__ import annotations

import json
import re

import pytest

from ballast.controller.metrics import Metrics as OperatorMetrics
from ballast.gateway.metrics import Metrics as GatewayMetrics

from .queries import (
    CHART,
    REPO,
    alert_queries,
    dashboard,
    exposed_names,
    panel_queries,
    render,
    rule_groups,
    selectors,
    variable_queries,
)

EXPECTED_ALERTS = {
    "BallastBackendOutOfRoute",
    "BallastModelUnavailable",
    "BallastGatewayErrorRatioHigh",
    "BallastGatewayFallbackRatioHigh",
    "BallastGatewayTimeToFirstTokenHigh",
    "BallastOperatorReconcileFailing",
}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, object]]:
    return render()  # type: ignore[return-value]


def test_both_are_off_by_default_and_rendered_when_asked(objects: list[dict[str, object]]) -> None:
    import subprocess

    from .queries import helm_binary

    out = subprocess.run(
        [str(helm_binary()), "template", "ballast", str(CHART)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "PrometheusRule" not in out.stdout
    assert "grafana_dashboard" not in out.stdout
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "ballast.json" in o["data"]]  # type: ignore[operator]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # type: ignore[index]
    # the file in the chart is what the ConfigMap carries, byte for byte
    shipped = (CHART / "files" / "grafana-dashboard.json").read_text(encoding="utf-8")
    assert cm["data"]["ballast.json"] == shipped.rstrip("\n")  # type: ignore[index]


def test_every_query_parses_and_names_only_metrics_that_exist(
    objects: list[dict[str, object]],
) -> None:
    exported = exposed_names(GatewayMetrics().registry) | exposed_names(OperatorMetrics().registry)
    board = dashboard(objects)  # type: ignore[arg-type]
    queries = panel_queries(board) + alert_queries(rule_groups(objects))  # type: ignore[arg-type]
    assert len(queries) > 20
    for q in [*queries, *variable_queries(board)]:
        for name, ranged in selectors(q.expr):
            assert name in exported, f"{q.where}: {name} is not a metric Ballast exports"
            if exported[name] in ("counter", "histogram") and q in queries:
                assert ranged, f"{q.where}: {name} read without rate() (a lifetime total)"


def test_the_dashboard_covers_what_an_operator_asks_and_filters_by_model_and_backend(
    objects: list[dict[str, object]],
) -> None:
    board = dashboard(objects)  # type: ignore[arg-type]
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "model", "backend"} <= names
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("requests per second", "error ratio", "fallback ratio", "latency",
                  "time to first token", "tokens per second", "in flight", "circuit",
                  "backends in route", "reconciles"):  # fmt: skip
        assert topic in titles, topic
    raw = json.dumps(board)
    for expr in re.findall(r'"expr": "([^"\\]*(?:\\.[^"\\]*)*)"', raw):
        if "ballast_gateway_" in expr and "in_flight" not in expr:
            assert "$model" in expr, expr  # every gateway panel follows the model variable
    quantiles = [t["expr"] for p in board["panels"] for t in p.get("targets", [])
                 if "histogram_quantile" in t["expr"]]  # fmt: skip
    assert {q.split(",")[0] for q in quantiles} >= {
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    }


def test_the_alerts_are_the_six_with_runbooks_and_thresholds_from_values() -> None:
    groups = rule_groups(render("monitoring.prometheusRule.thresholds.ttftP95Seconds=42"))  # type: ignore[arg-type]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(rules) == EXPECTED_ALERTS
    assert rules["BallastGatewayTimeToFirstTokenHigh"]["expr"].endswith("> 42")
    assert rules["BallastGatewayErrorRatioHigh"]["expr"].endswith("> 0.05")
    assert rules["BallastBackendOutOfRoute"]["for"] == "5m"
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}  # fmt: skip
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical")
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/metrics.md#{name.lower()}", runbook
        assert name.lower() in anchors, f"docs/metrics.md has no section {name}"
        assert "{{ $labels." in rule["annotations"]["summary"] or "operator" in name.lower()

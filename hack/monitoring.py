"""Ballast's Grafana dashboard and Prometheus alerting rules, as data.

hack/chart_generate.py writes them into the chart (``make generate``; ``make verify`` fails
when they are stale):

- charts/ballast/files/grafana-dashboard.json: the dashboard, shipped in a ConfigMap for
  Grafana's dashboard sidecar (``monitoring.grafanaDashboard.enabled``);
- charts/ballast/templates/prometheusrule.yaml: the alerts as a PrometheusRule
  (``monitoring.prometheusRule.enabled``), thresholds from the chart's values.

Every query uses ``rate()`` over a window (never a lifetime average) and the dashboard's
``model`` and ``backend`` variables. The tests parse every expression, check that every
metric it names is exported by a running gateway and operator, and evaluate the panels
and alerts with promtool (tests/monitoring, tests/realmodel).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

#: ``outcome`` values of ballast_gateway_requests_total that are the gateway's or a
#: backend's failure (not the client's: client_error, rejected, client_closed).
ERROR_OUTCOMES = "unavailable|timeout|upstream_error|bad_gateway|broken"

_SEL = 'model=~"$model", backend=~"$backend"'
_RATE = "[$__rate_interval]"


def _rate(metric: str, selector: str = _SEL, by: str = "model") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{_RATE}))"


def _quantile(q: float, metric: str, by: str = "model") -> str:
    return f"histogram_quantile({q}, {_rate(metric + '_bucket', by='le, ' + by)})"


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def _panel(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    unit: str,
    grid: tuple[int, int, int, int],
    **custom: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
        "targets": [_target(e, leg, chr(ord("A") + i)) for i, (e, leg) in enumerate(targets)],
    }


def _row(title: str, y: int) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (schema of Grafana 10/11)."""
    requests = "ballast_gateway_requests_total"
    errors = f'{_SEL}, outcome=~"{ERROR_OUTCOMES}"'
    panels = [
        _row("Gateway: traffic", 0),
        _panel(
            "Requests per second",
            "Client requests by model and the backend that answered (or was last tried).",
            [(_rate(requests, by="model, backend"), "{{model}} / {{backend}}")],
            "reqps",
            (0, 1, 8, 8),
        ),
        _panel(
            "Error ratio",
            f"Share of requests that ended in a gateway or backend failure ({ERROR_OUTCOMES});"
            " client errors (4xx passed through, rejected, client closed) are not counted.",
            [(f"{_rate(requests, errors)} / {_rate(requests)}", "{{model}}")],
            "percentunit",
            (8, 1, 8, 8),
        ),
        _panel(
            "Fallback ratio",
            "Attempts that moved to a less preferred tier, per request.",
            [
                (
                    _rate("ballast_gateway_fallbacks_total", 'model=~"$model"')
                    + " / "
                    + _rate(requests),
                    "{{model}}",
                )
            ],
            "percentunit",
            (16, 1, 8, 8),
        ),
        _row("Gateway: latency", 9),
        _panel(
            "Request latency",
            "Request to the end of the answer (a whole stream included), by quantile.",
            [
                (
                    _quantile(q, "ballast_gateway_request_duration_seconds"),
                    f"p{int(q * 100)} {{{{model}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
            (0, 10, 8, 8),
        ),
        _panel(
            "Time to first token (streams)",
            "Request to the first event carrying generated text, streamed requests only.",
            [
                (
                    _quantile(q, "ballast_gateway_time_to_first_token_seconds"),
                    f"p{int(q * 100)} {{{{model}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
            (8, 10, 8, 8),
        ),
        _panel(
            "Time per output token (streams)",
            "After the first token, seconds per further completion token (streams that asked"
            " for usage).",
            [
                (
                    _quantile(q, "ballast_gateway_time_per_output_token_seconds"),
                    f"p{int(q * 100)} {{{{model}}}}",
                )
                for q in (0.5, 0.95)
            ],
            "s",
            (16, 10, 8, 8),
        ),
        _row("Gateway: load", 18),
        _panel(
            "Tokens per second",
            "Prompt and completion tokens from the answers' usage, by model.",
            [(_rate("ballast_gateway_tokens_total", by="model, kind"), "{{model}} {{kind}}")],
            "short",
            (0, 19, 8, 8),
        ),
        _panel(
            "In flight",
            "Requests being answered, summed over the gateway replicas.",
            [("sum(ballast_gateway_in_flight)", "in flight")],
            "short",
            (8, 19, 8, 8),
        ),
        _panel(
            "Circuit breakers open",
            "1 while a backend's circuit breaker is open or half-open (in any gateway replica).",
            [
                (
                    'max by (model, backend) (ballast_gateway_circuit_open{model=~"$model",'
                    ' backend=~"$backend"})',
                    "{{model}} / {{backend}}",
                )
            ],
            "short",
            (16, 19, 8, 8),
        ),
        _row("Operator", 27),
        _panel(
            "Backends in route",
            "Backends the gateway sends requests to, and those passing their probes, per"
            " LLMService.",
            [
                (
                    "sum by (namespace, service) (ballast_backends_in_route)",
                    "{{namespace}}/{{service}} in route",
                ),
                (
                    "sum by (namespace, service) (ballast_backends_healthy)",
                    "{{namespace}}/{{service}} healthy",
                ),
            ],
            "short",
            (0, 28, 8, 8),
        ),
        _panel(
            "Backend in route",
            "1 while a backend of an LLMService is in the gateway's route, 0 while it is out.",
            [
                (
                    'min by (namespace, service, backend) (ballast_backend_in_route{backend=~"$backend"})',
                    "{{namespace}}/{{service}} {{backend}}",
                )
            ],
            "short",
            (8, 28, 8, 8),
        ),
        _panel(
            "Reconciles",
            "LLMService reconciles by result, and reconciles that failed with an API error"
            " (retried with backoff).",
            [
                ("sum by (result) (rate(ballast_reconciles_total" + _RATE + "))", "{{result}}"),
                ("sum(rate(ballast_reconcile_errors_total" + _RATE + "))", "API errors"),
            ],
            "ops",
            (16, 28, 8, 8),
        ),
    ]
    return {
        "title": "Ballast",
        "uid": "ballast-overview",
        "description": "Ballast's gateway and operator: traffic, latency, tokens, failover.",
        "tags": ["ballast", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("model", "Model", "label_values(ballast_gateway_requests_total, model)"),
                _variable(
                    "backend",
                    "Backend",
                    'label_values(ballast_gateway_requests_total{model=~"$model"}, backend)',
                ),
            ]
        },
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


#: Chart values the rules read (monitoring.prometheusRule.thresholds.<name>).
THRESHOLDS = {
    "errorRatio": 0.05,
    "fallbackRatio": 0.2,
    "ttftP95Seconds": 10,
}


def _threshold(name: str) -> str:
    return f"@@{name}@@"


def rules() -> list[dict[str, Any]]:
    """The rule groups; ``@@name@@`` stands for the chart value of threshold ``name``."""
    requests = "ballast_gateway_requests_total"

    def ratio(numerator: str, selector: str = "") -> str:
        return (
            f"sum by (model) (rate({numerator}{selector}[5m]))"
            f" / sum by (model) (rate({requests}[5m]))"
        )

    gateway = [
        {
            "alert": "BallastGatewayErrorRatioHigh",
            "expr": ratio(requests, f'{{outcome=~"{ERROR_OUTCOMES}"}}')
            + f" > {_threshold('errorRatio')}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Model {{ $labels.model }}: {{ $value | humanizePercentage }} of "
                "requests fail",
                "description": "More requests than the threshold ended in a gateway or backend "
                "failure (unavailable, timeout, upstream error, bad gateway, broken stream) over "
                "5 minutes.",
                "runbook": "docs/metrics.md#ballastgatewayerrorratiohigh",
            },
        },
        {
            "alert": "BallastGatewayFallbackRatioHigh",
            "expr": ratio("ballast_gateway_fallbacks_total") + f" > {_threshold('fallbackRatio')}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Model {{ $labels.model }}: {{ $value | humanizePercentage }} of "
                "requests fall back to a less preferred tier",
                "description": "The preferred backends fail often enough that the gateway moves "
                "requests to the fallback tier (which may cost per token).",
                "runbook": "docs/metrics.md#ballastgatewayfallbackratiohigh",
            },
        },
        {
            "alert": "BallastGatewayTimeToFirstTokenHigh",
            "expr": "histogram_quantile(0.95, sum by (model, le) "
            "(rate(ballast_gateway_time_to_first_token_seconds_bucket[5m])))"
            f" > {_threshold('ttftP95Seconds')}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Model {{ $labels.model }}: p95 time to first token is "
                "{{ $value | humanizeDuration }}",
                "description": "Streamed requests wait longer than the threshold for their "
                "first token (p95 over 5 minutes).",
                "runbook": "docs/metrics.md#ballastgatewaytimetofirsttokenhigh",
            },
        },
    ]
    operator = [
        {
            "alert": "BallastBackendOutOfRoute",
            "expr": "ballast_backend_in_route == 0",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.namespace }}/{{ $labels.service }}: backend "
                "{{ $labels.backend }} has been out of the route for 5 minutes",
                "description": "The operator's probes find the backend unhealthy, so the "
                "gateway does not send it requests.",
                "runbook": "docs/metrics.md#ballastbackendoutofroute",
            },
        },
        {
            "alert": "BallastModelUnavailable",
            "expr": "ballast_backends_healthy == 0",
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.namespace }}/{{ $labels.service }}: no backend is healthy",
                "description": "Every backend of the LLMService fails its probes; requests "
                "fail or, under whenAllUnhealthy: tryAll, go to backends that failed.",
                "runbook": "docs/metrics.md#ballastmodelunavailable",
            },
        },
        {
            "alert": "BallastOperatorReconcileFailing",
            "expr": 'sum(rate(ballast_reconciles_total{result="error"}[5m])) > 0',
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The Ballast operator keeps failing to reconcile LLMServices",
                "description": "Reconciles end in errors (API errors are retried with "
                "backoff) for 10 minutes: changes to LLMServices are not applied.",
                "runbook": "docs/metrics.md#ballastoperatorreconcilefailing",
            },
        },
    ]
    return [
        {"name": "ballast-gateway", "rules": gateway},
        {"name": "ballast-operator", "rules": operator},
    ]


def rules_with(thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule groups with the thresholds filled in (what the chart renders)."""
    text = json.dumps(rules())
    text = re.sub(r"@@(\w+)@@", lambda m: str(thresholds[m.group(1)]), text)
    return list(json.loads(text))


_GO = re.compile(r"\{\{|\}\}")


def prometheusrule_template(header: str) -> str:
    """The chart's PrometheusRule template: Prometheus's own ``{{ }}`` escaped for Helm."""
    body = yaml.safe_dump({"groups": rules()}, sort_keys=False, width=1 << 16, allow_unicode=True)
    body = _GO.sub(lambda m: '{{ "{{" }}' if m.group() == "{{" else '{{ "}}" }}', body)
    body = re.sub(
        r"@@(\w+)@@",
        lambda m: "{{ .Values.monitoring.prometheusRule.thresholds." + m.group(1) + " }}",
        body,
    )
    spec = "\n".join("  " + line if line else line for line in body.splitlines())
    return (
        f"{{{{- /* {header} */ -}}}}\n"
        "{{- if .Values.monitoring.prometheusRule.enabled }}\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        '  name: {{ include "ballast.fullname" . }}\n'
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    {{- include "ballast.labels" . | nindent 4 }}\n'
        "    {{- with .Values.monitoring.prometheusRule.labels }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "spec:\n"
        f"{spec}\n"
        "{{- end }}\n"
    )

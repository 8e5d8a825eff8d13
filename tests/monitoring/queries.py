"""The dashboard and alert rules as the chart renders them, and what their PromQL names.

Shared by the static checks (tests/monitoring/test_static.py), the promtool evaluations of
the alerts (test_alerts.py) and of every panel over a real run (tests/realmodel).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import CollectorRegistry

from tests.cluster.tools import tools_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ballast"
#: The Grafana variables of the dashboard and what a test evaluates them as.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$backend": ".*"}


@dataclass(frozen=True)
class Query:
    where: str  # "panel <title> [A]" or "alert <name>"
    expr: str  # PromQL, Grafana variables replaced


def helm_binary() -> Path:
    return tools_dir() / "helm"


def render(*sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with the dashboard and the rules switched on."""
    args = [str(helm_binary()), "template", "ballast", str(CHART), "-n", "ballast-system",
            "--set", "monitoring.grafanaDashboard.enabled=true",
            "--set", "monitoring.prometheusRule.enabled=true"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def dashboard(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "ballast.json" in o.get("data", {})]
    return dict(json.loads(cm["data"]["ballast.json"]))


def rule_groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return list(rule["spec"]["groups"])


def grafana(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def panel_queries(board: dict[str, Any]) -> list[Query]:
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append(
                Query(f"panel {panel['title']!r} [{target['refId']}]", grafana(target["expr"]))
            )
    return out


def variable_queries(board: dict[str, Any]) -> list[Query]:
    """The metric selectors inside the variables' ``label_values(<selector>, label)``."""
    out = []
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"])
        assert m, var["definition"]
        out.append(Query(f"variable {var['name']}", grafana(m.group(1))))
    return out


def alert_queries(groups: list[dict[str, Any]]) -> list[Query]:
    return [Query(f"alert {r['alert']}", r["expr"]) for g in groups for r in g["rules"]]


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from (node.lhs, node.rhs)
    elif isinstance(node, promql_parser.Call):
        yield from node.args
    elif isinstance(node, promql_parser.AggregateExpr):
        yield node.expr
        if node.param is not None:
            yield node.param
    elif isinstance(
        node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)
    ):
        yield node.expr


def selectors(expr: str) -> list[tuple[str, bool]]:
    """Every metric the expression selects, with whether it is read through a range
    function (rate, increase, ...) rather than as an instant value."""
    found: list[tuple[str, bool]] = []

    def walk(node: Any, ranged: bool) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            found.append((node.name, ranged))
            return
        inner = ranged or isinstance(node, promql_parser.MatrixSelector)
        for child in _children(node):
            walk(child, inner)

    walk(promql_parser.parse(expr), False)
    return found


def exposed_names(registry: CollectorRegistry) -> dict[str, str]:
    """Every sample name a registry can expose, with its family's type."""
    out = {}
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
        }[family.type]
        for suffix in suffixes:
            out[family.name + suffix] = family.type
    return out


def scraped_names(text: str) -> set[str]:
    """The sample names of a Prometheus text exposition."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def promtool() -> Path:
    """The cached promtool (hack/promtool/build.sh builds it once: `make promtool-bin`)."""
    out = subprocess.run(
        [str(REPO / "hack" / "promtool" / "build.sh")], capture_output=True, text=True, timeout=1200
    )
    if out.returncode != 0:
        raise RuntimeError(f"hack/promtool/build.sh failed:\n{out.stderr}")
    path = Path(out.stdout.strip().splitlines()[-1])
    if not (path.is_file() and shutil.which(str(path))):
        raise RuntimeError(f"hack/promtool/build.sh printed {path}, which is not a program")
    return path


def run_promtool_tests(tmp: Path, groups: list[dict[str, Any]], tests: dict[str, Any]) -> str:
    """`promtool test rules` of ``tests`` against ``groups``; its output (fails the test when
    promtool does)."""
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    spec = tmp / "tests.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [rules.name], **tests}, sort_keys=False),
                    encoding="utf-8")  # fmt: skip
    out = subprocess.run(
        [str(promtool()), "test", "rules", spec.name],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout

"""Where the alert rules and dashboards live, and every PromQL query they contain.

Used by the static checks in ``tests/observability`` and reusable by anything that needs the
full list of queries (an integration test that runs them against a real Prometheus, say).

Example::

    >>> from spark_research.observability.catalog import all_queries, undefined_metrics
    >>> queries = all_queries()
    >>> any(source.startswith("rules/export.yml") for source, _ in queries)
    True
    >>> undefined_metrics(queries)
    []
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spark_research.config import PROJECT_ROOT
from spark_research.observability.promql import promql_metric_names

#: Capabilities that ship ``rules/<cap>.yml``, ``rules/<cap>_test.yml`` and ``dashboards/<cap>.json``.
CAPABILITIES: tuple[str, ...] = ("streams", "optimizer", "gates", "backtest", "export", "models", "risk")
RULES_DIR = PROJECT_ROOT / "rules"
DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"
#: Uid of the Prometheus data source as every panel and target references it.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = {"type": "prometheus", "uid": "${%s}" % DATASOURCE_VARIABLE}


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """Alert rule files ``rules/*.yml``, their ``*_test.yml`` unit tests excluded, sorted."""
    return sorted(p for p in rules_dir.glob("*.yml") if not p.stem.endswith("_test"))


def rule_test_file(rule_file: Path) -> Path:
    """The promtool unit-test file of a rule file: ``rules/x.yml`` -> ``rules/x_test.yml``."""
    return rule_file.with_name(f"{rule_file.stem}_test.yml")


def load_rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of every group in a Prometheus rule file, in file order."""
    doc = yaml.safe_load(path.read_text()) or {}
    return [rule for group in doc.get("groups", []) for rule in group.get("rules", [])]


def alert_names(path: Path) -> set[str]:
    """Names of the alerting rules in a rule file (one name may have several severities)."""
    return {rule["alert"] for rule in load_rules(path) if "alert" in rule}


@dataclass
class AlertTestCoverage:
    """Which cases a promtool test file covers for one alert."""

    firing: int = 0  #: ``alert_rule_test`` entries expecting at least one alert
    quiet: int = 0  #: entries expecting ``exp_alerts: []``
    series: list[str] = field(default_factory=list)  #: input series of the tests naming it


def alert_test_coverage(test_path: Path) -> dict[str, AlertTestCoverage]:
    """Firing and quiet cases per alert name in a ``promtool test rules`` file.

    Example::

        >>> cov = alert_test_coverage(RULES_DIR / "export_test.yml")
        >>> cov["ExportConcurrentHigh"].firing >= 1 and cov["ExportConcurrentHigh"].quiet >= 1
        True
    """
    doc = yaml.safe_load(test_path.read_text()) or {}
    coverage: dict[str, AlertTestCoverage] = {}
    for test in doc.get("tests", []):
        series = [s["series"] for s in test.get("input_series", [])]
        for case in test.get("alert_rule_test", []):
            cov = coverage.setdefault(case["alertname"], AlertTestCoverage())
            if case.get("exp_alerts"):
                cov.firing += 1
            else:
                cov.quiet += 1
            cov.series.extend(s for s in series if s not in cov.series)
    return coverage


def rule_queries(rules_dir: Path = RULES_DIR) -> list[tuple[str, str]]:
    """``(source, expr)`` of every alerting and recording rule; source is ``rules/x.yml:Name``."""
    out = []
    for path in rule_files(rules_dir):
        for rule in load_rules(path):
            name = rule.get("alert") or rule.get("record")
            out.append((f"rules/{path.name}:{name}", str(rule["expr"])))
    return out


def rule_test_series(rules_dir: Path = RULES_DIR) -> list[tuple[str, str]]:
    """``(source, series selector)`` of every ``input_series`` in the promtool test files."""
    out = []
    for path in sorted(rules_dir.glob("*_test.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for test in doc.get("tests", []):
            out.extend((f"rules/{path.name}:{test.get('name', '?')}", s["series"])
                       for s in test.get("input_series", []))
    return out


def dashboard_files(dashboards_dir: Path = DASHBOARDS_DIR) -> list[Path]:
    """Committed dashboards ``dashboards/*.json``, sorted."""
    return sorted(dashboards_dir.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """A dashboard JSON file as a dict."""
    return json.loads(path.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, panels nested in (collapsed) rows included; rows excluded."""
    out = []
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            out.extend(panel.get("panels") or [])
        else:
            out.append(panel)
    return out


def dashboard_queries(dashboard: dict[str, Any], source: str = "") -> list[tuple[str, str]]:
    """``(source, expr)`` of every PromQL target and query variable of one dashboard."""
    prefix = source or dashboard.get("uid", "?")
    out = [(f"{prefix}:{panel.get('title', '?')}", target["expr"])
           for panel in dashboard_panels(dashboard)
           for target in panel.get("targets") or [] if target.get("expr")]
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            query = var.get("query")
            expr = query.get("query") if isinstance(query, dict) else query
            if expr:
                out.append((f"{prefix}:${var.get('name')}", expr))
    return out


def all_queries(rules_dir: Path = RULES_DIR, dashboards_dir: Path = DASHBOARDS_DIR) -> list[tuple[str, str]]:
    """``(source, expr)`` of every PromQL expression in the rule files and the dashboards."""
    out = rule_queries(rules_dir)
    for path in dashboard_files(dashboards_dir):
        out.extend(dashboard_queries(load_dashboard(path), f"dashboards/{path.name}"))
    return out


#: Grafana's built-in interval variables and the concrete range each stands for outside Grafana.
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h"}
_GRAFANA_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand_grafana_variables(expr: str, intervals: dict[str, str] | None = None) -> str:
    """Replace ``$__rate_interval``, ``$__interval`` and ``$__range`` so Prometheus itself can run ``expr``.

    Unknown variables are left alone (Prometheus will then reject the query, which is the point).

    Example::

        >>> expand_grafana_variables("rate(ws_msgs_total[$__rate_interval])")
        'rate(ws_msgs_total[1m])'
    """
    values = {**GRAFANA_INTERVALS, **(intervals or {})}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    return _GRAFANA_VAR.sub(sub, expr)


def undefined_metrics(queries: Iterable[tuple[str, str]], known: set[str] | None = None) -> list[tuple[str, str]]:
    """``(source, name)`` for each metric name a query uses that :mod:`spark_research.metrics` does not expose.

    ``known`` defaults to :func:`spark_research.metrics.exposed_names` (``x_total``, ``x_bucket``...).

    Example::

        >>> undefined_metrics([("demo", "rate(ws_msgs_total[5m]) + ws_msg_total")])
        [('demo', 'ws_msg_total')]
    """
    if known is None:
        from spark_research.metrics import exposed_names

        known = exposed_names()
    return [(source, name) for source, expr in queries
            for name in sorted(promql_metric_names(expr)) if name not in known]

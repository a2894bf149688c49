"""Static check: every PromQL expression in rules and dashboards names only defined metrics."""
from __future__ import annotations

import json
import shutil

import pytest

from spark_research import metrics
from spark_research.observability.catalog import (
    CAPABILITIES,
    DASHBOARDS_DIR,
    RULES_DIR,
    all_queries,
    rule_test_series,
    undefined_metrics,
)
from spark_research.observability.promql import PromQLSyntaxError, promql_metric_names


@pytest.mark.parametrize(("expr", "expected"), [
    ("ws_conn_state == 0", {"ws_conn_state"}),
    ("histogram_quantile(0.95, sum by (le, exchange) (rate(ingest_latency_ms_bucket[5m]))) > 5",
     {"ingest_latency_ms_bucket"}),
    ("histogram_quantile(0.95, sum(rate(ws_gap_ms_bucket[5m])) by (le))", {"ws_gap_ms_bucket"}),
    ('sum without (instance) (rate(ws_msgs_total{exchange="replay", stream=~"trade|kline"}[$__rate_interval]))',
     {"ws_msgs_total"}),
    ("sum(increase(export_bytes_total[1h])) > 1e9", {"export_bytes_total"}),
    ("deriv(optimizer_queue_depth[10m]) * 60 > 0", {"optimizer_queue_depth"}),
    ("rate(sim_fills_total[5m] offset 1h30m) > bool 0", {"sim_fills_total"}),
    ("max_over_time(gate_state[1h:5m]) @ end()", {"gate_state"}),
    ("drift_bps / on (strategy, symbol) group_left (reason) gate_close_total", {"drift_bps", "gate_close_total"}),
    ("drift_bps and ignoring(symbol) gate_state or paper_live_delta_pnl unless drift_price_abs",
     {"drift_bps", "gate_state", "paper_live_delta_pnl", "drift_price_abs"}),
    ('label_replace(gate_state, "gate", "$1 $2", "strategy", "(.*)")', {"gate_state"}),
    ('count_values("state", ws_conn_state)', {"ws_conn_state"}),
    ('topk(3, sum by (user) (increase(export_requests_total{status!="ok"}[${__range}])))',
     {"export_requests_total"}),
    ('{__name__="export_concurrent_running", job="spark"} > 10', {"export_concurrent_running"}),
    ("atan2(drift_bps, drift_price_abs)", {"drift_bps", "drift_price_abs"}),
    ("vector(1) + scalar(time()) - Inf + NaN + 0x1F", set()),
    ("absent(backtest_golden_diffs) # a comment naming not_a_metric", {"backtest_golden_diffs"}),
])
def test_promql_metric_names_extracts_only_series_names(expr, expected):
    assert promql_metric_names(expr) == expected


def test_promql_metric_names_rejects_unterminated_string():
    with pytest.raises(PromQLSyntaxError):
        promql_metric_names('gate_state{symbol="BTC}')


def test_every_rule_and_dashboard_query_names_only_defined_metrics():
    assert undefined_metrics(all_queries()) == []


def test_promtool_input_series_name_only_defined_metrics():
    # Rule tests fed with a misspelt metric would prove nothing about the real series.
    series = rule_test_series()
    assert len(series) > 50
    assert undefined_metrics(series) == []


def test_all_queries_covers_every_rule_file_and_dashboard():
    sources = {source.split(":", 1)[0] for source, _ in all_queries()}
    assert sources == {f"rules/{c}.yml" for c in CAPABILITIES} | {f"dashboards/{c}.json" for c in CAPABILITIES}


def test_checker_catches_an_undefined_name():
    found = undefined_metrics([
        ("typo", "sum(rate(ws_msg_total[5m]))"),
        ("base histogram name is not a series", "histogram_quantile(0.95, rate(ingest_latency_ms[5m]))"),
        ("counter without _total", "increase(gate_close[1h])"),
        ("fine", "rate(ws_msgs_total[5m])"),
    ])
    assert found == [("typo", "ws_msg_total"), ("base histogram name is not a series", "ingest_latency_ms"),
                     ("counter without _total", "gate_close")]


def test_checker_catches_a_typo_in_a_dashboard_and_a_rule(tmp_path):
    rules, dashboards = tmp_path / "rules", tmp_path / "dashboards"
    shutil.copytree(RULES_DIR, rules)
    shutil.copytree(DASHBOARDS_DIR, dashboards)
    board = json.loads((dashboards / "export.json").read_text())
    board["panels"][0]["targets"][0]["expr"] = "sum(rate(export_latency_bucket[5m]))"
    (dashboards / "export.json").write_text(json.dumps(board))
    (rules / "gates.yml").write_text((rules / "gates.yml").read_text().replace("abs(drift_bps)", "abs(drift_bp)"))
    found = undefined_metrics(all_queries(rules, dashboards))
    assert found == [("rules/gates.yml:GateDriftHigh", "drift_bp"),
                     ("dashboards/export.json:Export latency P95", "export_latency_bucket")]


def test_known_names_are_the_exposed_names_of_the_metrics_module():
    known = metrics.exposed_names()
    assert {"ws_msgs_total", "ingest_latency_ms_bucket", "ws_conn_state"} <= known
    assert "ws_msgs" not in known and "ingest_latency_ms" not in known


def test_grafana_interval_variables_expand_to_durations():
    from spark_research.observability.catalog import expand_grafana_variables

    assert expand_grafana_variables("rate(a_total[$__rate_interval]) + increase(b_total[${__range}])") == \
        "rate(a_total[1m]) + increase(b_total[1h])"
    assert expand_grafana_variables("rate(a_total[$custom])") == "rate(a_total[$custom])"

"""Grafana dashboards: valid, wired to the datasource variable, per SPEC, and reproducible."""
from __future__ import annotations

import json

import pytest

from spark_research.observability.catalog import (
    CAPABILITIES,
    DASHBOARDS_DIR,
    DATASOURCE_REF,
    dashboard_files,
    dashboard_panels,
    dashboard_queries,
    load_dashboard,
)
from spark_research.observability.dashboards import build_all, render, write_all
from spark_research.observability.promql import promql_metric_names

#: Metrics each dashboard must chart (SPEC.md and the observability brief).
REQUIRED_METRICS = {
    "streams": {"ws_msgs_total", "ingest_latency_ms_bucket", "ws_gap_ms_bucket", "ws_conn_state",
                "ws_seq_gaps_total", "ws_resyncs_total", "ws_malformed_total", "book_checksum_fail_total"},
    "optimizer": {"optimizer_jobs_total", "optimizer_workers_running", "optimizer_queue_depth",
                  "optimizer_steps_inflight", "optimizer_step_latency_ms_bucket", "optimizer_queue_wait_ms_bucket"},
    "gates": {"gate_state", "drift_price_abs", "drift_bps", "paper_live_delta_pnl", "gate_close_total",
              "gate_decision_latency_ms_bucket"},
    "backtest": {"backtest_runtime_ms_bucket", "sim_fills_total", "backtest_golden_diffs",
                 "backtest_determinism_diffs"},
    "export": {"export_latency_ms_bucket", "export_success_rate", "export_bytes_total",
               "export_concurrent_running", "export_requests_total"},
    "risk": {"risk_state", "risk_denials_total", "risk_check_latency_us_bucket", "portfolio_equity",
             "portfolio_exposure", "portfolio_var", "portfolio_drawdown"},
    "models": {"feature_drift_psi", "feature_drift_ks", "model_prediction_drift", "model_inference_latency_ms_bucket",
               "model_predictions_total"},
}


def _board(capability: str) -> dict:
    return load_dashboard(DASHBOARDS_DIR / f"{capability}.json")


def _metrics_used(board: dict) -> set[str]:
    return set().union(*(promql_metric_names(expr) for _, expr in dashboard_queries(board)))


def test_dashboard_files_are_exactly_one_per_capability():
    assert [p.stem for p in dashboard_files()] == sorted(CAPABILITIES)


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_dashboard_has_uid_title_and_datasource_variable(capability):
    board = _board(capability)
    assert board["uid"] == f"spark-{capability}"
    assert capability in board["title"]
    variables = board["templating"]["list"]
    ds = [v for v in variables if v["name"] == "datasource"]
    assert len(ds) == 1
    assert ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus"


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_every_panel_queries_prometheus_through_the_variable(capability):
    panels = dashboard_panels(_board(capability))
    assert panels
    for panel in panels:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "heatmap", "state-timeline"}
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], f"{panel['title']} has no targets"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
            assert target["expr"].strip(), panel["title"]
            assert promql_metric_names(target["expr"]), f"{panel['title']}: {target['expr']} selects no metric"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), panel["title"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_panels_have_unique_ids_and_fit_the_grid(capability):
    panels = dashboard_panels(_board(capability))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    for p in panels:
        pos = p["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(cells) == len(panels), "panels overlap"


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_dashboard_charts_the_capability_metrics(capability):
    missing = REQUIRED_METRICS[capability] - _metrics_used(_board(capability))
    assert not missing, f"dashboards/{capability}.json does not chart {missing}"


def test_export_dashboard_has_exactly_the_five_spec_panels():
    panels = dashboard_panels(_board("export"))
    assert [p["title"] for p in panels] == [
        "Export latency P95", "Export success rate", "Export bytes", "Export concurrency", "Export throughput",
    ]


def test_latency_panels_show_p50_and_p95():
    streams = {p["title"]: p for p in dashboard_panels(_board("streams"))}
    exprs = [t["expr"] for t in streams["Ingest latency P50 / P95"]["targets"]]
    assert [e.startswith(f"histogram_quantile({q},") for e, q in zip(exprs, ("0.5", "0.95"))] == [True, True]


def test_committed_dashboards_equal_a_fresh_build(tmp_path):
    assert write_all(tmp_path) == [tmp_path / f"{c}.json" for c in CAPABILITIES]
    for capability in CAPABILITIES:
        fresh = (tmp_path / f"{capability}.json").read_bytes()
        assert fresh == (DASHBOARDS_DIR / f"{capability}.json").read_bytes(), f"dashboards/{capability}.json is stale"
    assert write_all(check=True) == []


def test_build_is_deterministic_across_calls():
    first, second = build_all(), build_all()
    assert {k: render(v) for k, v in first.items()} == {k: render(v) for k, v in second.items()}


def test_rendered_json_is_sorted_and_round_trips():
    text = render(build_all()["gates"])
    assert text.endswith("}\n")
    assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text


def test_spark_dashboards_build_check_detects_a_stale_file(tmp_path, capsys):
    from spark_research.cli import main

    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    assert main(["dashboards", "build", "--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "export.json"
    stale.write_text(stale.read_text().replace("Export throughput", "Throughput"))
    assert main(["dashboards", "build", "--check", "--out", str(tmp_path)]) == 1
    assert "export.json" in capsys.readouterr().err
    assert "Throughput\"" in stale.read_text()  # --check wrote nothing


def test_spark_dashboards_build_check_passes_on_the_committed_files():
    from spark_research.cli import main

    assert main(["dashboards", "build", "--check"]) == 0


def test_every_dashboard_query_parses_with_prometheus_own_parser():
    from spark_research.observability.catalog import all_queries
    from spark_research.observability.promtool import check_queries

    queries = [(s, e) for s, e in all_queries() if s.startswith("dashboards/")]
    assert len(queries) >= 30
    result = check_queries(queries)
    assert result.returncode == 0, result.stdout + result.stderr


def test_query_parse_check_rejects_bad_promql():
    from spark_research.observability.promtool import check_queries

    result = check_queries([("ok", "ws_conn_state"), ("bad", "sum by (le (rate(ws_gap_ms_bucket[5m]))")])
    assert result.returncode != 0

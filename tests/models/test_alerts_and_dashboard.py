"""The models capability's alert rules and dashboard name exactly the models metrics."""
from __future__ import annotations

import pytest

from spark_research import metrics
from spark_research.observability.catalog import (
    CAPABILITIES,
    RULES_DIR,
    alert_names,
    alert_test_coverage,
    dashboard_queries,
    undefined_metrics,
)
from spark_research.observability.promql import promql_metric_names
from spark_research.observability import promtool

MODEL_METRICS = {"feature_drift_psi", "feature_drift_ks", "model_prediction_drift", "model_inference_latency_ms",
                 "model_predictions"}


def test_models_metrics_are_defined_once_with_their_labels():
    assert MODEL_METRICS <= set(metrics.ALL)
    assert metrics.FEATURE_DRIFT_PSI._labelnames == ("model", "feature")
    assert metrics.MODEL_PREDICTION_DRIFT._labelnames == ("model",)
    assert metrics.MODEL_INFERENCE_LATENCY_MS._upper_bounds[:3] == [0.05, 0.1, 0.25]  # fast ms buckets


def test_models_is_a_catalogued_capability_with_rules_and_tests():
    assert "models" in CAPABILITIES
    assert alert_names(RULES_DIR / "models.yml") == {"ModelFeatureDriftHigh", "ModelPredictionDriftHigh",
                                                     "ModelInferenceLatencyP95High", "ModelNoPredictions"}
    cov = alert_test_coverage(RULES_DIR / "models_test.yml")
    assert all(cov[name].firing and cov[name].quiet for name in alert_names(RULES_DIR / "models.yml"))


def test_promtool_proves_the_models_alerts():
    try:
        result = promtool.test_rules(RULES_DIR / "models_test.yml")
    except promtool.PromtoolMissing as exc:
        pytest.fail(str(exc))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_no_predictions_alert_watches_the_ingests_bar_counter():
    from spark_research.observability.catalog import load_rules

    rule = next(r for r in load_rules(RULES_DIR / "models.yml") if r["alert"] == "ModelNoPredictions")
    assert promql_metric_names(rule["expr"]) == {"model_predictions_total", "stream_channel_bars_total"}


def test_dashboard_charts_every_models_metric_and_only_defined_ones():
    from spark_research.observability.dashboards import BUILDERS, render, to_dict

    board = to_dict(BUILDERS["models"]())
    queries = dashboard_queries(board, "dashboards/models.json")
    used = set().union(*(promql_metric_names(q) for _, q in queries))
    assert {"feature_drift_psi", "feature_drift_ks", "model_prediction_drift", "model_inference_latency_ms_bucket",
            "model_predictions_total"} <= used
    assert undefined_metrics(queries) == []
    assert (RULES_DIR.parent / "dashboards" / "models.json").read_text() == render(board)

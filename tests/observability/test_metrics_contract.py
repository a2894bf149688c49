"""Every metric that SPEC.md promises exists in spark_research.metrics with the right type and labels."""
from __future__ import annotations

import pytest
from prometheus_client import Counter, Gauge, Histogram

from spark_research import metrics

# The metric contracts of SPEC.md, as written there (counters as x_total, histograms by base name).
# labels=None: SPEC does not fix the labels; a tuple: exactly these label names.
SPEC_METRICS: list[tuple[str, type, tuple[str, ...] | None]] = [
    ("dataset_bytes_total", Counter, None),
    ("backtest_runtime_ms", Histogram, None),
    ("sim_fills_total", Counter, None),
    ("optimizer_jobs_total", Counter, ("status",)),
    ("optimizer_workers_running", Gauge, None),
    ("optimizer_queue_depth", Gauge, None),
    ("optimizer_step_latency_ms", Histogram, None),
    ("optimizer_queue_wait_ms", Histogram, None),
    ("ws_msgs_total", Counter, None),
    ("ws_gap_ms", Histogram, None),
    ("ingest_latency_ms", Histogram, None),
    ("ws_conn_state", Gauge, None),
    ("ws_seq_gaps_total", Counter, None),
    ("drift_price_abs", Gauge, None),
    ("paper_live_delta_pnl", Gauge, None),
    ("gate_state", Gauge, None),
    ("gate_close_total", Counter, None),
    ("gate_decision_latency_ms", Histogram, None),
    ("export_requests_total", Counter, ("format", "status", "user")),
    ("export_latency_ms", Histogram, ("format", "size")),
    ("export_bytes_total", Counter, ("format", "status")),
    ("export_concurrent_running", Gauge, ()),
    ("export_fail_total", Counter, ("reason", "format")),
    ("export_success_rate", Gauge, ("format",)),
]


def _base(name: str, kind: type) -> str:
    return name.removesuffix("_total") if kind is Counter else name


def test_spec_table_classifies_names_consistently():
    # Guard the table itself: counters are exactly the *_total names.
    for name, kind, _ in SPEC_METRICS:
        assert (kind is Counter) == name.endswith("_total"), name


@pytest.mark.parametrize(("name", "kind", "labels"), SPEC_METRICS, ids=[m[0] for m in SPEC_METRICS])
def test_spec_metric_is_defined_with_type_and_labels(name, kind, labels):
    base = _base(name, kind)
    assert base in metrics.ALL, f"{name} (base {base}) is not defined in spark_research.metrics"
    metric = metrics.ALL[base]
    assert type(metric) is kind, f"{name} is a {type(metric).__name__}, SPEC wants a {kind.__name__}"
    if labels is not None:
        assert tuple(metric._labelnames) == labels, f"{name} labels {metric._labelnames} != {labels}"


@pytest.mark.parametrize(("name", "kind", "labels"), SPEC_METRICS, ids=[m[0] for m in SPEC_METRICS])
def test_spec_metric_is_exposed_under_its_scrape_name(name, kind, labels):
    scrape_name = f"{name}_bucket" if kind is Histogram else name
    assert scrape_name in metrics.exposed_names()

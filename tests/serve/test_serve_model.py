"""``spark serve --strategy model:ID``: the paper/live session trades a registered model on the live bars.

One platform start for the module: a small model is registered in the served var directory's
registry (``SPARK_VAR``, which the session's process inherits), and ``spark serve`` runs it as the
live strategy. The session's process computes the model's features on each arriving 1 s bar,
predicts, trades, and its model monitor's series reach the web server's ``/metrics`` once,
beside the web server's own model series (the start-up exercise's demo model). An unknown id
stops ``spark serve`` before anything starts, naming the id.
"""
from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spark_research import metrics
from tests.serve.serve_helpers import start_serve, stop_serve

SYMBOL = "BTCUSDT"
FEATURES = ("logret_1", "rsi_14")  # scale-free enough for 1 s bars, warm after 15 bars


@pytest.fixture(scope="module")
def model_id(tmp_path_factory):
    """A small LightGBM model registered where the served platform will look (its var dir)."""
    from spark_research.data import generate_bars
    from spark_research.models.registry import ModelRegistry
    from spark_research.models.training import TrainSpec, train_model

    tmp = tmp_path_factory.mktemp("serve_model")
    spec = TrainSpec(features=FEATURES, horizon=5, n_splits=3, estimator_params={"n_estimators": 40})
    card = ModelRegistry(tmp / "var").register(train_model(generate_bars(SYMBOL, n=2_000, seed=3), spec))
    return tmp, card.model_id


@pytest.fixture(scope="module")
def served(model_id):
    tmp, mid = model_id
    # entry = exit = 0.5: long while the model leans up, flat while it leans down, so it trades within a minute
    s = start_serve(tmp, "--workers", "1", "--strategy", f"model:{mid}", "--param", "entry=0.5",
                    "--param", "exit=0.5")
    s.model_id = mid
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if s.proc.poll() is not None:
                raise RuntimeError(f"spark serve exited with {s.proc.returncode}:\n{s.log()[-4000:]}")
            try:
                if s.health()["status"] == "ok":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError(f"/health not ok within 240 s:\n{s.log()[-4000:]}")
        yield s
    finally:
        if s.proc.poll() is None:
            stop_serve(s)
        print(s.log()[-3000:])


def _gates_health(s) -> dict:
    url = s.health()["components"]["gates"]["detail"]["gates_url"]
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        return json.loads(r.read())


def _scrape(s) -> str:
    with urllib.request.urlopen(s.url + "/metrics", timeout=30) as r:
        return r.read().decode()


def _value(text: str, sample: str, **labels: str) -> float | None:
    """The value of the series ``sample{labels}`` in a scrape (None if it is not there)."""
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == sample and all(smp.labels.get(k) == v for k, v in labels.items()):
                return smp.value
    return None


def _wait(predicate, timeout: float, what: str, every: float = 0.5):
    """Poll ``predicate`` until it returns something other than None; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got is not None:
            return got
        time.sleep(every)
    raise TimeoutError(f"{what} not within {timeout} s")


def _predictions(text: str, model_id: str) -> float | None:
    """``model_predictions_total{model=model_id}``, None while it is absent or 0."""
    return _value(text, "model_predictions_total", model=model_id) or None


@pytest.mark.slow
def test_health_shows_the_session_process_running_the_model_strategy(served):
    strategy = f"model:{served.model_id}"
    body = served.health()
    gates = body["components"]["gates"]
    assert gates["up"] and gates["detail"]["strategy"] == strategy
    assert gates["detail"]["live_session"] == f"{strategy}/{SYMBOL}"
    assert body["processes"]["gates"]["state"] == "up"
    g = _gates_health(served)
    assert g["strategy"] == strategy and g["live_gate"] == f"{strategy}/{SYMBOL}"
    assert g["model"]["model_id"] == served.model_id


@pytest.mark.slow
def test_arriving_bars_reach_the_models_features_and_predictions(served):
    label = {"model": served.model_id}
    first = _wait(lambda: _predictions(_scrape(served), served.model_id), 120,
                  "a first prediction of the served model")  # after the features' 15-bar warm-up
    text = _wait(lambda: t if (_predictions(t := _scrape(served), served.model_id) or 0) >= first + 3 else None,
                 60, "three more predictions")
    assert _value(text, "model_inference_latency_ms_count", **label) >= first + 3  # one latency per prediction
    assert _value(text, "model_inference_latency_ms_sum", **label) > 0
    g = _gates_health(served)
    # a prediction per bar past the warm-up, on the bars the session trades (the model sees each one first)
    assert 0 < g["model"]["predictions"] <= g["model"]["bars"] <= g["bars"] + 1
    assert g["model"]["latency_p95_ms"] > 0


@pytest.mark.slow
def test_model_series_of_both_processes_reach_the_scrape_once(served):
    demo = _wait(lambda: served.health()["exercise"].get("model"), 240, "the start-up exercise's demo model")
    _wait(lambda: _predictions(_scrape(served), served.model_id), 120, "a prediction of the served model")
    text = _scrape(served)
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(helps) == len(set(helps)), sorted({n for n in helps if helps.count(n) > 1})
    series = Counter((smp.name, tuple(sorted(smp.labels.items())))
                     for fam in text_string_to_metric_families(text) for smp in fam.samples)
    assert [k for k, n in series.items() if n > 1] == []
    models = {dict(labels)["model"] for name, labels in series if name == "model_predictions_total"}
    assert {served.model_id, demo["model"]} <= models  # the session's (relayed) and the web server's own
    assert _value(text, "model_predictions_total", model=demo["model"]) == demo["predictions"]


@pytest.mark.slow
def test_the_session_trades_the_model(served):
    strategy = f"model:{served.model_id}"
    fills = served.var / "gates" / "fills" / f"{strategy}_{SYMBOL}.parquet"

    def filled():
        h = _gates_health(served)
        return h if h["paper_fills"] >= 1 else None

    def kept_fills():
        frame = pd.read_parquet(fills) if fills.exists() else None
        return frame if frame is not None and len(frame) else None

    g = _wait(filled, 150, "a paper fill of the model strategy")
    assert g["orders_placed"] >= g["paper_fills"] >= 1
    kept = _wait(kept_fills, 30, "the session's fills file")
    assert set(kept["strategy"]) == {strategy} and set(kept["symbol"]) == {SYMBOL}
    assert kept["order_id"].str.startswith(f"{strategy}-{SYMBOL}-").all()
    assert _value(_scrape(served), "paper_live_delta_pnl", strategy=strategy, symbol=SYMBOL) is not None


@pytest.mark.slow
def test_an_unknown_model_id_stops_spark_serve_at_once_naming_it(served, tmp_path):
    prefix = served.model_id[:6]
    s = start_serve(tmp_path, "--strategy", f"model:{prefix}", env={"SPARK_VAR": str(served.var)})
    try:
        code = s.proc.wait(timeout=60)
    finally:
        stop_serve(s)
    log = s.log()
    assert code != 0
    assert f"unknown model '{prefix}'" in log and f"did you mean '{served.model_id}'" in log, log
    assert "component" not in log  # nothing was started


def test_shared_families_are_merged_series_by_series():
    own = ('# HELP model_predictions_total p\n# TYPE model_predictions_total counter\n'
           'model_predictions_total{model="demo"} 600.0\nmodel_predictions_total{model="both"} 1.0\n'
           '# HELP gate_state g\n# TYPE gate_state gauge\ngate_state 0.0\n')
    gates = ('# HELP model_predictions_total p\n# TYPE model_predictions_total counter\n'
             'model_predictions_total{model="live"} 7.0\nmodel_predictions_total{model="both"} 2.0\n'
             '# HELP feature_drift_psi f\n# TYPE feature_drift_psi gauge\n'
             'feature_drift_psi{model="live",feature="x"} 0.1\n'
             '# HELP gate_state g\n# TYPE gate_state gauge\ngate_state 2.0\n'
             '# HELP process_cpu_seconds_total c\n# TYPE process_cpu_seconds_total counter\n'
             'process_cpu_seconds_total 3.0\n')
    url = "http://127.0.0.1:1/metrics"
    metrics.relay(url, ("gate_",), shared=("model_", "feature_drift_"))
    try:
        merged = metrics.merge(own, {url: gates})
        assert merged.count("# HELP model_predictions_total") == 1 and merged.count("# HELP gate_state") == 1
        values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for fam in text_string_to_metric_families(merged) for s in fam.samples}
        assert values[("model_predictions_total", (("model", "demo"),))] == 600.0  # this process's series
        assert values[("model_predictions_total", (("model", "live"),))] == 7.0  # the other's
        assert values[("model_predictions_total", (("model", "both"),))] == 2.0  # in both: the other's, once
        assert values[("feature_drift_psi", (("feature", "x"), ("model", "live")))] == 0.1  # only there
        assert values[("gate_state", ())] == 2.0 and "process_cpu" not in merged  # owned and unrelayed as before
        away = metrics.merge(own, {url: None})  # the session's process restarting: this process's series only
        assert 'model="demo"' in away and 'model="live"' not in away
    finally:
        metrics.clear_relays()

"""ModelMonitor: live predictions equal the backtest's, drift metrics are populated, drift closes a gate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from spark_research.models.drift import drift_table
from spark_research.models.errors import ModelError
from spark_research.models.monitor import ModelMonitor, close_gate_on_drift
from spark_research.models.strategy import strategy_for


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture(scope="module")
def fed(card, train_bars, live_bars):
    """A monitor on the registered model, warmed with training bars, fed every live bar."""
    before = _sample("model_predictions_total", model=card.model_id) or 0.0
    count_before = _sample("model_inference_latency_ms_count", model=card.model_id) or 0.0
    mon = ModelMonitor(card.model_id, history=train_bars.iloc[-200:], window=400, min_samples=100)
    preds = np.array([mon.update(bar) for bar in live_bars.to_dict("records")])
    return mon, preds, before, count_before


def test_live_predictions_equal_the_backtests_bar_for_bar(fed, card, train_bars, live_bars):
    from spark_research.backtest.engine import to_frame

    mon, preds, *_ = fed
    full = to_frame(pd.concat([train_bars.iloc[-200:], live_bars]))
    batch = strategy_for(card.model_id).predictions(full)["p_up"].iloc[200:].to_numpy()
    assert np.isfinite(preds).all()
    np.testing.assert_allclose(preds, batch, rtol=0, atol=1e-12)  # same features, same model, same numbers


def test_monitor_populates_the_drift_and_inference_metrics(fed, card, live_bars):
    mon, preds, before, count_before = fed
    n = len(live_bars)
    assert _sample("model_predictions_total", model=card.model_id) == before + n
    assert _sample("model_inference_latency_ms_count", model=card.model_id) == count_before + n
    for feature in card.columns:
        value = _sample("feature_drift_psi", model=card.model_id, feature=feature)
        assert value == pytest.approx(mon.psi[feature]) and value >= 0
    assert _sample("model_prediction_drift", model=card.model_id) == pytest.approx(mon.prediction_psi)
    assert mon.samples == 400 and mon.latency_quantile(0.95) > 0


def test_rolling_psi_equals_the_batch_psi_of_the_window(fed, card):
    mon, *_ = fed
    table = drift_table(card.drift_reference, mon.history()[card.columns], mon.history()["p_up"].to_numpy())
    np.testing.assert_allclose(mon.psi.to_numpy(), table.loc[card.columns, "psi"].to_numpy(), atol=1e-12)
    assert mon.prediction_psi == pytest.approx(table.loc["prediction", "psi"], abs=1e-12)
    drift = mon.drift()  # also exports KS
    for feature in card.columns:
        assert _sample("feature_drift_ks", model=card.model_id, feature=feature) == pytest.approx(
            drift.loc[feature, "ks"])


class _Gate:
    def __init__(self):
        self.closed: list[tuple[str, str]] = []

    def close(self, actor, reason):
        self.closed.append((actor, reason))


def test_drifted_inputs_close_the_gate_once(trained, live_bars, train_bars):
    gate = _Gate()
    # watch a stationary input: calendar encodings and volatility drift over any window shorter than their cycle
    mon = ModelMonitor(trained, history=train_bars.iloc[-200:], window=200, min_samples=50, psi_threshold=0.25,
                       on_drift=close_gate_on_drift(gate), watch=["volume_z_50"])
    calm = live_bars.iloc[:150].to_dict("records")
    for bar in calm:
        mon.update(bar)
    assert not gate.closed  # the same market as training: no drift
    wild = live_bars.iloc[150:450].copy()
    wild["volume"] *= 1.05 ** np.arange(len(wild))  # volume growing 5% a bar: a regime the model never saw
    for bar in wild.to_dict("records"):
        mon.update(bar)
    assert len(gate.closed) == 1
    actor, reason = gate.closed[0]
    assert actor == "model-monitor" and "volume_z_50" in reason and trained.model_id in reason
    assert mon.psi["volume_z_50"] > 0.25


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window": 1}, "window must be an integer >= 2 bars, got 1"),
    ({"window": 10, "min_samples": 11}, r"min_samples must be an integer in \[1, window=10\], got 11"),
    ({"psi_threshold": 0}, "psi_threshold must be > 0, got 0"),
    ({"watch": ["ret_1"]}, r"watch: column\(s\) \['ret_1'\] are not inputs of model"),
])
def test_monitor_rejects_bad_settings(trained, kwargs, message):
    with pytest.raises(ModelError, match=message):
        ModelMonitor(trained, **kwargs)


def test_no_prediction_while_the_features_warm_up(trained, live_bars):
    mon = ModelMonitor(trained)  # no history
    first = [mon.update(b) for b in live_bars.iloc[:trained.lookback + 1].to_dict("records")]
    assert np.isnan(first[:trained.lookback - 1]).all() and np.isfinite(first[-1])
    assert mon.bars == trained.lookback + 1


def test_drift_gauges_wait_for_min_samples(trained, train_bars, live_bars):
    mon = ModelMonitor(trained, history=train_bars.iloc[-200:], window=100, min_samples=60)
    label = {"model": trained.model_id, "feature": trained.columns[0]}
    records = live_bars.iloc[:80].to_dict("records")
    before = _sample("feature_drift_psi", **label)  # other monitors of this model may have set it
    for bar in records[:59]:
        mon.update(bar)
    assert _sample("feature_drift_psi", **label) == before  # 59 predictions: nothing exported yet
    for bar in records[59:]:
        mon.update(bar)
    assert _sample("feature_drift_psi", **label) == pytest.approx(mon.psi.iloc[0])

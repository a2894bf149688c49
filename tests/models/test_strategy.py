"""ModelStrategy: named as model:ID, backtested, swept, lookahead-checked, walk-forward retrained."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import check_lookahead, identify, resolve_strategy, run_backtest
from spark_research.backtest.registry import UnknownStrategy, load_payload, to_payload
from spark_research.models.errors import ModelError
from spark_research.models.strategy import ModelStrategy, strategy_for

PARAMS = {"entry": 0.55, "exit": 0.45}


def test_model_id_resolves_through_the_strategy_resolver(card):
    cls = resolve_strategy(f"model:{card.model_id}")
    assert issubclass(cls, ModelStrategy) and cls is strategy_for(card.model_id)
    assert cls.name == f"model:{card.model_id}" and sorted(cls.params) == ["entry", "exit"]
    ident = identify(f"model:{card.model_id}")
    assert (ident.kind, ident.ref, ident.portable) == ("model", f"model:{card.model_id}", True)
    payload = to_payload(cls)  # Dask workers resolve the id against the registry, not a pickled class
    assert payload.import_ref == f"model:{card.model_id}" and payload.pickled is None
    assert load_payload(payload) is cls


def test_unknown_model_id_is_an_unknown_strategy_with_a_hint(card):
    with pytest.raises(UnknownStrategy, match=rf"strategy 'model:{card.model_id[:8]}'.*did you mean '{card.model_id}'"):
        resolve_strategy(f"model:{card.model_id[:8]}")


def test_signals_are_the_predictions_crossing_the_thresholds(card, live_bars):
    from spark_research.backtest.engine import to_frame

    frame = to_frame(live_bars)
    cls = strategy_for(card.model_id)
    p = cls.predictions(frame)["p_up"]
    sig = cls().signals(frame, **PARAMS)
    assert p.iloc[:card.lookback - 1].isna().all() and p.iloc[card.lookback:].notna().all()
    assert sig.entries.equals((p >= 0.55).astype(bool)) and sig.exits.equals((p <= 0.45).astype(bool))
    assert sig.entries.any() and sig.exits.any()


def test_model_strategy_backtests_out_of_sample(card, live_bars):
    res = run_backtest(f"model:{card.model_id}", live_bars, PARAMS)
    assert res.strategy == f"model:{card.model_id}" and res.stats["trades"] > 0
    first_entry = res.trades["entry_time"].min()
    assert first_entry > live_bars["timestamp"].iloc[card.lookback - 1]  # no trade before the features exist


def test_model_strategy_passes_the_lookahead_check(card, live_bars):
    report = check_lookahead(f"model:{card.model_id}", live_bars, PARAMS, n_cuts=10, max_signal_cuts=24,
                             budget_s=30)
    assert report.passed, str(report)
    assert report.cuts >= 30 and report.signal_bars_checked >= 20
    assert "indicator:p_up" in {f"indicator:{c}" for c in strategy_for(card.model_id).predictions(
        live_bars.set_index("timestamp").tz_convert(None)).columns}


def test_a_model_that_reads_the_next_bar_fails_the_lookahead_check(card, live_bars):
    cls = strategy_for(card.model_id)

    class Peeking(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def predictions(klass, bars):
            out = cls.predictions(bars).copy()
            out["p_up"] = out["p_up"].shift(-1)  # tomorrow's prediction today
            return out

    report = check_lookahead(Peeking, live_bars, PARAMS, n_cuts=5, max_signal_cuts=8, budget_s=20,
                             kinds=("even", "signal"))
    assert not report.passed and "indicator:p_up" in report.leaky_series


def test_the_optimizer_sweeps_the_thresholds_like_run_backtest(card, live_bars):
    from spark_research.optimizer.generic import evaluate_generic

    combos = pd.DataFrame({"entry": [0.5, 0.55, 0.6], "exit": [0.5, 0.45, 0.4]})
    swept = evaluate_generic(f"model:{card.model_id}", live_bars, combos)
    for i, row in combos.iterrows():
        stats = run_backtest(f"model:{card.model_id}", live_bars, row.to_dict()).stats
        assert swept.loc[i, "trades"] == stats["trades"]
        assert swept.loc[i, "total_return"] == pytest.approx(stats["total_return"], rel=1e-9, abs=1e-12)
    assert swept["trades"].nunique() > 1  # the thresholds matter


def test_thresholds_are_validated_by_their_params(card, live_bars):
    from spark_research.backtest.strategy import ParameterError

    with pytest.raises(ParameterError, match="'entry' = 1.2 outside"):
        run_backtest(f"model:{card.model_id}", live_bars, {"entry": 1.2})
    with pytest.raises(ParameterError, match="'exit' = 0.6 outside"):  # exit <= 0.5 <= entry: never crossed
        run_backtest(f"model:{card.model_id}", live_bars, {"exit": 0.6})


def test_the_unbound_base_class_says_how_to_bind_it(live_bars):
    with pytest.raises(ModelError, match="not bound to a model: use strategy_for"):
        run_backtest(ModelStrategy, live_bars)


def test_walk_forward_retrains_per_window_on_in_sample_bars_only(bars, spec):
    from spark_research.models.walkforward import walk_forward_retrain

    res = walk_forward_retrain(bars.iloc[:3_600], spec, is_bars=1_800, oos_bars=900, params=PARAMS)
    w = res.windows
    assert len(w) == 2 and w["model_id"].nunique() == 2
    for row, tm in zip(w.itertuples(), res.models):
        assert tm.train_end <= row.is_end < row.oos_start  # labels end inside the in-sample window
        assert tm.train_start >= row.is_start
    assert res.oos_predictions.index.min() == w["oos_start"].iloc[0]
    assert res.oos_predictions.index.max() == w["oos_end"].iloc[-1]
    assert len(res.oos_equity) == 1_800 and np.isfinite(res.report()["oos_total_return"])


def test_growing_frames_are_extended_through_the_live_path_with_identical_values(card, live_bars):
    from spark_research.backtest.engine import to_frame

    cls = strategy_for(card.model_id)
    frame = to_frame(live_bars.iloc[:400])
    batch = cls.predictions(frame)  # a full computation (cached; also the start of the live tail)
    cls.predictions(frame.iloc[:300])
    for n in range(301, 400):  # the paper session's bars so far, one more each time
        grown = cls.predictions(frame.iloc[:n])
    assert cls._tail is not None and cls._tail.live is not None  # the live path did the work
    pd.testing.assert_frame_equal(grown, batch.iloc[:399], check_exact=True, check_freq=False)


def test_paper_engine_trades_the_model_like_the_backtest(card, live_bars):
    from spark_research.gates.paper import PaperEngine

    bars = live_bars.iloc[:600]
    engine = PaperEngine(f"model:{card.model_id}", PARAMS, symbol="BTCUSDT")
    fills = engine.run(bars)
    orders = run_backtest(f"model:{card.model_id}", bars, PARAMS).orders
    assert len(fills) == len(orders) > 0
    np.testing.assert_allclose(fills["price"].to_numpy(), orders["price"].to_numpy(), rtol=1e-12)

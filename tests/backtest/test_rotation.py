"""Cross-sectional rotation: ranking, target weights, a shared cash pool on vectorbt, next-open fills."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest.rotation import MomentumRotation, run_rotation, target_weights, universe_frames
from spark_research.backtest.strategy import ParameterError
from spark_research.data import generate_bars

SYMBOLS = [f"S{i:03d}" for i in range(12)]


@pytest.fixture(scope="module")
def universe():
    return {s: generate_bars(s, n=2_000, seed=i, price=50.0 + i) for i, s in enumerate(SYMBOLS)}


def test_target_weights_hold_the_top_k_every_rebalance_bars_ties_by_symbol():
    idx = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC")
    scores = pd.DataFrame({"A": [np.nan, 1.0, 3.0, 0.0], "B": [np.nan, 2.0, 3.0, 1.0], "C": [np.nan, 0.5, 1.0, 2.0]},
                          index=idx)
    w = target_weights(scores, top_k=2, rebalance=2)
    assert w.iloc[0].isna().all() and w.iloc[1].isna().all() and w.iloc[3].isna().all()
    assert w.iloc[2].tolist() == [0.5, 0.5, 0.0]  # A and B tie at 3.0: both in, C out
    w1 = target_weights(scores, top_k=1, rebalance=1)
    assert w1.iloc[1].tolist() == [0.0, 1.0, 0.0] and w1.iloc[2].tolist() == [1.0, 0.0, 0.0]  # the tie: A first
    assert w1.iloc[3].tolist() == [0.0, 0.0, 1.0]


def test_rotation_is_deterministic_and_trades_at_the_next_open(universe):
    params = {"lookback": 120, "top_k": 3, "rebalance": 240}
    a = run_rotation(MomentumRotation, universe, params)
    b = run_rotation(MomentumRotation, universe, params)
    assert np.array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    assert a.stats == b.stats and a.stats["rebalances"] == len(range(240, 2_000, 240))  # bar 0: no lookback yet
    opens, closes = universe_frames(universe)
    orders = a.portfolio.orders.records_readable
    assert len(orders) > 0
    for row in orders.head(20).itertuples():
        t = row.Timestamp
        pos = closes.index.get_loc(t)
        assert a.weights.iloc[pos - 1].notna().any()  # decided on the bar before
        open_ = opens.loc[t, row.Column]
        assert row.Price == pytest.approx(open_ * (1 + 0.0005 if row.Side == "Buy" else 1 - 0.0005), rel=1e-12)


def test_one_cash_pool_funds_every_symbol_and_never_goes_negative(universe):
    res = run_rotation(MomentumRotation, universe, {"lookback": 60, "top_k": 4, "rebalance": 120})
    cash = res.portfolio.cash()
    assert cash.ndim == 1 or cash.shape[1] == 1  # one group: one cash balance for the universe
    assert float(np.min(np.asarray(cash))) >= -1e-6
    held = res.portfolio.asset_value(group_by=False).gt(0).sum(axis=1)
    assert held.max() <= 4 and held.iloc[-1] > 0


def test_fees_can_differ_per_symbol(universe):
    fees = {s: (0.004 if s == SYMBOLS[0] else 0.0005) for s in SYMBOLS}
    res = run_rotation(MomentumRotation, universe, {"lookback": 60, "top_k": 6, "rebalance": 60}, fees=fees)
    o = res.portfolio.orders.records_readable
    rate = o["Fees"] / (o["Size"] * o["Price"])
    by_symbol = rate.groupby(o["Column"]).mean()
    assert by_symbol[SYMBOLS[0]] == pytest.approx(0.004) and by_symbol[SYMBOLS[1]] == pytest.approx(0.0005)
    with pytest.raises(ParameterError, match="fees: symbols \\['NOPE'\\]"):
        run_rotation(MomentumRotation, universe, fees={"NOPE": 0.01})


def test_parameters_are_checked_against_their_ranges(universe):
    with pytest.raises(ParameterError, match="'top_k' = 0 outside"):
        run_rotation(MomentumRotation, universe, {"top_k": 0})
    with pytest.raises(ParameterError, match="unknown parameter 'fast'"):
        run_rotation(MomentumRotation, universe, {"fast": 3})


def test_a_200_symbol_universe_backtests_with_one_shared_pool():
    bars = {f"U{i:03d}": generate_bars(f"U{i:03d}", n=600, seed=i, price=20.0 + i % 50) for i in range(200)}
    res = run_rotation(MomentumRotation, bars, {"lookback": 60, "top_k": 20, "rebalance": 60})
    assert res.weights.shape == (600, 200)
    assert res.portfolio.asset_value(group_by=False).gt(0).sum(axis=1).max() <= 20
    assert np.isfinite(res.stats["sharpe"]) and res.stats["trades"] > 20

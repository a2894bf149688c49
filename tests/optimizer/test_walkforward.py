"""Walk-forward optimisation: windows, per-window choice, stitched OOS equity, overfitting report."""
from __future__ import annotations

import pandas as pd
import pytest

from spark_research.backtest import run_backtest
from spark_research.data import generate_bars
from spark_research.optimizer.spec import SpecError, SweepSpec
from spark_research.optimizer.sweep import rank
from spark_research.optimizer.walkforward import walk_forward, wf_windows


def test_rolling_and_anchored_windows():
    assert wf_windows(10, is_bars=4, oos_bars=2) == [(0, 4, 4, 6), (2, 6, 6, 8), (4, 8, 8, 10)]
    assert wf_windows(10, is_bars=4, oos_bars=2, anchored=True) == [(0, 4, 4, 6), (0, 6, 6, 8), (0, 8, 8, 10)]
    assert wf_windows(9, is_bars=4, oos_bars=2)[-1] == (2, 6, 6, 8)  # a partial last window is dropped
    with pytest.raises(ValueError, match="is_bars \\+ oos_bars = 12 exceeds n_bars = 10"):
        wf_windows(10, is_bars=8, oos_bars=4)
    with pytest.raises(ValueError, match="oos_bars must be a positive integer, got 0"):
        wf_windows(10, is_bars=8, oos_bars=0)


@pytest.mark.parametrize("anchored", [False, True])
def test_walk_forward_picks_is_best_and_evaluates_it_out_of_sample(optimizer, anchored):
    bars = generate_bars("BTCUSDT", n=9_000, seed=21)
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"],
                     values={"fast": [5, 10, 30], "slow": [40, 80, 160]})
    wf = walk_forward(optimizer, spec, bars, is_bars=3_000, oos_bars=2_000, anchored=anchored,
                      n_periods=32, cscv_splits=8, timeout=120)
    frame = bars.set_index("timestamp").drop(columns="symbol")
    windows = wf_windows(len(frame), is_bars=3_000, oos_bars=2_000, anchored=anchored)
    assert len(wf.windows) == len(windows) == 3
    level = spec.init_cash
    for row, (a, b, c, d) in zip(wf.windows.to_dict("records"), windows):
        # the chosen parameters are the in-sample best of a direct serial sweep
        table = pd.DataFrame([{"symbol": "BTCUSDT", "fast": f, "slow": s,
                               **run_backtest("sma_cross", frame.iloc[a:b], {"fast": f, "slow": s}).stats}
                              for f in (5, 10, 30) for s in (40, 80, 160)])
        best = rank(table, spec).iloc[0]
        assert (row["fast"], row["slow"]) == (best["fast"], best["slow"])
        assert row["is_objective"] == pytest.approx(best["objective"], rel=1e-9)
        oos = run_backtest("sma_cross", frame.iloc[c:d], {"fast": row["fast"], "slow": row["slow"]})
        assert row["oos_objective"] == oos.stats["sharpe"]
        assert row["is_start"] == frame.index[a] and row["oos_end"] == frame.index[d - 1]
        level *= 1 + oos.stats["total_return"]
    # stitched OOS equity: one point per OOS bar, compounding window after window
    assert len(wf.oos_equity) == 3 * 2_000 and wf.oos_equity.index.is_monotonic_increasing
    assert wf.oos_equity.iloc[-1] == pytest.approx(level, rel=1e-9)
    rep = wf.report()
    assert rep["trials"] == 9 and rep["cscv_splits"] == 8 and 0.0 <= rep["pbo"] <= 1.0
    assert 0.0 <= rep["dsr"] <= 1.0 and len(wf.pbo.logits) == 70  # C(8, 4) splits
    assert rep["oos_objective_mean"] == pytest.approx(wf.windows["oos_objective"].mean())


def test_walk_forward_takes_one_symbol(optimizer, bars_small):
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT", "ETHUSDT"])
    with pytest.raises(SpecError, match="exactly one symbol"):
        walk_forward(optimizer, spec, bars_small, is_bars=1000, oos_bars=500)

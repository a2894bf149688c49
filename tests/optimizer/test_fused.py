"""The fused sweep kernels agree with run_backtest (vectorbt Portfolio) for every shipped strategy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import STRATEGIES, run_backtest
from spark_research.data import generate_bars
from spark_research.optimizer.fused import FUSED_PARAMS, FUSED_STATS, evaluate_fused, supports

COMBOS = {
    "sma_cross": [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}, {"fast": 3, "slow": 200}, {"fast": 30, "slow": 35}],
    "rsi_reversion": [{"window": 14, "lower": 30, "upper": 70}, {"window": 5, "lower": 20, "upper": 80},
                      {"window": 2, "lower": 10, "upper": 90}, {"window": 40, "lower": 45, "upper": 55}],
    "donchian_breakout": [{"window": 55, "exit_window": 20}, {"window": 10, "exit_window": 10},
                          {"window": 200, "exit_window": 50}, {"window": 5, "exit_window": 2}],
}


@pytest.fixture(scope="module")
def bars():
    return generate_bars("SOLUSDT", n=8_000, seed=5)


def test_every_shipped_strategy_has_a_fused_kernel():
    assert set(FUSED_PARAMS) == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert set(FUSED_PARAMS[name]) == set(cls.params)


@pytest.mark.parametrize("fees,slippage", [(0.001, 0.0005), (0.004, 0.0)])
@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_fused_matches_run_backtest_to_1e9(strategy, fees, slippage, bars):
    combos = pd.DataFrame(COMBOS[strategy])
    fused = evaluate_fused(strategy, bars, combos, fees=fees, slippage=slippage, init_cash=25_000)
    for i, params in enumerate(COMBOS[strategy]):
        ref = run_backtest(strategy, bars, params, fees=fees, slippage=slippage, init_cash=25_000).stats
        assert fused["trades"].iloc[i] == ref["trades"], params
        assert ref["trades"] > 0, f"{params} makes no trade: the comparison would prove little"
        for stat in ("total_return", "final_equity", "max_drawdown"):
            assert fused[stat].iloc[i] == pytest.approx(ref[stat], rel=1e-9, abs=1e-9), (params, stat)
        assert fused["sharpe"].iloc[i] == pytest.approx(ref["sharpe"], rel=1e-9), params


def test_checkpoint_values_are_the_portfolio_value(bars):
    params = {"fast": 8, "slow": 40}
    ck = np.array([0, 999, 4_000, len(bars) - 1])
    _, values = evaluate_fused("sma_cross", bars, pd.DataFrame([params]), checkpoints=ck)
    equity = run_backtest("sma_cross", bars, params).equity.to_numpy()
    np.testing.assert_allclose(values[:, 0], equity[ck], rtol=1e-12)


def test_fused_is_deterministic_bit_for_bit(bars):
    combos = pd.DataFrame(COMBOS["rsi_reversion"])
    a = evaluate_fused("rsi_reversion", bars, combos)
    b = evaluate_fused("rsi_reversion", bars, combos)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.columns) == list(FUSED_STATS)


def test_fused_path_only_for_engine_defaults():
    assert supports("sma_cross")
    assert not supports("sma_cross", direction="both")
    assert not supports("sma_cross", fill="close")
    assert not supports("sma_cross", size=100.0)


def test_unknown_strategy_and_missing_columns_are_named(bars):
    with pytest.raises(KeyError, match="'my_strategy'"):
        evaluate_fused("my_strategy", bars, pd.DataFrame({"fast": [1]}))
    with pytest.raises(KeyError, match=r"\['slow'\]"):
        evaluate_fused("sma_cross", bars, pd.DataFrame({"fast": [5]}))


def test_indicator_cache_computes_each_window_once_per_bars_object(bars):
    from spark_research.optimizer.fused import _CACHE

    _CACHE.clear()
    first = pd.DataFrame({"fast": [5, 10], "slow": [20, 40]})
    second = pd.DataFrame({"fast": [10, 15], "slow": [40, 60]})
    a = evaluate_fused("sma_cross", bars, first)
    b = evaluate_fused("sma_cross", bars, second)
    entry = next(iter(_CACHE._entries.values()))
    assert sorted(entry[2]) == [5, 10, 15, 20, 40, 60] and entry[3] == 6  # 10 and 40 were reused
    _CACHE.clear()
    pd.testing.assert_frame_equal(b, evaluate_fused("sma_cross", bars, second), check_exact=True)
    pd.testing.assert_frame_equal(a, evaluate_fused("sma_cross", bars, first), check_exact=True)

"""Paper engine = backtest engine on replayed history: same fills, drift exactly 0."""
from __future__ import annotations

import pandas as pd
import pytest

from spark_research.backtest import run_backtest
from spark_research.data import generate_bars
from spark_research.gates.drift import fill_drift, match_fills
from spark_research.gates.errors import InvalidBarError
from spark_research.gates.paper import PaperEngine

CASES = [
    ("sma_cross", {"fast": 5, "slow": 20}, 0.001, 0.0005),
    ("rsi_reversion", {"window": 10}, 0.002, 0.001),
    ("donchian_breakout", {"window": 20, "exit_window": 10}, 0.0, 0.0),
]


@pytest.mark.parametrize("strategy,params,fees,slippage", CASES)
def test_paper_fills_equal_backtest_fills(strategy, params, fees, slippage):
    bars = generate_bars("ETHUSDT", n=250, seed=11)
    expected = run_backtest(strategy, bars, params, fees=fees, slippage=slippage).orders
    engine = PaperEngine(strategy, params, symbol="ETHUSDT", fees=fees, slippage=slippage)
    paper = engine.run(bars)
    assert len(expected) >= 4, "the case must trade to prove anything"
    pd.testing.assert_frame_equal(paper[list(expected.columns)], expected, check_exact=True, check_dtype=False)
    # and therefore the drift of paper against the backtest is exactly zero
    drift = match_fills(expected.assign(order_id=paper["order_id"]), paper)
    assert len(drift) == len(expected)
    assert (drift["price_drift_abs"] == 0).all() and (drift["drift_bps"] == 0).all() and (drift["pnl_delta"] == 0).all()
    assert all(fill_drift(f, f).drift_bps == 0 for f in engine.fills)


def test_final_cash_matches_the_backtest_equity():
    bars = generate_bars("BTCUSDT", n=200, seed=5)
    res = run_backtest("sma_cross", bars, {"fast": 4, "slow": 12})
    engine = PaperEngine("sma_cross", {"fast": 4, "slow": 12}, symbol="BTCUSDT")
    engine.run(bars)
    assert engine.equity == pytest.approx(res.stats["final_equity"], rel=1e-12)


def test_on_bar_returns_the_fill_at_the_next_open():
    bars = generate_bars("BTCUSDT", n=120, seed=5)
    engine = PaperEngine("sma_cross", {"fast": 4, "slow": 12}, symbol="BTCUSDT")
    records = bars.to_dict("records")
    for i, bar in enumerate(records):
        fills = engine.on_bar(bar)
        if fills:
            assert fills[0].ts == pd.Timestamp(bar["timestamp"]).value
            assert fills[0].price == bar["open"] * (1 + 0.0005)
            break
    else:
        pytest.fail("no fill in 120 bars")


def test_bad_bars_are_rejected_by_field():
    engine = PaperEngine("sma_cross", symbol="BTCUSDT")
    good = generate_bars("BTCUSDT", n=3, seed=1).to_dict("records")
    engine.on_bar(good[1])
    with pytest.raises(InvalidBarError, match="'timestamp' .* is not after the previous bar"):
        engine.on_bar(good[0])
    with pytest.raises(InvalidBarError, match="field 'close' = nan"):
        engine.on_bar({**good[2], "close": float("nan")})
    with pytest.raises(InvalidBarError, match="lacks field 'open'"):
        engine.on_bar({k: v for k, v in good[2].items() if k != "open"})
    with pytest.raises(InvalidBarError, match="field 'symbol' = 'ETHUSDT'"):
        engine.on_bar({**good[2], "symbol": "ETHUSDT"})
    assert engine.bars_seen == 1


def test_unknown_strategy_and_bad_costs_are_clear_errors():
    with pytest.raises(KeyError, match="unknown strategy 'nope'"):
        PaperEngine("nope", symbol="BTCUSDT")
    with pytest.raises(ValueError, match="slippage must be a fraction in \\[0, 1\\), got 1.5"):
        PaperEngine("sma_cross", symbol="BTCUSDT", slippage=1.5)


USER_STRATEGY = '''
from spark_research.backtest import Param, Signals, Strategy


class ChannelRevert(Strategy):
    """Buy a close under the prior 30-bar low band, sell over the mean: a user's own strategy."""

    window = Param(30, low=5, high=200, step=5)
    band = Param(0.002, low=0.0, high=0.05, step=0.001)

    def signals(self, bars, window, band):
        close = bars["close"]
        low = bars["low"].rolling(window).min().shift(1)
        mean = close.rolling(window).mean()
        return Signals(entries=(close < low * (1 + band)).fillna(False), exits=(close > mean).fillna(False))
'''


@pytest.mark.parametrize("how", ["file", "class"])
def test_paper_engine_runs_a_user_strategy_like_the_backtest(how, tmp_path):
    path = tmp_path / "channel.py"
    path.write_text(USER_STRATEGY)
    ref = f"{path}:ChannelRevert"
    if how == "class":
        from spark_research.backtest.registry import resolve_strategy

        ref = resolve_strategy(ref)
    bars = generate_bars("BTCUSDT", n=400, seed=3)
    params = {"window": 10, "band": 0.003}
    expected = run_backtest(ref, bars, params).orders
    engine = PaperEngine(ref, params, symbol="BTCUSDT")
    paper = engine.run(bars)
    assert engine.label == "ChannelRevert" and len(expected) >= 4
    pd.testing.assert_frame_equal(paper[list(expected.columns)], expected, check_exact=True, check_dtype=False)

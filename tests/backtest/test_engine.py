"""run_backtest: fill timing, costs, parameters, directions, portfolios, parity with vectorbt, metrics."""
import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from spark_research import metrics
from spark_research.backtest import ParameterError, run_backtest
from spark_research.backtest.strategies import SmaCross
from spark_research.data.synthetic import generate_bars


@pytest.fixture(scope="module")
def bars():
    return generate_bars("BTCUSDT", n=6_000, seed=21)


def test_signal_fills_at_next_bar_open_with_slippage(bars):
    res = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}, fees=0.0, slippage=0.001)
    assert res.fill == "next_open"
    sig = SmaCross().signals(bars.set_index("timestamp"), fast=5, slow=20)
    first_signal = sig.entries[sig.entries].index[0]
    first = res.orders.iloc[0]
    idx = bars.index[bars["timestamp"] == first_signal][0]
    assert first["timestamp"] == bars.loc[idx + 1, "timestamp"]
    assert first["price"] == pytest.approx(bars.loc[idx + 1, "open"] * 1.001, rel=1e-12)


def test_close_fill_is_an_option_the_result_names(bars):
    res = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}, fees=0.0, slippage=0.0, fill="close")
    assert res.fill == "close"
    sig = SmaCross().signals(bars.set_index("timestamp"), fast=5, slow=20)
    first_signal = sig.entries[sig.entries].index[0]
    assert res.orders.iloc[0]["timestamp"] == first_signal
    assert res.orders.iloc[0]["price"] == bars.set_index("timestamp").loc[first_signal, "close"]


def test_fees_are_charged_on_traded_value(bars):
    res = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}, fees=0.002, slippage=0.0)
    o = res.orders
    assert np.allclose(o["fees"], o["size"] * o["price"] * 0.002, rtol=1e-12)
    free = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}, fees=0.0, slippage=0.0)
    assert free.stats["final_equity"] > res.stats["final_equity"]


def test_matches_plain_vectorbt_on_the_same_rules(bars):
    res = run_backtest("sma_cross", bars, {"fast": 8, "slow": 30})
    b = bars.set_index("timestamp")
    fast, slow = vbt.MA.run(b["close"], 8).ma, vbt.MA.run(b["close"], 30).ma
    entries = ((fast > slow) & (fast.shift(1) <= slow.shift(1))).shift(1, fill_value=False)
    exits = ((slow > fast) & (slow.shift(1) <= fast.shift(1))).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(b["close"], entries, exits, price=b["open"], fees=0.001, slippage=0.0005,
                                    init_cash=10_000.0, freq="1min")
    assert res.stats["final_equity"] == pf.final_value()
    assert res.stats["trades"] == pf.trades.count()


@pytest.mark.parametrize("params,field", [({"fast": 0}, "fast"), ({"slow": 10_000}, "slow"),
                                          ({"nope": 3}, "nope"), ({"fast": float("nan")}, "fast")])
def test_bad_parameters_are_named(bars, params, field):
    with pytest.raises(ParameterError, match=field):
        run_backtest("sma_cross", bars, params)


def test_constraint_violation_is_explained(bars):
    with pytest.raises(ParameterError, match="fast < slow"):
        run_backtest("sma_cross", bars, {"fast": 50, "slow": 20})


@pytest.mark.parametrize("kw,match", [({"fees": -0.1}, "fees"), ({"slippage": 2.0}, "slippage"),
                                      ({"fill": "same_bar"}, "fill"), ({"direction": "up"}, "direction"),
                                      ({"init_cash": 0}, "init_cash")])
def test_bad_settings_are_named(bars, kw, match):
    with pytest.raises(ValueError, match=match):
        run_backtest("sma_cross", bars, **kw)


def test_unknown_strategy_lists_the_shipped_ones(bars):
    with pytest.raises(KeyError, match="sma_cross"):
        run_backtest("magic", bars)


def test_long_short_trades_both_sides(bars):
    res = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}, direction="both")
    assert set(res.trades["side"]) == {"long", "short"}
    long_only = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20})
    assert set(long_only.trades["side"]) == {"long"}


def test_multi_symbol_portfolio_shares_one_cash_pool():
    multi = pd.concat([generate_bars(s, n=3_000, seed=4) for s in ("BTCUSDT", "ETHUSDT")])
    res = run_backtest("donchian_breakout", multi, {"window": 30, "exit_window": 10}, init_cash=20_000)
    assert res.symbols == ["BTCUSDT", "ETHUSDT"]
    assert set(res.trades["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert res.equity.iloc[0] == pytest.approx(20_000)
    assert len(res.equity) == 3_000
    # each entry buys init_cash / n_symbols of notional (vectorbt values it at the bar's
    # valuation price, so the filled notional differs by that bar's move and slippage)
    # and an entry never spends more than the shared pool holds
    buys = res.orders[res.orders["side"] == "buy"].assign(notional=lambda d: d["size"] * d["price"])
    assert np.allclose(buys.groupby("symbol")["notional"].first(), 10_000, rtol=0.02)
    assert (buys["notional"] <= 10_000 * 1.02).all()
    assert (res.portfolio.cash() >= -1e-6).all()


def test_stats_have_every_field_and_drawdown_is_consistent(bars):
    res = run_backtest("rsi_reversion", bars)
    assert set(res.stats) == {"total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "trades", "final_equity"}
    assert res.drawdown.min() == pytest.approx(res.stats["max_drawdown"], rel=1e-9)
    assert res.stats["final_equity"] == pytest.approx(res.equity.iloc[-1])
    assert res.stats["trades"] == len(res.trades)


def test_runtime_and_fill_metrics_are_recorded(bars):
    hist = metrics.BACKTEST_RUNTIME_MS.labels(strategy="donchian_breakout")
    fills = metrics.SIM_FILLS.labels(strategy="donchian_breakout")
    n_before, f_before = hist._sum.get(), fills._value.get()
    count_before = sum(b.get() for b in hist._buckets)
    res = run_backtest("donchian_breakout", bars)
    assert sum(b.get() for b in hist._buckets) == count_before + 1
    assert hist._sum.get() - n_before == pytest.approx(res.runtime_ms)
    assert fills._value.get() - f_before == len(res.orders)

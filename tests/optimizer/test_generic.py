"""The generic sweep path gives run_backtest's numbers for any strategy, every stat, to 1e-9.

The strategies below are written the way a user writes one (pandas on the bars, a few
``Param``s); none has a fused kernel. Each grid is compared combination by combination with
``run_backtest`` (vectorbt's ``Portfolio.from_signals``) for every direction, both fills,
all-cash and fixed-value sizing, and non-default costs.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import STAT_FIELDS, STRATEGIES, Param, ParameterError, Signals, Strategy, run_backtest
from spark_research.backtest.engine import strategy_signals, to_frame
from spark_research.data import generate_bars
from spark_research.optimizer.generic import SIGNAL_KINDS, evaluate_generic, pack_signals, warm_generic


# --------------------------------------------------------------------------- user strategies


class BollingerReversion(Strategy):
    """Buy a close below the lower band, sell when the close is back above the mean."""

    window = Param(20, low=5, high=200, step=5)
    k = Param(2.0, low=0.5, high=4.0, step=0.25)

    def signals(self, bars, window, k):
        close = bars["close"]
        mean = close.rolling(int(window)).mean()
        lower = mean - k * close.rolling(int(window)).std()
        below, above = close < lower, close > mean
        return Signals(entries=below & ~below.shift(1, fill_value=False),
                       exits=above & ~above.shift(1, fill_value=False))


class TrendLongShort(Strategy):
    """Long on a fast/slow cross up; short when the close sinks ``band`` below the slow MA."""

    fast = Param(10, low=2, high=100)
    slow = Param(50, low=10, high=400, step=10)
    band = Param(0.002, low=0.0, high=0.05, step=0.001)

    @classmethod
    def constraint(cls, params):
        """fast < slow"""
        return params["fast"] < params["slow"]

    def signals(self, bars, fast, slow, band):
        close = bars["close"]
        f, s = close.rolling(int(fast)).mean(), close.rolling(int(slow)).mean()
        up = (f > s) & (f.shift(1) <= s.shift(1))
        down = (f < s) & (f.shift(1) >= s.shift(1))
        sunk = close < s * (1 - band)
        return Signals(entries=up, exits=down, short_entries=sunk & ~sunk.shift(1, fill_value=False),
                       short_exits=close > f)


class RareMomentum(Strategy):
    """Buy a ``threshold`` rise over ``window`` bars, sell a fall of half of it: a handful of trades."""

    window = Param(60, low=10, high=500, step=10)
    threshold = Param(0.015, low=0.005, high=0.1, step=0.005)

    def signals(self, bars, window, threshold):
        move = bars["close"].pct_change(int(window))
        up, down = move > threshold, move < -threshold / 2
        return Signals(entries=up & ~up.shift(1, fill_value=False), exits=down & ~down.shift(1, fill_value=False))


class Moonshot(Strategy):
    """Buy when the price doubles within ``window`` bars (it never does here)."""

    window = Param(50, low=5, high=500, step=5)

    def signals(self, bars, window):
        move = bars["close"].pct_change(int(window))
        return Signals(entries=move > 1.0, exits=move < -0.5)


class Churn(Strategy):
    """Enter every ``period`` bars, exit every ``hold`` bars (both on one bar: the signals cancel)."""

    period = Param(6, low=2, high=50)
    hold = Param(3, low=1, high=50)

    def signals(self, bars, period, hold):
        bar_no = pd.Series(np.arange(len(bars)), index=bars.index)
        return Signals(entries=bar_no % period == 0, exits=bar_no % hold == 0)


GRIDS = {
    "bollinger": (BollingerReversion, [{"window": w, "k": k} for w in (10, 20, 40, 80) for k in (1.0, 2.0, 3.0)]),
    "long_short": (TrendLongShort, [{"fast": f, "slow": s, "band": b} for f, s, b in
                                    itertools.product((5, 20), (30, 100, 200), (0.0, 0.003))]),
    "rare": (RareMomentum, [{"window": w, "threshold": t} for w in (30, 60, 120) for t in (0.01, 0.015, 0.02)]),
    "never": (Moonshot, [{"window": w} for w in (10, 50, 200)]),
    "churn": (Churn, [{"period": p, "hold": h} for p in (5, 7, 9) for h in (2, 3, 4)]),
}

#: engine options: all cash with heavier costs; a fixed value per entry; a fixed value above the cash
OPTIONS = {
    "all_cash": dict(size=None, fees=0.0025, slippage=0.001, init_cash=10_000.0),
    "fixed": dict(size=3_000.0, fees=0.0005, slippage=0.0, init_cash=20_000.0),
    "oversized": dict(size=45_000.0, fees=0.001, slippage=0.0002, init_cash=15_000.0),
}


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    warm_generic()  # the numba kernel once per session (from the disk cache after the first run)


@pytest.fixture(scope="module")
def bars():
    return generate_bars("ETHUSDT", n=5_000, seed=21)


def assert_stats_equal(got: pd.Series, ref: dict, context) -> None:
    """Every stat equal to 1e-9 relative, NaN and inf in the same places."""
    for stat in STAT_FIELDS:
        a, b = float(got[stat]), float(ref[stat])
        if np.isnan(b) or np.isinf(b):
            assert a == b or (np.isnan(a) and np.isnan(b)), (context, stat, a, b)
        else:
            assert a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b)), (context, stat, a, b)


def check_grid(cls, combos, bars, direction, fill, options) -> list[dict]:
    got = evaluate_generic(cls, bars, pd.DataFrame(combos), direction=direction, fill=fill, **options)
    refs = []
    for i, params in enumerate(combos):
        ref = run_backtest(cls, bars, params, direction=direction, fill=fill, **options).stats
        assert_stats_equal(got.iloc[i], ref, (cls.__name__, params, direction, fill, options))
        refs.append(ref)
    return refs


# --------------------------------------------------------------------------- equality with run_backtest


@pytest.mark.parametrize("options", sorted(OPTIONS))
@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("direction", ["longonly", "shortonly", "both"])
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_user_strategy_grid_matches_run_backtest(grid, direction, fill, options, bars):
    cls, combos = GRIDS[grid]
    refs = check_grid(cls, combos, bars, direction, fill, OPTIONS[options])
    trades = [r["trades"] for r in refs]
    if grid == "never":
        assert trades == [0] * len(combos)
    elif grid == "rare":
        assert 0 < max(trades) <= 60 and min(trades) <= 10, trades
    elif grid == "churn":  # (period 9, hold 3: every entry meets an exit and the two cancel)
        assert sorted(trades)[1] > 100, trades
    else:  # (a 10-bar band cannot be 3 deviations wide: that combination never trades)
        assert np.mean(np.array(trades) > 0) > 0.9, trades


def test_a_strategy_that_never_trades_has_vectorbts_edge_values(bars):
    out = evaluate_generic(Moonshot, bars, pd.DataFrame([{"window": 50}]))
    row = out.iloc[0]
    assert row["trades"] == 0 and np.isnan(row["win_rate"])
    assert row["total_return"] == 0.0 and row["max_drawdown"] == 0.0 and row["final_equity"] == 10_000.0
    assert row["sharpe"] == np.inf and row["sortino"] == np.inf  # zero deviation, as vectorbt reports it


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_shipped_strategies_through_the_generic_path_match_run_backtest(name, bars):
    combos = {
        "sma_cross": [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}, {"fast": 30, "slow": 35}],
        "rsi_reversion": [{"window": 14, "lower": 30, "upper": 70}, {"window": 5, "lower": 20, "upper": 80}],
        "donchian_breakout": [{"window": 55, "exit_window": 20}, {"window": 10, "exit_window": 10}],
    }[name]
    cls = STRATEGIES[name]
    for direction, fill, options in [("longonly", "next_open", {}), ("both", "close", OPTIONS["fixed"]),
                                     ("shortonly", "next_open", OPTIONS["all_cash"])]:
        check_grid(cls, combos, bars, direction, fill, options)
    out = evaluate_generic(name, bars, pd.DataFrame(combos))  # a registry name works too
    assert out["trades"].gt(0).all()


def test_a_short_outgrowing_the_cash_is_covered_partially_as_vectorbt_does():
    # the price triples while a 4x leveraged short is open: the exit can only buy back part of it
    bars = generate_bars("BTCUSDT", n=3_000, seed=4)
    ramp = np.concatenate([np.linspace(1.0, 3.0, 1_500), np.linspace(3.0, 1.0, 1_500)])
    for col in ("open", "high", "low", "close"):
        bars[col] = bars[col] * ramp

    class ShortTheRally(Strategy):
        start = Param(100, low=0, high=3_000)
        stop = Param(1_400, low=0, high=3_000)

        def signals(self, bars, start, stop):
            bar_no = pd.Series(np.arange(len(bars)), index=bars.index)
            return Signals(entries=bar_no == start, exits=bar_no == stop)

    combos = [{"start": 100, "stop": 1_400}, {"start": 100, "stop": 2_900}, {"start": 1_600, "stop": 2_900}]
    for options in (dict(size=40_000.0, init_cash=10_000.0), dict(size=None)):
        check_grid(ShortTheRally, combos, bars, "shortonly", "next_open", options)
        check_grid(ShortTheRally, combos, bars, "both", "close", options)
    res = run_backtest(ShortTheRally, bars, combos[0], direction="shortonly", size=40_000.0, init_cash=10_000.0)
    sold, bought = res.orders["size"]
    assert bought < sold  # the cover was cut to the cash there was
    assert list(res.trades["status"]) == ["closed", "open"]  # the covered part closed, the rest still open


def test_checkpoint_values_are_the_portfolio_equity(bars):
    combos = [{"fast": 5, "slow": 30, "band": 0.0}, {"fast": 20, "slow": 100, "band": 0.003}]
    ck = np.array([0, 1, 777, 2_500, 4_998, len(bars) - 1])
    for direction, fill, size in [("both", "next_open", None), ("longonly", "close", 2_500.0)]:
        stats, values = evaluate_generic(TrendLongShort, bars, pd.DataFrame(combos), direction=direction, fill=fill,
                                         size=size, checkpoints=ck)
        assert values.shape == (len(ck), len(combos)) and len(stats) == len(combos)
        for k, params in enumerate(combos):
            equity = run_backtest(TrendLongShort, bars, params, direction=direction, fill=fill, size=size).equity
            np.testing.assert_allclose(values[:, k], equity.to_numpy()[ck], rtol=1e-12)


def test_bars_with_missing_prices_match_run_backtest(bars):
    # a gap in the open (or the close, for close fills) skips that bar's order; a missing close is
    # carried forward for the equity, and a missing last close leaves the open trade's PnL NaN
    gappy = bars.copy()
    rng = np.random.default_rng(3)
    for col in ("open", "close"):
        gappy.loc[rng.choice(len(gappy), 150, replace=False), col] = np.nan
    gappy.loc[[0, len(gappy) - 1], "close"] = np.nan
    cls, combos = GRIDS["churn"]
    for direction, fill, size in [("both", "next_open", None), ("shortonly", "close", 2_500.0),
                                  ("longonly", "close", None)]:
        check_grid(cls, combos[:4], gappy, direction, fill, {"size": size})
        stats, values = evaluate_generic(cls, gappy, pd.DataFrame(combos[:1]), direction=direction, fill=fill,
                                         size=size, checkpoints=np.arange(len(gappy)))
        equity = run_backtest(cls, gappy, combos[0], direction=direction, fill=fill, size=size).equity
        np.testing.assert_allclose(values[:, 0], equity.to_numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- signals and the frame


@pytest.mark.parametrize("cls,direction,fill", [
    (BollingerReversion, "longonly", "next_open"), (BollingerReversion, "shortonly", "close"),
    (BollingerReversion, "both", "next_open"), (TrendLongShort, "longonly", "close"),
])
def test_packed_signal_bars_are_where_run_backtest_places_the_signals(cls, direction, fill, bars):
    frame = to_frame(bars)
    combos = GRIDS["long_short" if cls is TrendLongShort else "bollinger"][1][:3]
    packed = pack_signals(cls, frame, pd.DataFrame(combos), direction, fill)
    for k, params in enumerate(combos):
        sig, _ = strategy_signals(cls, frame, params, direction, fill)
        placed = [sig.entries, sig.exits, sig.short_entries, sig.short_exits]
        if sig.short_entries is None and direction == "shortonly":  # vectorbt's direction mode
            placed = [None, None, sig.entries, sig.exits]
        for kind, series in zip(SIGNAL_KINDS, placed):
            expected = np.empty(0, dtype=np.int64) if series is None else np.flatnonzero(series.to_numpy())
            np.testing.assert_array_equal(packed.bars(k, kind), expected, err_msg=f"{params} {kind}")


def test_stats_are_indexed_like_the_combinations_and_typed(bars):
    combos = pd.DataFrame(GRIDS["churn"][1][:3], index=["a", "b", "c"])
    out = evaluate_generic(Churn, bars, combos)
    assert list(out.index) == ["a", "b", "c"] and list(out.columns) == list(STAT_FIELDS)
    assert out["trades"].dtype == np.int64
    assert evaluate_generic(Churn, bars, combos.iloc[:0]).shape == (0, len(STAT_FIELDS))


def test_bars_with_a_utc_index_or_a_timestamp_column_give_the_same_stats(bars):
    combos = pd.DataFrame(GRIDS["bollinger"][1][:4])
    a = evaluate_generic(BollingerReversion, bars, combos)
    b = evaluate_generic(BollingerReversion, bars.set_index("timestamp"), combos)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_results_are_deterministic_bit_for_bit(bars):
    combos = pd.DataFrame(GRIDS["long_short"][1])
    a = evaluate_generic(TrendLongShort, bars, combos, direction="both")
    b = evaluate_generic(TrendLongShort, bars, combos, direction="both")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# --------------------------------------------------------------------------- errors name what is wrong


def test_a_bad_combination_is_named(bars):
    with pytest.raises(ParameterError, match="'fast' = 500"):
        evaluate_generic(TrendLongShort, bars, pd.DataFrame([{"fast": 5, "slow": 30}, {"fast": 500, "slow": 30}]))


def test_bad_engine_options_are_named(bars):
    combos = pd.DataFrame([{"window": 20}])
    with pytest.raises(ValueError, match="fill must be one of"):
        evaluate_generic(Moonshot, bars, combos, fill="vwap")
    with pytest.raises(ValueError, match="direction must be one of"):
        evaluate_generic(Moonshot, bars, combos, direction="sideways")
    with pytest.raises(ValueError, match="fees must be a fraction"):
        evaluate_generic(Moonshot, bars, combos, fees=1.5)
    with pytest.raises(ValueError, match="size must be a value > 0"):
        evaluate_generic(Moonshot, bars, combos, size=-100.0)
    with pytest.raises(ValueError, match="checkpoints must be increasing"):
        evaluate_generic(Moonshot, bars, combos, checkpoints=np.array([10, 5]))


def test_signals_of_the_wrong_length_are_named(bars):
    class Short(Strategy):
        window = Param(5, low=1, high=10)

        def signals(self, bars, window):
            close = bars["close"].iloc[:-window]
            return Signals(entries=close > close.shift(1), exits=close < close.shift(1))

    with pytest.raises(ValueError, match=r"Short \{'window': 5\}: long_entries: expected 5000 values"):
        evaluate_generic(Short, bars, pd.DataFrame([{"window": 5}]))

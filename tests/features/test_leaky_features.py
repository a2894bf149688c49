"""Leaky features are refused at registration, with the feature and the first changed bar named.

Each leak shape is a way real research code peeks at the future. The registration check
truncates the (seeded, synthetic) check bars after bar *t* for many *t* and compares; the
first bar it names is the earliest bar whose value changed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.features.registry import LeakyFeatureError, feature, list_features


def next_close(bars):
    return bars["close"].shift(-1) / bars["close"] - 1


def centred_sma(bars):
    return bars["close"].rolling(11, center=True).mean()


def full_sample_zscore(bars):
    c = bars["close"]
    return (c - c.mean()) / c.std()


def bfilled_sma(bars):
    return bars["close"].rolling(30).mean().bfill()


def future_high(bars):
    return bars["high"][::-1].rolling(5, min_periods=1).max()[::-1]


def daily_mean(bars):
    c = bars["close"]
    return c.groupby(c.index.floor("D")).transform("mean")


def last_price_scaled(bars):
    c = np.asarray(bars["close"])
    return c / c[-1]


def rank_of_whole_series(bars):
    return bars["volume"].rank(pct=True)


def interpolated_gaps(bars):
    c = bars["close"].where(np.arange(len(bars)) % 7 != 3)  # every 7th bar "missing"
    return c.interpolate()


LEAKS = {
    "next_close": (next_close, 0),
    "centred_sma": (centred_sma, 5),
    "full_sample_zscore": (full_sample_zscore, 0),
    "bfilled_sma": (bfilled_sma, 29),
    "future_high": (future_high, 0),
    "daily_mean": (daily_mean, 0),
    "last_price_scaled": (last_price_scaled, 0),
    "rank_of_whole_series": (rank_of_whole_series, 0),
    "interpolated_gaps": (interpolated_gaps, 0),
}


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_leaky_feature_is_refused_naming_it_and_the_first_bar(clean_registry, name):
    func, lookback = LEAKS[name]
    with pytest.raises(LeakyFeatureError) as info:
        feature(f"leak_{name}", lookback=lookback)(func)
    err = info.value
    assert err.feature == f"leak_{name}"
    assert f"feature 'leak_{name}' looks ahead, refused" in str(err)
    assert f"at bar {err.first_bar} (" in str(err)
    assert err.first_bar == min(v.bar for v in err.report.violations)
    assert f"leak_{name}" not in list_features()


def test_first_bar_named_is_where_the_leak_first_shows(clean_registry):
    # shift(-1): bar 1 is the earliest bar a cut (keeping bars 0..1) can change
    with pytest.raises(LeakyFeatureError) as info:
        feature("leak_next", lookback=0)(next_close)
    assert info.value.first_bar == 1
    # bfill of a 30-bar warm-up: the filled bars 0..28 change as soon as bar 29 is cut away
    with pytest.raises(LeakyFeatureError) as info:
        feature("leak_bfill", lookback=29)(bfilled_sma)
    assert info.value.first_bar == 0
    assert info.value.report.violations[0].cut_bar < 29


def test_cross_asset_feature_peeking_at_the_universe_is_refused(clean_registry):
    def universe_next(bars, universe):
        return np.log(universe.shift(-1)).mean(axis=1) - np.log(bars["close"])

    with pytest.raises(LeakyFeatureError, match="'leak_universe_next' looks ahead"):
        feature("leak_universe_next", lookback=0, universe=True)(universe_next)


def test_a_multi_column_feature_is_refused_when_one_column_leaks(clean_registry):
    def two(bars):
        return pd.DataFrame({"ok": bars["close"].diff(), "bad": bars["close"].diff().shift(-2)})

    with pytest.raises(LeakyFeatureError, match=r"series leak_two:bad"):
        feature("leak_two", lookback=1)(two)


def test_causal_cousins_of_the_leaks_register(clean_registry):
    feature("prev_close_ret", lookback=1)(lambda bars: bars["close"] / bars["close"].shift(1) - 1)
    feature("trailing_sma_11", lookback=10)(lambda bars: bars["close"].rolling(11).mean())
    assert {"prev_close_ret", "trailing_sma_11"} <= set(list_features())


def test_expanding_feature_passes_lookahead_but_fails_its_lookback(clean_registry):
    """An expanding mean is causal but needs all history: its lookback cannot be honest, and is refused."""
    from spark_research.features.registry import LookbackError

    with pytest.raises(LookbackError, match="'expanding_mean' declares lookback=50"):
        feature("expanding_mean", lookback=50)(lambda bars: bars["close"].expanding().mean())


# -- trade flow: the check bars carry the flow of seeded synthetic trades ------------------------------------


def next_bar_buy_volume(bars):
    return bars["buy_volume"].shift(-1) / (bars["buy_volume"] + bars["sell_volume"])


def whole_series_vwap(bars):
    notional, volume = bars["notional"], bars["buy_volume"] + bars["sell_volume"]
    return bars["close"] / (notional.sum() / volume.sum()) - 1


def forward_imbalance(bars):
    buy, sell = bars["buy_volume"][::-1].rolling(10).sum()[::-1], bars["sell_volume"][::-1].rolling(10).sum()[::-1]
    return (buy - sell) / (buy + sell)


TRADE_LEAKS = {
    "next_bar_buy_volume": (next_bar_buy_volume, 0),
    "whole_series_vwap": (whole_series_vwap, 0),
    "forward_imbalance": (forward_imbalance, 0),
}


@pytest.mark.parametrize("name", sorted(TRADE_LEAKS))
def test_leaky_trade_feature_is_refused_naming_it(clean_registry, name):
    func, lookback = TRADE_LEAKS[name]
    with pytest.raises(LeakyFeatureError, match=f"feature 'leak_{name}' looks ahead, refused") as info:
        feature(f"leak_{name}", lookback=lookback, trades=True)(func)
    assert info.value.first_bar == min(v.bar for v in info.value.report.violations)
    assert f"leak_{name}" not in list_features()


def test_next_bar_buy_volume_is_caught_at_the_first_bar_a_cut_can_change(clean_registry):
    with pytest.raises(LeakyFeatureError) as info:
        feature("leak_next_buy", lookback=0, trades=True)(next_bar_buy_volume)
    assert info.value.first_bar == 1 and "series leak_next_buy" in str(info.value)


def test_causal_trade_feature_registers_and_undeclared_flow_is_refused_with_a_hint(clean_registry):
    from spark_research.features.registry import FeatureError, get_feature

    def buy_share_10(bars):
        buy, sell = bars["buy_volume"].rolling(10).sum(), bars["sell_volume"].rolling(10).sum()
        return buy / (buy + sell)

    feature("buy_share_10", lookback=9, trades=True)(buy_share_10)
    assert get_feature("buy_share_10").trades
    with pytest.raises(FeatureError, match=r"'buy_share_undeclared' failed on \d+ check bars \(it reads trade-flow "
                                           r"columns: declare trades=True\)"):
        feature("buy_share_undeclared", lookback=9)(buy_share_10)


def test_trade_feature_hash_covers_the_aggregation_of_trades(monkeypatch):
    """A changed aggregation changes every trade-flow feature's values, so it changes their hashes."""
    from spark_research.features import trades
    from spark_research.features.registry import code_hash

    def f(bars):
        return bars["buy_volume"] * 1.0

    before = code_hash(f, {}, 0, trades=True)
    assert before != code_hash(f, {}, 0)

    def aggregate_trades(*args):  # another definition of the aggregation
        return None

    monkeypatch.setattr(trades, "aggregate_trades", aggregate_trades)
    assert code_hash(f, {}, 0, trades=True) != before


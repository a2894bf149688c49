"""The feature registry, the shipped features (against independent pandas formulas), the live path, the CLI.

The generic properties (lookahead, lookback, NaN only while warming up, live = batch) are checked
on every registered feature, the trade-flow ones included: their bars carry the flow of seeded
synthetic trades (``flow_bars``); their own behaviour is in ``test_trade_features.py``.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from spark_research.features import registry
from spark_research.features.live import LiveFeatures
from spark_research.features.registry import (FeatureError, LookbackError, UnknownFeature, as_bars, code_hash,
                                              compute_features, feature, get_feature, list_features)

FAMILIES = {
    "returns": ["ret_1", "ret_5", "ret_20", "logret_1", "logret_5", "logret_20"],
    "realised volatility": ["rv_cc_20", "rv_parkinson_20", "rv_gk_20"],
    "oscillators": ["rsi_14", "macd", "bb_pos_20"],
    "volume": ["volume_z_50", "dollar_volume_z_50"],
    "autocorrelation": ["autocorr_50"],
    "fractional differentiation": ["fracdiff_04"],
    "calendar": ["time_of_day", "day_of_week"],
    "cross-asset": ["xs_ret_1", "xs_ret_20"],
}


@pytest.fixture(scope="module")
def computed(flow_bars, universe) -> pd.DataFrame:
    """Every registered feature (bar, cross-asset and trade-flow) of BTCUSDT."""
    return compute_features(flow_bars["BTCUSDT"], None, universe=universe)


def _close(a, b, rtol=1e-9) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=1e-12,
                               equal_nan=True)


# -- the shipped set -------------------------------------------------------------------------------


def test_at_least_15_features_ship_across_every_family():
    names = list_features()
    for family, members in FAMILIES.items():
        assert set(members) <= set(names), f"{family}: missing {set(members) - set(names)}"
    assert len({n for m in FAMILIES.values() for n in m}) >= 15


def test_every_shipped_feature_declares_lookback_params_and_a_16_digit_hash():
    for name in (n for m in FAMILIES.values() for n in m):
        f = get_feature(name)
        assert f.lookback >= 0 and len(f.code_hash) == 16 and int(f.code_hash, 16) >= 0
        assert f.columns and all(c.startswith(name) for c in f.columns)
    assert get_feature("macd").columns == ("macd_line", "macd_hist")
    assert get_feature("time_of_day").columns == ("time_of_day_sin", "time_of_day_cos")


def test_every_shipped_feature_passes_the_lookahead_check_on_other_bars(flow_bars, universe):
    from spark_research.backtest.lookahead import check_series_lookahead

    b = flow_bars["ETHUSDT"]
    for name in list_features():
        f = get_feature(name)
        report = check_series_lookahead(lambda x, f=f: f.compute(x, universe), b, name,
                                        {"lookback": f.lookback + 1}, n_cuts=6, seed=3)
        assert report.passed, str(report)
        assert report.cuts >= 10


def test_values_at_bar_t_depend_only_on_the_declared_lookback_bit_for_bit(flow_bars, universe, computed):
    """Computed on a suffix of the bars, every row with its full lookback equals the full-history row exactly."""
    b = flow_bars["BTCUSDT"]
    for start in (1, 777):
        part = compute_features(b.iloc[start:], None, universe=universe)
        for name in list_features():
            f = get_feature(name)
            cols = list(f.columns)
            got = part[cols].to_numpy()[f.lookback:]
            want = computed[cols].to_numpy()[start + f.lookback:]
            assert np.array_equal(got, want, equal_nan=True), name


def test_feature_rows_are_nan_only_during_the_lookback(computed):
    for name in list_features():
        f = get_feature(name)
        values = computed[list(f.columns)].to_numpy()
        assert np.isfinite(values[f.lookback:]).all(), name
        if f.lookback:
            assert np.isnan(values[f.lookback - 1]).any(), f"{name}: value before its lookback is filled"


# -- values against independent pandas formulas -------------------------------------------------------


def test_returns_match_pandas(bars, computed):
    close = bars["BTCUSDT"]["close"]
    for h in (1, 5, 20):
        _close(computed[f"ret_{h}"], close.pct_change(h))
        _close(computed[f"logret_{h}"], np.log(close).diff(h))


def test_realised_volatilities_match_their_formulas(bars, computed):
    b = bars["BTCUSDT"]
    _close(computed["rv_cc_20"], np.log(b["close"]).diff().rolling(20).std())
    hl2 = np.log(b["high"] / b["low"]) ** 2
    _close(computed["rv_parkinson_20"], np.sqrt(hl2.rolling(20).mean() / (4 * np.log(2))))
    gk = 0.5 * hl2 - (2 * np.log(2) - 1) * np.log(b["close"] / b["open"]) ** 2
    _close(computed["rv_gk_20"], np.sqrt(gk.rolling(20).mean().clip(lower=0)))


def test_oscillators_match_their_formulas(bars, computed):
    close = bars["BTCUSDT"]["close"]
    d = close.diff()
    up, down = d.clip(lower=0).rolling(14).sum(), (-d).clip(lower=0).rolling(14).sum()
    _close(computed["rsi_14"], 100 * up / (up + down))
    _close(computed["bb_pos_20"], (close - close.rolling(20).mean()) / (2.0 * close.rolling(20).std()))

    def ema(x: pd.Series, span: int) -> pd.Series:
        w = (1 - 2 / (span + 1)) ** np.arange(4 * span)
        return x.rolling(4 * span).apply(lambda v: (v[::-1] * w).sum() / w.sum(), raw=True)

    line = ema(close, 12) / ema(close, 26) - 1
    _close(computed["macd_line"], line, rtol=1e-7)
    _close(computed["macd_hist"], line - ema(line, 9), rtol=1e-6)


def test_volume_autocorr_and_fracdiff_match_their_formulas(bars, computed):
    b = bars["BTCUSDT"]
    v = b["volume"]
    _close(computed["volume_z_50"], (v - v.rolling(50).mean()) / v.rolling(50).std(), rtol=1e-7)
    dv = np.log(b["close"] * v)
    _close(computed["dollar_volume_z_50"], (dv - dv.rolling(50).mean()) / dv.rolling(50).std(), rtol=1e-7)
    r = np.log(b["close"]).diff()
    _close(computed["autocorr_50"], r.rolling(50).corr(r.shift(1)), rtol=1e-6)
    # AFML snippet 5.3: w_k = -w_{k-1} (d - k + 1) / k, cut at |w_k| < 1e-4
    w = [1.0]
    while abs(nxt := -w[-1] * (0.4 - len(w) + 1) / len(w)) >= 1e-4:
        w.append(nxt)
    assert len(w) == get_feature("fracdiff_04").lookback + 1
    lc = np.log(b["close"])
    _close(computed["fracdiff_04"], lc.rolling(len(w)).apply(lambda x: np.dot(w[::-1], x), raw=True))


def test_calendar_encodings_use_utc_time_of_day_and_monday_zero(bars, computed):
    idx = bars["BTCUSDT"].index
    seconds = idx.hour * 3600 + idx.minute * 60 + idx.second
    _close(computed["time_of_day_sin"], np.sin(2 * np.pi * seconds / 86400))
    _close(computed["time_of_day_cos"], np.cos(2 * np.pi * seconds / 86400))
    _close(computed["day_of_week_sin"], np.sin(2 * np.pi * idx.day_of_week / 7))
    _close(computed["day_of_week_cos"], np.cos(2 * np.pi * idx.day_of_week / 7))


def test_cross_asset_return_is_own_return_minus_universe_mean(bars, universe, computed):
    for h in (1, 20):
        own = np.log(bars["BTCUSDT"]["close"]).diff(h)
        _close(computed[f"xs_ret_{h}"], own - np.log(universe).diff(h).mean(axis=1))


def test_cross_asset_mean_skips_symbols_without_a_bar(bars, universe):
    holes = universe.copy()
    holes.iloc[100:200, 1] = np.nan  # ETH missing for 100 bars
    got = compute_features(bars["BTCUSDT"], ["xs_ret_1"], universe=holes)["xs_ret_1"]
    own = np.log(bars["BTCUSDT"]["close"]).diff()
    _close(got, own - np.log(holes).diff().mean(axis=1, skipna=True))


def test_cross_asset_feature_without_universe_names_it():
    from spark_research.data.synthetic import generate_bars

    with pytest.raises(FeatureError, match="'xs_ret_1' is cross-asset"):
        compute_features(generate_bars("BTCUSDT", n=50, seed=1), ["xs_ret_1"])


# -- registry, hashes, user features ---------------------------------------------------------------


def test_code_hash_changes_with_params_lookback_and_source():
    def f(bars, window):
        return bars["close"].rolling(window).mean()

    def g(bars, window):
        return bars["close"].rolling(window).median()

    base = code_hash(f, {"window": 5}, 4)
    assert base == code_hash(f, {"window": 5}, 4)
    assert len({base, code_hash(f, {"window": 6}, 4), code_hash(f, {"window": 5}, 5), code_hash(g, {"window": 5}, 4)}) == 4


def _module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_code_hash_follows_module_helpers(tmp_path):
    src = """
        import numpy as np
        def _scale(x):
            return x * {k}
        def feat(bars):
            return _scale(np.asarray(bars["close"]))
    """
    a = _module(tmp_path, "feat_helper_a", src.format(k=2))
    b = _module(tmp_path, "feat_helper_b", src.format(k=3))
    assert code_hash(a.feat, {}, 0) != code_hash(b.feat, {}, 0)


def test_code_hash_follows_helpers_called_through_a_module(tmp_path):
    """``import mylib as h; h.scale(...)``: a change inside mylib changes the feature's hash."""
    sys.path.insert(0, str(tmp_path))
    try:
        for suffix, k in (("a", 2), ("b", 3)):
            (tmp_path / f"scale_lib_{suffix}.py").write_text(f"def scale(x):\n    return x * {k}\n")
        feats = [_module(tmp_path, f"feat_mod_{suffix}", f"""
            import numpy as np
            import scale_lib_{suffix} as h
            def feat(bars):
                return h.scale(np.asarray(bars["close"]))
        """) for suffix in ("a", "b")]
    finally:
        sys.path.remove(str(tmp_path))
    assert code_hash(feats[0].feat, {}, 0) != code_hash(feats[1].feat, {}, 0)
    # the user's module is followed, installed libraries (numpy here) are not
    assert [h.split("\n")[0] for h in registry._helpers(feats[0].feat, set())] == ["# h.scale"]


def test_user_feature_from_a_file_registers_like_a_shipped_one(tmp_path, clean_registry, bars):
    _module(tmp_path, "my_user_features", """
        from spark_research.features import feature

        @feature("close_over_sma_30", lookback=29, window=30)
        def close_over_sma(bars, window):
            '''Close over its simple moving average.'''
            return bars["close"] / bars["close"].rolling(window).mean() - 1
    """)
    f = get_feature("close_over_sma_30")
    assert "close_over_sma_30" in list_features()
    assert f.origin == "my_user_features:close_over_sma" and f.description.startswith("Close over")
    out = compute_features(bars["BTCUSDT"], ["ret_1", "close_over_sma_30"])
    close = bars["BTCUSDT"]["close"]
    _close(out["close_over_sma_30"], close / close.rolling(30).mean() - 1)


def test_rerunning_a_cell_replaces_but_another_origin_needs_replace(clean_registry):
    def cell_feature(bars):
        return bars["close"] * 1.0

    feature("cell_feat", lookback=0)(cell_feature)
    first = get_feature("cell_feat").code_hash

    def cell_feature(bars):  # noqa: F811 - the same cell run again with a new body
        return bars["close"] * 2.0

    feature("cell_feat", lookback=0)(cell_feature)
    assert get_feature("cell_feat").code_hash != first

    def other(bars):
        return bars["close"] * 3.0

    with pytest.raises(FeatureError, match="'cell_feat' is already registered from .*replace=True"):
        feature("cell_feat", lookback=0)(other)
    feature("cell_feat", lookback=0, replace=True)(other)
    assert get_feature("cell_feat").origin.endswith(":test_rerunning_a_cell_replaces_but_another_origin_needs_replace.<locals>.other")


def test_too_short_lookback_is_refused_naming_feature_and_bar(clean_registry):
    def sma10(bars):
        return bars["close"].rolling(10).mean()

    with pytest.raises(LookbackError, match=r"'sma10_short' declares lookback=5 but needs more history.*at bar \d+"):
        feature("sma10_short", lookback=5)(sma10)
    assert "sma10_short" not in list_features()
    feature("sma10_ok", lookback=9)(sma10)
    assert get_feature("sma10_ok").lookback == 9


@pytest.mark.parametrize("kwargs, match", [
    ({"lookback": -1}, "lookback must be an integer >= 0, got -1"),
    ({"lookback": 2.5}, "lookback must be an integer >= 0, got 2.5"),
    ({"lookback": 3, "window": 3, "nope": 1}, r"cannot be called as \(bars, \*\*params\)"),
])
def test_bad_definitions_name_the_field(clean_registry, kwargs, match):
    def f(bars, window=3):
        return bars["close"].rolling(window).mean()

    with pytest.raises(FeatureError, match=match):
        feature("bad_def", **kwargs)(f)


def test_feature_returning_misaligned_values_is_refused(clean_registry):
    def short(bars):
        return bars["close"].to_numpy()[:-1]

    with pytest.raises(FeatureError, match=r"'misaligned'.*has shape"):
        feature("misaligned", lookback=0)(short)


def test_unknown_feature_and_bad_bars_name_the_value(raw_bars):
    with pytest.raises(UnknownFeature, match="unknown feature 'nope'"):
        get_feature("nope")
    b = raw_bars["BTCUSDT"]
    with pytest.raises(FeatureError, match=r"missing column\(s\) \['volume'\]"):
        as_bars(b.drop(columns="volume"))
    with pytest.raises(FeatureError, match=r"row 3 \(2024-01-30 12:01:00\+00:00\) does not"):
        as_bars(b.iloc[[0, 1, 2, 1, 4]])


# -- live, one bar at a time -------------------------------------------------------------------------


def test_live_rows_equal_batch_rows_bit_for_bit(flow_bars, universe, computed):
    b = flow_bars["BTCUSDT"]  # each bar carries its trade flow
    live = LiveFeatures(list_features(), universe=list(universe.columns))
    assert live.columns == list(computed.columns)
    live.warm(b.iloc[:2_000], universe.iloc[:2_000])
    for i in range(2_000, 2_300):
        row = live.update({"timestamp": b.index[i], **b.iloc[i].to_dict()}, universe.iloc[i].to_dict())
        assert np.array_equal(row, computed.iloc[i].to_numpy(), equal_nan=True), i
    assert live.row().name == b.index[2_299]


def test_live_from_the_first_bar_matches_batch_warmup_nans(bars, computed):
    b = bars["BTCUSDT"]
    names = ["ret_5", "rsi_14", "fracdiff_04"]
    live = LiveFeatures(names)
    want = computed[[c for n in names for c in get_feature(n).columns]].to_numpy()
    for i in range(300):
        row = live.update(b.iloc[i])
        assert np.array_equal(row, want[i], equal_nan=True), i


def test_live_pandas_user_feature_matches_batch(clean_registry, bars):
    @feature("hl_mean_7", lookback=6)
    def hl_mean(bars):
        return (bars["high"] - bars["low"]).rolling(7).mean()

    b = bars["BTCUSDT"].iloc[:200]
    batch = compute_features(b, ["hl_mean_7"])["hl_mean_7"].to_numpy()
    live = LiveFeatures(["hl_mean_7"])
    live.warm(b.iloc[:150])
    rows = [live.update(b.iloc[i])[0] for i in range(150, 200)]
    _close(rows, batch[150:], rtol=1e-12)


def test_live_refuses_out_of_order_bars_and_missing_universe(bars, universe):
    b = bars["BTCUSDT"]
    live = LiveFeatures(["ret_1"])
    live.update(b.iloc[10])
    with pytest.raises(FeatureError, match="is not after the last bar"):
        live.update(b.iloc[9])
    with pytest.raises(FeatureError, match=r"\['xs_ret_1'\] are cross-asset"):
        LiveFeatures(["xs_ret_1"])
    with pytest.raises(FeatureError, match="update\\(\\) needs the closes"):
        LiveFeatures(["xs_ret_1"], universe=list(universe.columns)).update(b.iloc[0])


def test_live_window_slides_past_its_capacity(bars, computed):
    b = bars["BTCUSDT"]
    live = LiveFeatures(["rv_cc_20"], capacity=0)  # the smallest buffer: it slides many times
    col = computed["rv_cc_20"].to_numpy()
    for i in range(1_200):
        assert np.array_equal(live.update(b.iloc[i])[:1], col[i:i + 1], equal_nan=True), i


# -- CLI -------------------------------------------------------------------------------------------------


def test_cli_lists_every_feature_with_its_hash(capsys):
    from spark_research.cli import main

    assert main(["features", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_features():
        assert f"{name} " in out and get_feature(name).code_hash in out
    assert f"{len(list_features())} features" in out


def test_two_thread_batch_path_gives_the_same_bits_in_the_same_column_order(flow_bars, universe, computed,
                                                                             monkeypatch):
    monkeypatch.setattr(registry, "PARALLEL_BARS", 100)  # two threads from 100 bars on (default 200k)
    threaded = compute_features(flow_bars["BTCUSDT"], None, universe=universe)
    assert list(threaded.columns) == list(computed.columns)
    assert np.array_equal(threaded.to_numpy(), computed.to_numpy(), equal_nan=True)

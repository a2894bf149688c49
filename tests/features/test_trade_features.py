"""Trade-flow features: the point-in-time aggregation of trades onto the bars, the five features
against independent pandas formulas, the clear error without trades, the store (built where trades
are stored, incremental = full recompute) and the live path (bit for bit with the batch path)."""
from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from spark_research.features.live import LiveFeatures
from spark_research.features.registry import (FLOW_FIELDS, FeatureError, compute_features, feature, feature_columns,
                                              get_feature, list_features)
from spark_research.features.trades import bar_flow, synthetic_trades, trade_arrays, trade_flow, with_trade_flow

TRADE_FEATURES = ["ofi_20", "trade_count_z_50", "vwap_dev_20", "trade_size_z_50", "kyle_lambda_50"]
MIN = pd.Timedelta("1min")


def _trades(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """Trades from ``(time, price, qty, side)`` rows."""
    ts, price, qty, side = zip(*rows)
    times = pd.DatetimeIndex([pd.Timestamp(x, tz="UTC") for x in ts]).as_unit("ns")  # keeps the nanoseconds
    return pd.DataFrame({"seq": np.arange(1, len(rows) + 1), "ts": times, "price": price, "qty": qty, "side": side,
                         "symbol": "BTCUSDT"})


def _bars(n: int, start: str = "2024-01-01", freq: str = "1min") -> pd.DataFrame:
    idx = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="timestamp")
    return pd.DataFrame({"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0}, index=idx)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert a.index.equals(b.index)
    assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)


def _bar_trades(trades: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """The trades of the 1-minute bar stamped ``t``."""
    return trades[(trades["ts"] >= t) & (trades["ts"] < t + MIN)]


# -- the aggregation: which trades belong to which bar -------------------------------------------------


def test_a_bar_takes_the_trades_from_its_open_up_to_but_not_including_the_next_open():
    bars = _bars(3)
    trades = _trades([
        ("2024-01-01 00:00:00", 10.0, 1.0, "buy"),                # exactly at the open: this bar
        ("2024-01-01 00:00:59.999999999", 20.0, 3.0, "sell"),     # last ns of the bar: this bar
        ("2024-01-01 00:01:00", 30.0, 2.0, "buy"),                # exactly at the next open: the next bar
        ("2024-01-01 00:02:30", 40.0, 4.0, "sell"),
    ])
    flow = trade_flow(bars, trades)
    assert list(flow.columns) == list(FLOW_FIELDS) and flow.index.equals(bars.index)
    assert flow.iloc[0].tolist() == [1.0, 3.0, 2.0, 70.0, 70.0 / 4.0, 2.0]
    assert flow.iloc[1].tolist() == [2.0, 0.0, 1.0, 60.0, 30.0, 2.0]
    assert flow.iloc[2].tolist() == [0.0, 4.0, 1.0, 160.0, 40.0, 4.0]


def test_flow_agrees_with_the_bars_the_ingest_aggregates_from_the_same_trades():
    """The ingest stamps a bar at its bucket start and closes it at the next bucket: same trades, same bars."""
    from spark_research.data.synthetic import generate_trades
    from spark_research.streams.adapters import Trade
    from spark_research.streams.bars import BarAggregator

    tape = generate_trades("BTCUSDT", n=20_000, seed=4, rate_per_s=3.0)
    time_us = pd.DatetimeIndex(tape["ts"]).as_unit("ns").asi8 // 1_000
    tape = tape.assign(ts=pd.to_datetime(time_us * 1_000, utc=True))  # the ingest's microseconds
    agg = BarAggregator("BTCUSDT", intervals={"1m": 60_000_000})
    closed = []
    for i, row in enumerate(tape.itertuples(index=False)):
        closed += agg.add(Trade("BTCUSDT", int(row.seq), row.price, row.qty, int(time_us[i]), int(time_us[i]),
                                row.side == "sell"))
    ingest = pd.DataFrame([b.as_row() for b in closed]).set_index("timestamp")
    flow = trade_flow(ingest, tape, interval="1min")
    assert flow["trade_count"].tolist() == [b.trades for b in closed]
    np.testing.assert_allclose(flow["buy_volume"] + flow["sell_volume"], ingest["volume"], rtol=1e-12)
    last_trade = pd.Series([t.price for t in (tape.iloc[b.last_id - 1] for b in closed)], index=ingest.index)
    assert (ingest["close"] == last_trade).all()  # the same trade closes the bar in both


def test_bars_without_trades_have_zero_volume_and_count_and_nan_vwap_and_size():
    bars = _bars(4)
    trades = _trades([("2024-01-01 00:00:10", 10.0, 1.0, "buy"), ("2024-01-01 00:03:10", 11.0, 1.0, "sell")])
    flow = trade_flow(bars, trades)
    quiet = flow.iloc[1:3]
    assert (quiet[["buy_volume", "sell_volume", "trade_count", "notional"]] == 0.0).all().all()
    assert quiet[["vwap", "mean_trade_size"]].isna().all().all()


def test_bars_before_the_trades_coverage_are_unknown_not_quiet():
    bars = _bars(5)
    trades = _trades([("2024-01-01 00:02:30", 10.0, 1.0, "buy"), ("2024-01-01 00:04:30", 10.0, 1.0, "buy")])
    flow = trade_flow(bars, trades)  # trades held from their first one on
    assert flow.iloc[:2].isna().all().all()
    assert flow["trade_count"].iloc[2:].tolist() == [1.0, 0.0, 1.0]
    declared = trade_flow(bars, trades, trades_from=bars.index[0])  # "complete over all the bars"
    assert declared["trade_count"].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_bars_stamped_at_their_close_take_the_trades_of_the_period_before():
    bars = _bars(2, start="2024-01-01 01:00", freq="1h")
    trades = _trades([("2024-01-01 00:10", 10.0, 1.0, "buy"), ("2024-01-01 01:00", 10.0, 2.0, "sell")])
    flow = trade_flow(bars, trades, interval="1h", label="close", trades_from="2024-01-01")
    assert flow["buy_volume"].tolist() == [1.0, 0.0] and flow["sell_volume"].tolist() == [0.0, 2.0]


def test_a_million_trades_aggregate_like_a_pandas_groupby():
    from spark_research.data.synthetic import generate_trades

    trades = generate_trades("BTCUSDT", n=1_000_000, seed=9, rate_per_s=200.0)  # ~83 minutes
    bars = _bars(90)
    flow = trade_flow(bars, trades, trades_from=bars.index[0])
    minute = trades["ts"].dt.floor("1min")
    qty = trades["qty"]
    ref = pd.DataFrame({"buy": qty.where(trades["side"] == "buy", 0.0).groupby(minute).sum(),
                        "sell": qty.where(trades["side"] == "sell", 0.0).groupby(minute).sum(),
                        "count": qty.groupby(minute).size().astype(float),
                        "notional": (trades["price"] * qty).groupby(minute).sum()})
    ref = ref.reindex(bars.index, fill_value=0.0)
    assert flow["trade_count"].sum() == len(trades) and (flow["trade_count"].to_numpy() == ref["count"]).all()
    for got, want in (("buy_volume", "buy"), ("sell_volume", "sell"), ("notional", "notional")):
        np.testing.assert_allclose(flow[got], ref[want], rtol=1e-10)
    np.testing.assert_allclose(flow["vwap"].dropna(), (ref["notional"] / (ref["buy"] + ref["sell"])).dropna(),
                               rtol=1e-10)


def test_trades_out_of_time_order_are_sorted_stably_first():
    trades = _trades([("2024-01-01 00:00:30", 10.0, 1.0, "buy"), ("2024-01-01 00:00:10", 12.0, 1.0, "sell"),
                      ("2024-01-01 00:00:10", 14.0, 1.0, "buy")])
    ts, price, _, is_buy = trade_arrays(trades)
    assert price.tolist() == [12.0, 14.0, 10.0] and is_buy.tolist() == [False, True, True]
    assert np.all(np.diff(ts) >= 0)


@pytest.mark.parametrize("change, match", [
    (lambda t: t.assign(side=["buy", "BUY"]), r"row 1: field 'side' = 'BUY'; must be 'buy' or 'sell'"),
    (lambda t: t.assign(qty=[1.0, -2.0]), r"row 1: field 'qty' = -2.0; must be finite and > 0"),
    (lambda t: t.assign(symbol=["BTCUSDT", "ETHUSDT"]), r"one symbol at a time, got \['BTCUSDT', 'ETHUSDT'\]"),
    (lambda t: t.drop(columns="side"), r"missing column\(s\) \['side'\]"),
])
def test_bad_trades_are_refused_naming_the_field_and_value(change, match):
    trades = _trades([("2024-01-01 00:00:10", 10.0, 1.0, "buy"), ("2024-01-01 00:00:20", 10.0, 1.0, "sell")])
    with pytest.raises(FeatureError, match=match):
        trade_flow(_bars(2), change(trades))


def test_the_bar_interval_is_inferred_or_checked():
    trades = _trades([("2024-01-01 00:00:10", 10.0, 1.0, "buy")])
    with pytest.raises(FeatureError, match=r"cannot infer the bar interval from 1 bar\(s\); pass interval="):
        trade_flow(_bars(1), trades)
    assert trade_flow(_bars(1), trades, interval="1min")["trade_count"].tolist() == [1.0]
    with pytest.raises(FeatureError, match=r"interval 0 days 00:02:00 is longer than .* would fall in two bars"):
        trade_flow(_bars(3), trades, interval="2min")
    gappy = _bars(4).drop(index=_bars(4).index[1])  # a missing bar does not widen the others
    assert trade_flow(gappy, _trades([("2024-01-01 00:01:30", 1.0, 1.0, "buy")]),
                      trades_from="2024-01-01")["trade_count"].tolist() == [0.0, 0.0, 0.0]


# -- the features -----------------------------------------------------------------------------------------


def test_trade_features_are_registered_declaring_trades_with_their_lookbacks():
    lookbacks = {"ofi_20": 19, "trade_count_z_50": 49, "vwap_dev_20": 19, "trade_size_z_50": 49, "kyle_lambda_50": 50}
    for name, lb in lookbacks.items():
        f = get_feature(name)
        assert f.trades and f.lookback == lb and f.columns == (name,) and f.describe()["trades"] is True
    assert not any(get_feature(n).trades for n in list_features() if n not in lookbacks)


def test_trade_features_match_independent_pandas_formulas(flow_bars):
    b = flow_bars["BTCUSDT"]
    got = compute_features(b, TRADE_FEATURES)
    buy, sell = b["buy_volume"].rolling(20).sum(), b["sell_volume"].rolling(20).sum()
    volume = b["buy_volume"] + b["sell_volume"]

    def z(x: pd.Series, w: int) -> pd.Series:
        return (x - x.rolling(w).mean()) / x.rolling(w).std()

    r = np.log(b["close"]).diff()
    signed = b["buy_volume"] - b["sell_volume"]
    want = {
        "ofi_20": (buy - sell) / (buy + sell),
        "trade_count_z_50": z(b["trade_count"], 50),
        "vwap_dev_20": b["close"] / (b["notional"].rolling(20).sum() / volume.rolling(20).sum()) - 1,
        "trade_size_z_50": z(np.log(b["mean_trade_size"]), 50),
        "kyle_lambda_50": r.rolling(50).cov(signed) / signed.rolling(50).var(),
    }
    for name, ref in want.items():
        np.testing.assert_allclose(got[name], ref, rtol=1e-7, atol=1e-12, equal_nan=True, err_msg=name)
        assert got[name].iloc[get_feature(name).lookback:].notna().all(), name
    assert got["ofi_20"].abs().max() <= 1.0 and got["ofi_20"].std() > 0.01


def test_trades_argument_equals_bars_that_carry_the_flow(bars, trades, flow_bars):
    direct = compute_features(bars["BTCUSDT"], TRADE_FEATURES + ["rsi_14"], trades=trades["BTCUSDT"])
    _same(direct, compute_features(flow_bars["BTCUSDT"], TRADE_FEATURES + ["rsi_14"]))
    one = get_feature("ofi_20").compute(bars["BTCUSDT"], trades=trades["BTCUSDT"])
    _same(one, direct[["ofi_20"]])


def test_computing_a_trade_feature_without_trades_names_it_and_the_missing_input(bars):
    with pytest.raises(FeatureError, match=r"feature 'ofi_20' needs trades: no trade-flow column\(s\) "
                                           r"\['buy_volume', .*\] in the bars; pass trades="):
        compute_features(bars["BTCUSDT"], ["ret_1", "ofi_20"])
    with pytest.raises(FeatureError, match=r"feature 'vwap_dev_20' needs trades"):
        get_feature("vwap_dev_20").compute(bars["BTCUSDT"])
    partial = bars["BTCUSDT"].assign(buy_volume=1.0)
    with pytest.raises(FeatureError, match=r"no trade-flow column\(s\) \['sell_volume', 'trade_count'"):
        compute_features(partial, ["ofi_20"])


def test_the_default_feature_set_follows_the_inputs(bars, trades, universe):
    """``features=None``: every feature the inputs can feed; bar-only callers see what they always saw."""
    plain = compute_features(bars["BTCUSDT"], None, universe=universe)
    assert not set(TRADE_FEATURES) & set(plain.columns)
    assert list(plain.columns) == feature_columns([n for n in list_features() if not get_feature(n).trades])
    with_flow = compute_features(bars["BTCUSDT"], None, universe=universe, trades=trades["BTCUSDT"])
    assert set(TRADE_FEATURES) <= set(with_flow.columns)
    _same(with_flow[plain.columns], plain)
    assert LiveFeatures(None, universe=list(universe.columns)).columns == list(plain.columns)


def test_bar_features_never_see_the_flow_columns(clean_registry, flow_bars):
    seen = {}

    @feature("n_columns_seen", lookback=0)
    def n_columns(bars):
        seen["columns"] = list(bars.columns)
        return bars["close"] * 0.0 + len(bars.columns)

    assert compute_features(flow_bars["BTCUSDT"], ["n_columns_seen"])["n_columns_seen"].iloc[0] == 5.0
    assert seen["columns"] == ["open", "high", "low", "close", "volume"]


def test_the_registration_check_bars_carry_flow_with_a_quiet_stretch():
    from spark_research.features.registry import check_flow_bars

    b = check_flow_bars(600)
    assert set(FLOW_FIELDS) <= set(b.columns) and b["trade_count"].iloc[:300].min() > 20
    assert (b["trade_count"].iloc[300:303] == 0).all() and b["vwap"].iloc[300:303].isna().all()


# -- the store --------------------------------------------------------------------------------------------


def test_the_store_builds_trade_features_where_trades_are_stored(bar_store, trades, flow_bars, universe):
    from spark_research.features.store import FeatureStore

    bar_store.write_trades(trades["BTCUSDT"].assign(symbol="BTCUSDT", seq=np.arange(1, len(trades["BTCUSDT"]) + 1)))
    store = FeatureStore(bar_store.root)
    store.build(["BTCUSDT", "ETHUSDT"])  # every feature: the trade-flow ones where there are trades
    btc, eth = store.load("BTCUSDT"), store.load("ETHUSDT")
    assert set(TRADE_FEATURES) <= set(btc.columns) and not set(TRADE_FEATURES) & set(eth.columns)
    _same(btc[TRADE_FEATURES], compute_features(flow_bars["BTCUSDT"], TRADE_FEATURES))
    meta = store.metadata("BTCUSDT")[-1]
    assert meta["features"]["ofi_20"]["trades"] is True and meta["trades"]["interval_ns"] == 60 * 10**9
    with pytest.raises(FeatureError, match=r"feature 'ofi_20' needs trades, but the store .* has no trades for "
                                           r"symbol 'ETHUSDT'"):
        store.build("ETHUSDT", ["ret_1", "ofi_20"])


def test_incremental_trade_features_equal_a_full_recompute(tmp_path, raw_bars, trades):
    """Bars and trades arrive together in chunks; trades start 300 bars after the bars (NaN before)."""
    from spark_research.data.store import BarStore
    from spark_research.features.store import FeatureStore

    names = ["ret_1", *TRADE_FEATURES]
    b = raw_bars["BTCUSDT"]
    t = trades["BTCUSDT"].assign(symbol="BTCUSDT", seq=np.arange(1, len(trades["BTCUSDT"]) + 1))
    t = t[t["ts"] >= b["timestamp"].iloc[300] + pd.Timedelta("20s")]
    inc, whole = BarStore(tmp_path / "inc"), BarStore(tmp_path / "full")
    whole.write_bars(b)
    whole.write_trades(t)
    cuts = [1_000, 1_001, 1_700, 2_350, 2_600]  # the last chunk crosses into February
    end = [b["timestamp"].iloc[c] if c < len(b) else b["timestamp"].iloc[-1] + MIN for c in cuts]
    inc.write_bars(b.iloc[:cuts[0]])
    inc.write_trades(t[t["ts"] < end[0]])
    fs = FeatureStore(inc.root)
    assert fs.build("BTCUSDT", names)["BTCUSDT"].mode == "full"
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        inc.write_bars(b.iloc[lo:hi])
        inc.write_trades(t[(t["ts"] >= end[i]) & (t["ts"] < end[i + 1])])
        r = fs.build("BTCUSDT", names)["BTCUSDT"]
        assert (r.mode, r.rows) == ("incremental", hi - lo)
    ref = FeatureStore(whole.root)
    ref.build("BTCUSDT", names)
    got = fs.load("BTCUSDT")
    _same(got, ref.load("BTCUSDT"))
    assert got["ofi_20"].iloc[:300].isna().all() and got["ofi_20"].iloc[321:].notna().all()
    for freq in ("1h",):  # resampled bars take the trades of their hour, incrementally too
        inc_h = FeatureStore(tmp_path / "inc_h", bars=BarStore(tmp_path / "inc_h"))
        inc_h.bars.write_bars(b.iloc[:1_500])
        inc_h.bars.write_trades(t[t["ts"] < b["timestamp"].iloc[1_500]])
        inc_h.build("BTCUSDT", ["ofi_20"], freq=freq)
        inc_h.bars.write_bars(b.iloc[1_500:])
        inc_h.bars.write_trades(t[t["ts"] >= b["timestamp"].iloc[1_500]])
        assert inc_h.build("BTCUSDT", ["ofi_20"], freq=freq)["BTCUSDT"].mode == "incremental"
        ref.build("BTCUSDT", ["ofi_20"], freq=freq)
        _same(inc_h.load("BTCUSDT", freq=freq), ref.load("BTCUSDT", freq=freq))


def test_the_training_matrix_joins_trade_features_as_of(bar_store, trades):
    from spark_research.features.store import FeatureStore, asof_matrix

    bar_store.write_trades(trades["BTCUSDT"].assign(symbol="BTCUSDT", seq=np.arange(1, len(trades["BTCUSDT"]) + 1)))
    store = FeatureStore(bar_store.root)
    store.build("BTCUSDT", ["ofi_20"])
    stored = store.load("BTCUSDT")
    spine = pd.DataFrame({"symbol": "BTCUSDT", "timestamp": stored.index[100:110] + pd.Timedelta("30s")})
    m = asof_matrix(spine, store, ["ofi_20"], with_times=True)
    assert (m["feature_time"].to_numpy() == stored.index[100:110].to_numpy()).all()
    assert np.array_equal(m["ofi_20"].to_numpy(), stored["ofi_20"].iloc[100:110].to_numpy())


# -- live ---------------------------------------------------------------------------------------------------


def test_live_rows_from_each_bars_trades_equal_batch_rows_bit_for_bit(bars, trades, flow_bars):
    names = [*TRADE_FEATURES, "rsi_14", "ret_1"]
    b, t = bars["BTCUSDT"], trades["BTCUSDT"]
    t = t[(t["ts"] < b.index[1_800]) | (t["ts"] >= b.index[1_803])]  # three quiet bars on the way
    batch = compute_features(b, names, trades=t)
    live = LiveFeatures(names)
    live.warm(b.iloc[:1_700], trades=t[t["ts"] < b.index[1_700]])
    for i in range(1_700, 2_000):
        row = live.update(b.iloc[i], trades=_bar_trades(t, b.index[i]))
        assert np.array_equal(row, batch.iloc[i].to_numpy(), equal_nan=True), i
    assert batch["trade_count_z_50"].iloc[1_800:1_803].notna().all()  # quiet bars are zeros, not gaps


def test_live_rows_from_bars_carrying_their_aggregates_equal_batch(flow_bars):
    b = flow_bars["BTCUSDT"]
    batch = compute_features(b, TRADE_FEATURES)
    live = LiveFeatures(TRADE_FEATURES, capacity=0)  # the smallest buffer: it slides
    live.warm(b.iloc[:100])
    for i in range(100, 700):
        assert np.array_equal(live.update(b.iloc[i]), batch.iloc[i].to_numpy(), equal_nan=True), i


def test_live_without_trades_names_the_features_and_the_missing_input(bars, trades):
    b = bars["BTCUSDT"]
    live = LiveFeatures(["ret_1", "ofi_20"])
    with pytest.raises(FeatureError, match=r"feature 'ofi_20' needs trades: .* in the bars given to warm\(\)"):
        live.warm(b.iloc[:50])
    with pytest.raises(FeatureError, match=r"feature 'ofi_20' needs trades: .* in the bar given to update\(\)"):
        live.update(b.iloc[0])
    live.update(b.iloc[0], trades=_bar_trades(trades["BTCUSDT"], b.index[0]))
    with pytest.raises(FeatureError, match=r"is after its bar's end"):  # the next bar's trades passed by mistake
        live.update(b.iloc[1], trades=_bar_trades(trades["BTCUSDT"], b.index[2]))
    with pytest.raises(FeatureError, match=r"is before its bar's"):
        live.update(b.iloc[1], trades=_bar_trades(trades["BTCUSDT"], b.index[0]))


def test_bar_only_live_features_keep_their_api(bars):
    live = LiveFeatures(["ret_1", "rsi_14"])
    live.warm(bars["BTCUSDT"].iloc[:100])
    row = live.update(bars["BTCUSDT"].iloc[100])
    want = compute_features(bars["BTCUSDT"].iloc[:101], ["ret_1", "rsi_14"]).iloc[-1].to_numpy()
    assert live.trades == [] and np.array_equal(row, want)


def test_one_bar_flow_is_the_batch_kernel_on_that_bars_trades(flow_bars, trades):
    b = flow_bars["BTCUSDT"]
    for i in (0, 1_234, 2_599):
        got = bar_flow(_bar_trades(trades["BTCUSDT"], b.index[i]), b.index[i].value)
        assert np.array_equal(got, b[list(FLOW_FIELDS)].iloc[i].to_numpy()), i
    empty = bar_flow({"ts": [], "price": [], "qty": [], "side": []}, b.index[0].value)
    assert empty[:4].tolist() == [0.0, 0.0, 0.0, 0.0] and np.isnan(empty[4:]).all()


# -- models: trade features go wherever bar features go ------------------------------------------------------


def test_a_model_on_trade_features_trains_and_backtests_as_a_model_strategy(flow_bars, bars):
    from spark_research.backtest import check_lookahead, run_backtest
    from spark_research.models.strategy import strategy_for
    from spark_research.models.training import TrainSpec, train_model

    frame = flow_bars["BTCUSDT"].reset_index().assign(symbol="BTCUSDT")
    spec = TrainSpec(features=("logret_1", "ofi_20", "vwap_dev_20", "kyle_lambda_50"), n_splits=3, horizon=10,
                     estimator_params={"n_estimators": 20})
    model = train_model(frame.iloc[:1_800], spec)
    cls = strategy_for(model)
    params = {"entry": 0.5, "exit": 0.5}
    res = run_backtest(cls, frame.iloc[1_800:], params)
    assert res.stats["trades"] > 0
    p = cls.predictions(frame.iloc[1_800:].set_index("timestamp"))
    assert p["ofi_20"].iloc[60:].notna().all() and p["p_up"].iloc[60:].notna().all()
    assert check_lookahead(cls, frame.iloc[1_800:2_200], params, n_cuts=5, budget_s=30).passed
    with pytest.raises(FeatureError, match=r"needs? trades"):
        strategy_for(model).predictions(bars["BTCUSDT"].iloc[1_000:1_300])



def test_a_live_model_on_trade_features_extends_bar_by_bar_as_in_batch(flow_bars):
    """The live path (a paper/live session adds one bar at a time) carries each bar's trade flow to the
    live features: the predictions equal a batch computation over the same frame, bit for bit."""
    from spark_research.models.strategy import strategy_for
    from spark_research.models.training import TrainSpec, train_model

    frame = flow_bars["BTCUSDT"]
    spec = TrainSpec(features=("logret_1", "ofi_20", "trade_count_z_50"), n_splits=3, horizon=10,
                     estimator_params={"n_estimators": 20})
    model = train_model(frame.iloc[:1_500].reset_index().assign(symbol="BTCUSDT"), spec)
    live = strategy_for(model)
    live.predictions(frame.iloc[1_500:1_700])
    for n in range(1_701, 1_711):  # one new bar each time: the live tail extends
        out = live.predictions(frame.iloc[1_500:n])
    assert live._tail is not None and live._tail.live is not None  # the bar-by-bar path ran
    batch = strategy_for(model).predictions(frame.iloc[1_500:1_710])
    pd.testing.assert_frame_equal(out, batch, check_exact=True)


def test_model_predictions_are_not_reused_for_bars_with_other_trade_flow(flow_bars):
    from spark_research.models.strategy import strategy_for
    from spark_research.models.training import TrainSpec, train_model

    frame = flow_bars["BTCUSDT"]
    spec = TrainSpec(features=("ofi_20",), n_splits=3, horizon=10, estimator_params={"n_estimators": 20})
    cls = strategy_for(train_model(frame.iloc[:1_500].reset_index().assign(symbol="BTCUSDT"), spec))
    a = frame.iloc[1_500:1_800]
    b = a.assign(buy_volume=a["sell_volume"], sell_volume=a["buy_volume"])  # same prices, flow reversed
    assert not cls.predictions(a)["ofi_20"].equals(cls.predictions(b)["ofi_20"])

# -- docs --------------------------------------------------------------------------------------------------------


def test_docstring_examples_run():
    import spark_research.features.live as live
    import spark_research.features.trades as module

    for mod in (module, live):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__

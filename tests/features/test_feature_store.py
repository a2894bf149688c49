"""The feature store: Parquet by symbol and month with code hashes in the metadata, incremental
updates identical to a full recompute, stale definitions refused, DuckDB as-of joins without lookahead."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from spark_research.features.registry import FeatureError, compute_features, feature, get_feature
from spark_research.features.store import (META_KEY, FeatureStore, StaleFeatureError, asof_matrix,
                                           resample_bars)

SET = ["ret_1", "logret_20", "rv_gk_20", "rsi_14", "macd", "fracdiff_04", "time_of_day", "xs_ret_1"]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same index, columns and bits (NaN equals NaN)."""
    assert list(a.columns) == list(b.columns)
    assert a.index.equals(b.index)
    assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)


def test_build_writes_symbol_month_partitions_equal_to_compute(bar_store, bars, universe):
    store = FeatureStore(bar_store.root)
    res = store.build(["BTCUSDT", "ETHUSDT"], SET)
    assert {r.mode for r in res.values()} == {"full"} and res["BTCUSDT"].rows == len(bars["BTCUSDT"])
    files = sorted(p.relative_to(store.base).as_posix() for p in store.base.rglob("*.parquet"))
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "freq=bar/symbol=BTCUSDT/month=2024-01", "freq=bar/symbol=BTCUSDT/month=2024-02",
        "freq=bar/symbol=ETHUSDT/month=2024-01", "freq=bar/symbol=ETHUSDT/month=2024-02"]
    want = compute_features(bars["BTCUSDT"], SET, universe=universe)
    _same(store.load("BTCUSDT"), want)
    _same(store.load("BTCUSDT", ["rsi_14"], start="2024-02-01"), want.loc["2024-02-01":, ["rsi_14"]])


def test_parquet_metadata_holds_every_feature_hash_and_params(bar_store):
    store = FeatureStore(bar_store.root)
    store.build("BTCUSDT", SET)
    for path in store.base.rglob("part-*.parquet"):
        meta = json.loads(pq.read_schema(path).metadata[META_KEY])
        assert meta["symbol"] == "BTCUSDT" and meta["universe"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        for name in SET:
            f = get_feature(name)
            assert meta["features"][name]["code_hash"] == f.code_hash
            assert meta["features"][name]["params"] == f.params
            assert meta["features"][name]["lookback"] == f.lookback
        table = pq.read_table(path)
        assert table.num_rows == meta["rows"]
        assert str(table.column("timestamp")[0].as_py()) == str(pd.Timestamp(meta["first"]).to_pydatetime())


def test_incremental_build_computes_only_new_rows_and_equals_full_recompute(tmp_path, raw_bars):
    from spark_research.data.store import BarStore

    store_bars = BarStore(tmp_path / "inc")
    fresh_bars = BarStore(tmp_path / "full")
    cuts = [1_500, 1_501, 1_900, 2_350, 2_600]  # 2,350 -> 2,600 crosses into February
    for sym, b in raw_bars.items():
        store_bars.write_bars(b.iloc[:cuts[0]])
        fresh_bars.write_bars(b)
    store = FeatureStore(store_bars.root)
    assert store.build("BTCUSDT", SET)["BTCUSDT"].mode == "full"
    for lo, hi in zip(cuts, cuts[1:]):
        for b in raw_bars.values():
            store_bars.write_bars(b.iloc[lo:hi])
        before = {p: p.stat().st_mtime_ns for p in store.base.rglob("part-*.parquet")}
        r = store.build("BTCUSDT", SET)["BTCUSDT"]
        assert (r.mode, r.rows) == ("incremental", hi - lo)
        assert r.first == pd.Timestamp(raw_bars["BTCUSDT"]["timestamp"].iloc[lo])
        after = {p: p.stat().st_mtime_ns for p in store.base.rglob("part-*.parquet")}
        assert all(after[p] == t for p, t in before.items()), "an incremental build rewrote an old file"
        assert len(after) > len(before)
    assert store.build("BTCUSDT", SET)["BTCUSDT"].mode == "current"
    full = FeatureStore(fresh_bars.root)
    full.build("BTCUSDT", SET)
    _same(store.load("BTCUSDT"), full.load("BTCUSDT"))
    assert store.compact("BTCUSDT") >= 3
    _same(store.load("BTCUSDT"), full.load("BTCUSDT"))


def test_incremental_context_is_found_across_a_gap_in_the_bars(tmp_path, raw_bars):
    from spark_research.data.store import BarStore

    b = raw_bars["BTCUSDT"]
    gappy = pd.concat([b.iloc[:1_000], b.iloc[1_600:]])  # 10 hours missing
    inc, full = BarStore(tmp_path / "inc"), BarStore(tmp_path / "full")
    inc.write_bars(gappy.iloc[:1_100])
    full.write_bars(gappy)
    fs = FeatureStore(inc.root)
    fs.build("BTCUSDT", ["fracdiff_04", "macd"])
    inc.write_bars(gappy.iloc[1_100:])
    assert fs.build("BTCUSDT", ["fracdiff_04", "macd"])["BTCUSDT"].mode == "incremental"
    ref = FeatureStore(full.root)
    ref.build("BTCUSDT", ["fracdiff_04", "macd"])
    _same(fs.load("BTCUSDT"), ref.load("BTCUSDT"))


def test_changed_definition_is_never_served_stale(bar_store, clean_registry):
    def spread(bars):
        return bars["high"] / bars["low"] - 1

    feature("hl_spread_t", lookback=0)(spread)
    store = FeatureStore(bar_store.root)
    store.build("BTCUSDT", ["ret_1", "hl_spread_t"])
    old_hash = get_feature("hl_spread_t").code_hash
    old = store.load("BTCUSDT")["hl_spread_t"]

    def spread(bars):  # noqa: F811 - the definition changes (same origin: a re-run cell)
        return np.log(bars["high"] / bars["low"])

    feature("hl_spread_t", lookback=0)(spread)
    new_hash = get_feature("hl_spread_t").code_hash
    with pytest.raises(StaleFeatureError, match=f"'hl_spread_t' of 'BTCUSDT'.*code hash {old_hash}.*has hash {new_hash}"):
        store.load("BTCUSDT")
    _same(store.load("BTCUSDT", ["ret_1"]), store.load("BTCUSDT", ["ret_1"]))  # untouched features still load
    r = store.build("BTCUSDT", ["ret_1", "hl_spread_t"])["BTCUSDT"]
    assert r.mode == "full" and "hl_spread_t" in r.reason
    got = store.load("BTCUSDT")["hl_spread_t"]
    assert not np.allclose(got, old) and np.allclose(got, np.log1p(old))


def test_changed_params_of_a_registered_name_refuse_stale_values(bar_store, clean_registry):
    def sma(bars, window):
        return bars["close"].rolling(window).mean()

    feature("sma_t", lookback=9, window=10)(sma)
    store = FeatureStore(bar_store.root)
    store.build("BTCUSDT", ["sma_t"])
    feature("sma_t", lookback=19, window=20)(sma)
    with pytest.raises(StaleFeatureError, match=r"params \{'window': 10\}.*params \{'window': 20\}"):
        store.load("BTCUSDT", ["sma_t"])


def test_loading_what_was_not_built_says_how_to_build_it(bar_store):
    store = FeatureStore(bar_store.root)
    with pytest.raises(FeatureError, match="no features stored for symbol 'BTCUSDT'.*spark features build"):
        store.load("BTCUSDT")
    store.build("BTCUSDT", ["ret_1"])
    with pytest.raises(FeatureError, match="'rsi_14' is not stored for 'BTCUSDT'"):
        store.load("BTCUSDT", ["rsi_14"])
    with pytest.raises(FeatureError, match="no bars stored for symbol 'NOPE'|NOPE"):
        store.build("NOPE", ["ret_1"])
    with pytest.raises(FeatureError, match="freq: 'fortnightly-ish'"):
        store.build("BTCUSDT", ["ret_1"], freq="fortnightly-ish")


def test_resampled_bars_keep_complete_periods_stamped_at_their_end(raw_bars):
    b = raw_bars["BTCUSDT"]  # 12:00 .. 07:19 two days later
    h = resample_bars(b, "1h")
    assert h.index[0] == pd.Timestamp("2024-01-30 13:00", tz="UTC")
    assert h.index[-1] == pd.Timestamp("2024-02-01 07:00", tz="UTC")  # 07:00-07:19 is not complete
    first = b.iloc[:60]
    assert h.iloc[0].tolist()[:4] == [first["open"].iloc[0], first["high"].max(), first["low"].min(),
                                      first["close"].iloc[-1]]
    assert h["volume"].iloc[0] == pytest.approx(first["volume"].sum(), rel=1e-12)


def _spine(raw_bars, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lo = raw_bars["BTCUSDT"]["timestamp"].iloc[0].value - 3 * 60 * 10**9
    hi = raw_bars["BTCUSDT"]["timestamp"].iloc[-1].value + 3 * 60 * 10**9
    ts = rng.integers(lo, hi, n)
    stamps = pd.DatetimeIndex(raw_bars["BTCUSDT"]["timestamp"]).asi8
    ts[: n // 4] = stamps[rng.integers(0, len(stamps), n // 4)]
    ts[n // 4: n // 2] -= ts[n // 4: n // 2] % (60 * 10**9) + 1  # 1 ns before a bar's stamp
    return pd.DataFrame({"symbol": rng.choice(["BTCUSDT", "ETHUSDT"], n),
                         "timestamp": pd.to_datetime(ts, utc=True), "label": rng.integers(0, 2, n)})


def test_asof_matrix_never_uses_a_value_stamped_after_the_row(bar_store, raw_bars):
    store = FeatureStore(bar_store.root)
    store.build(["BTCUSDT", "ETHUSDT"], ["ret_1", "rsi_14"])
    store.build(["BTCUSDT", "ETHUSDT"], ["ret_1", "rv_cc_20"], freq="1h")
    spine = _spine(raw_bars, 600, seed=5)
    m = asof_matrix(spine, store, {"bar": ["ret_1", "rsi_14"], "1h": ["ret_1", "rv_cc_20"]}, with_times=True)
    assert len(m) == len(spine) and (m["label"].to_numpy() == spine["label"].to_numpy()).all()
    assert list(m.columns) == ["symbol", "timestamp", "label", "ret_1", "rsi_14", "feature_time",
                               "ret_1@1h", "rv_cc_20@1h", "feature_time@1h"]
    for suffix in ("", "@1h"):
        t = m[f"feature_time{suffix}"]
        assert (t.isna() | (t <= m["timestamp"])).all()
    for sym in ("BTCUSDT", "ETHUSDT"):
        rows = m[m["symbol"] == sym]
        for freq, suffix, cols in (("bar", "", ["ret_1", "rsi_14"]), ("1h", "@1h", ["ret_1", "rv_cc_20"])):
            feats = store.load(sym, cols, freq=freq)
            pos = feats.index.searchsorted(rows["timestamp"], side="right") - 1  # latest stamp <= row time
            has = pos >= 0
            assert (rows[f"feature_time{suffix}"].isna().to_numpy() == ~has).all()
            assert (rows.loc[has, f"feature_time{suffix}"].to_numpy() == feats.index[pos[has]].to_numpy()).all()
            want = feats.to_numpy()[pos[has]]
            got = rows.loc[has, [c + suffix for c in cols]].to_numpy()
            assert np.array_equal(got, want, equal_nan=True)


def test_asof_row_one_nanosecond_before_a_bar_gets_the_previous_bar(bar_store):
    store = FeatureStore(bar_store.root)
    store.build("BTCUSDT", ["ret_1"])
    feats = store.load("BTCUSDT")
    t = feats.index[100]
    spine = pd.DataFrame({"symbol": "BTCUSDT", "timestamp": [t - pd.Timedelta(1, "ns"), t, t + pd.Timedelta(59, "s")]})
    m = asof_matrix(spine, store, ["ret_1"], with_times=True)
    assert m["feature_time"].tolist() == [feats.index[99], t, t]
    assert m["ret_1"].tolist() == [feats["ret_1"].iloc[99], feats["ret_1"].iloc[100], feats["ret_1"].iloc[100]]


def test_asof_spine_without_symbol_is_refused(bar_store):
    with pytest.raises(FeatureError, match="spine: missing column 'symbol'"):
        asof_matrix(pd.DataFrame({"timestamp": [pd.Timestamp("2024-01-31", tz="UTC")]}), FeatureStore(bar_store.root))


def test_cli_build_incremental_and_status(bar_store, raw_bars, capsys):
    from spark_research.cli import main

    root = str(bar_store.root)
    assert main(["features", "build", "--symbol", "BTCUSDT,ETHUSDT", "--features", "ret_1", "rsi_14", "--store", root]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT [bar]: full (nothing stored), 2600 rows" in out and "ETHUSDT [bar]: full" in out
    assert main(["features", "build", "--symbol", "BTCUSDT", "--features", "ret_1,rsi_14", "--store", root]) == 0
    assert "BTCUSDT [bar]: current, 0 rows" in capsys.readouterr().out
    assert main(["features", "status", "--store", root]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT" in out and "2600" in out
    assert main(["features", "build", "--symbol", "BTCUSDT", "--features", "nope", "--store", root]) == 1
    assert "unknown feature 'nope'" in capsys.readouterr().err

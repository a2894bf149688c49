"""The Parquet/DuckDB store: round trips, ranges, upserts, atomic writes, metrics."""
import hashlib

import pandas as pd
import pytest

from spark_research import metrics
from spark_research.data.schema import DataValidationError
from spark_research.data.synthetic import generate_bars, generate_trades


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_bars_round_trip_bit_for_bit(tmp_store):
    bars = generate_bars("BTCUSDT", n=3_000, seed=5)
    tmp_store.write_bars(bars)
    pd.testing.assert_frame_equal(tmp_store.load_bars("BTCUSDT"), bars, check_dtype=False)
    assert tmp_store.load_bars("BTCUSDT")["timestamp"].dtype == bars["timestamp"].dtype


def test_partitioned_by_symbol_and_month(tmp_store):
    tmp_store.write_bars(generate_bars("ETHUSDT", n=60 * 24 * 40, seed=1, start="2024-01-15"))
    parts = sorted(p.parent.name for p in (tmp_store.root / "bars" / "symbol=ETHUSDT").glob("*/data.parquet"))
    assert parts == ["month=2024-01", "month=2024-02"]


def test_load_bars_range_is_half_open(tmp_store):
    tmp_store.write_bars(generate_bars("BTCUSDT", n=600, seed=5))
    got = tmp_store.load_bars("BTCUSDT", start="2024-01-01 01:00", end="2024-01-01 02:00")
    assert len(got) == 60
    assert got["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 01:00", tz="UTC")
    assert got["timestamp"].iloc[-1] == pd.Timestamp("2024-01-01 01:59", tz="UTC")


def test_upsert_replaces_overlapping_bars_and_keeps_the_rest(tmp_store):
    bars = generate_bars("BTCUSDT", n=200, seed=5)
    tmp_store.write_bars(bars.iloc[:150])
    newer = bars.iloc[100:].copy()
    newer["volume"] = newer["volume"] + 1.0
    tmp_store.write_bars(newer)
    got = tmp_store.load_bars("BTCUSDT")
    assert len(got) == 200
    assert (got["volume"].iloc[100:].to_numpy() == newer["volume"].to_numpy()).all()
    assert (got["volume"].iloc[:100].to_numpy() == bars["volume"].iloc[:100].to_numpy()).all()


def test_bad_file_never_half_writes_the_store(tmp_store):
    tmp_store.write_bars(generate_bars("BTCUSDT", n=1_000, seed=5))
    before = _digest(tmp_store.root)
    # a batch spanning two months whose second-month part is bad
    bad = generate_bars("BTCUSDT", n=60 * 24 * 40, seed=6, start="2024-01-10")
    bad.loc[len(bad) - 10, "close"] = -1.0
    with pytest.raises(DataValidationError, match="close"):
        tmp_store.write_bars(bad)
    assert _digest(tmp_store.root) == before
    assert not list(tmp_store.root.rglob(".tmp-*"))


def test_unknown_symbol_is_a_clear_error(tmp_store):
    with pytest.raises(KeyError, match="NOPE"):
        tmp_store.load_bars("NOPE")


def test_dataset_bytes_total_counts_written_bytes(tmp_store):
    before = metrics.DATASET_BYTES.labels(kind="bars")._value.get()
    written = tmp_store.write_bars(generate_bars("SOLUSDT", n=500, seed=2))
    assert written > 0
    assert metrics.DATASET_BYTES.labels(kind="bars")._value.get() - before == written


def test_trades_round_trip_and_duckdb_query(tmp_store):
    trades = generate_trades("BTCUSDT", n=2_000, seed=4)
    tmp_store.write_trades(trades)
    tmp_store.write_bars(generate_bars("BTCUSDT", n=100, seed=4))
    pd.testing.assert_frame_equal(tmp_store.load_trades("BTCUSDT"), trades, check_dtype=False)
    q = tmp_store.query("SELECT count(*) AS n, sum(qty) AS q FROM trades")
    assert q["n"].iloc[0] == 2_000 and q["q"].iloc[0] == pytest.approx(trades["qty"].sum())
    summary = tmp_store.summary()
    assert set(zip(summary["kind"], summary["rows"])) == {("bars", 100), ("trades", 2_000)}

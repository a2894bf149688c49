"""The store at universe scale: seeded streaming generation, layout, metadata, pushdown, crash safety."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from spark_research.data import BarStore
from spark_research.data.synthetic import generate_bars_monthly
from spark_research.data.universe import generate_universe, universe_symbols

ROOT = Path(__file__).resolve().parents[2]
SYMS = universe_symbols(3)
START, DAYS = "2024-01-20", 20  # spans January and February: two partitions per symbol


def _data_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("data.parquet")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    """A 3-symbol x 20-day universe (86,400 bars) and the frames it was generated from."""
    store = BarStore(tmp_path_factory.mktemp("universe") / "store")
    report = generate_universe(3, days=DAYS, seed=7, start=START, store=store, progress=False)
    frames = {s: pd.concat(list(generate_bars_monthly(s, START, pd.Timestamp(START) + pd.Timedelta(days=DAYS), seed=7)),
                           ignore_index=True) for s in SYMS}
    return store, report, frames


# ----------------------------------------------------------------- generation
def test_universe_generation_is_bit_identical_for_a_seed_and_differs_for_another(universe, tmp_path):
    store, report, _ = universe
    again = BarStore(tmp_path / "again")
    generate_universe(3, days=DAYS, seed=7, start=START, store=again, progress=False)
    other = BarStore(tmp_path / "other")
    generate_universe(3, days=DAYS, seed=8, start=START, store=other, progress=False)
    assert _data_digest(again.root) == _data_digest(store.root)
    assert _data_digest(other.root) != _data_digest(store.root)
    assert report.bars == 3 * DAYS * 1440 and report.symbols == SYMS


def test_a_longer_universe_only_appends_months(tmp_path):
    short = list(generate_bars_monthly("U000USDT", "2024-01-01", "2024-02-01", seed=3))
    long = list(generate_bars_monthly("U000USDT", "2024-01-01", "2024-03-01", seed=3))
    assert len(short) == 1 and len(long) == 2
    pd.testing.assert_frame_equal(short[0], long[0])
    assert long[1]["open"].iloc[0] == long[0]["close"].iloc[-1]  # the path continues across months


def test_generation_streams_with_memory_bounded_by_one_month(tmp_path):
    def peak(n_symbols: int, days: int) -> int:
        store = BarStore(tmp_path / f"{n_symbols}x{days}")
        tracemalloc.start()
        try:
            generate_universe(n_symbols, days=days, seed=1, store=store, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one_month = peak(1, 31)
    many = peak(3, 62)  # 6x the bars of one month of one symbol
    assert many < 1.5 * one_month, (many, one_month)


def test_universe_rejects_bad_sizes():
    with pytest.raises(ValueError, match="days must be a positive int, got 0"):
        generate_universe(2, days=0, progress=False)
    with pytest.raises(ValueError, match="n must be a positive int, got -1"):
        universe_symbols(-1)


# ----------------------------------------------------------------- layout and metadata
def test_partitions_are_zstd_sorted_with_time_statistics(universe, tmp_path):
    store, _, _ = universe
    files = sorted(Path(store.root).rglob("data.parquet"))
    assert [f.parent.name for f in files if "U000USDT" in str(f)] == ["month=2024-01", "month=2024-02"]
    full_month = BarStore(tmp_path / "m")
    generate_universe(1, days=31, seed=1, store=full_month, progress=False)
    files += list(Path(full_month.root).rglob("data.parquet"))
    for f in files:
        md = pq.ParquetFile(f).metadata
        ts_idx = md.schema.names.index("timestamp")
        prev_max = None
        for i in range(md.num_row_groups):
            col = md.row_group(i).column(ts_idx)
            assert col.compression == "ZSTD"
            assert col.statistics.has_min_max
            assert prev_max is None or col.statistics.min > prev_max  # groups ordered: pruning by time works
            prev_max = col.statistics.max
        assert md.row_group(0).sorting_columns[0].column_index == ts_idx
    # a full month of 1-minute bars (44,640) spans two row groups, so a filter inside it skips one
    assert pq.ParquetFile(files[-1]).metadata.num_row_groups == 2


def test_each_partition_has_metadata_matching_its_file(universe):
    store, _, frames = universe
    for f in Path(store.root).rglob("data.parquet"):
        meta = json.loads((f.parent / "_meta.json").read_text())
        table = pq.read_table(f)
        assert meta["rows"] == table.num_rows and meta["bytes"] == f.stat().st_size
        ts = table.column("timestamp").to_pandas()
        assert meta["first_ns"] == ts.min().value and meta["last_ns"] == ts.max().value


def test_list_comes_from_metadata_without_reading_data(universe, monkeypatch):
    store, _, frames = universe

    def no_data(*a, **k):
        raise AssertionError("summary read Parquet data or footers")

    monkeypatch.setattr(pq, "ParquetFile", no_data)
    monkeypatch.setattr(pq, "read_table", no_data)
    monkeypatch.setattr("duckdb.connect", no_data)
    s = store.summary().set_index("symbol")
    for sym, df in frames.items():
        assert s.loc[sym, "rows"] == len(df)
        assert s.loc[sym, "first"] == df["timestamp"].iloc[0] and s.loc[sym, "last"] == df["timestamp"].iloc[-1]
        assert s.loc[sym, "bytes"] == sum(f.stat().st_size for f in (Path(store.root) / "bars" / f"symbol={sym}").rglob("*.parquet"))
        assert s.loc[sym, "partitions"] == 2


def test_stale_metadata_falls_back_to_the_parquet_footer(tmp_store):
    generate_universe(1, days=3, seed=2, store=tmp_store, progress=False)
    meta_file = next(Path(tmp_store.root).rglob("_meta.json"))
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "rows": 1, "bytes": 1}))  # as if a crash left the old one
    assert tmp_store.summary()["rows"].iloc[0] == 3 * 1440
    meta_file.unlink()
    s = tmp_store.summary()
    assert s["rows"].iloc[0] == 3 * 1440 and s["first"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_spark_data_generate_universe_and_list_cli(tmp_path, capsys):
    from spark_research.cli import main

    store = tmp_path / "cli"
    assert main(["data", "generate", "--universe", "2", "--days", "2", "--seed", "5", "--store", str(store), "--quiet"]) == 0
    assert "2 symbols, 5,760 bars" in capsys.readouterr().out
    assert main(["data", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "U000USDT" in out and "U001USDT" in out and "2880" in out


# ----------------------------------------------------------------- queries
def test_load_bars_takes_symbols_range_and_columns(universe):
    store, _, frames = universe
    got = store.load_bars(["U002USDT", "U000USDT"], "2024-01-31 12:00", "2024-02-01 12:00", ["timestamp", "symbol", "close"])
    parts = []
    for sym in ("U002USDT", "U000USDT"):
        df = frames[sym]
        m = (df["timestamp"] >= pd.Timestamp("2024-01-31 12:00", tz="UTC")) & (df["timestamp"] < pd.Timestamp("2024-02-01 12:00", tz="UTC"))
        parts.append(df.loc[m, ["timestamp", "symbol", "close"]])
    expected = pd.concat(parts, ignore_index=True)
    assert list(got.columns) == ["timestamp", "symbol", "close"]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["timestamp"].dtype == "datetime64[ns, UTC]"


def test_single_symbol_call_is_unchanged(universe):
    store, _, frames = universe
    pd.testing.assert_frame_equal(store.load_bars("U001USDT"), frames["U001USDT"], check_dtype=False)
    from spark_research.data.store import load_bars

    assert len(load_bars("U001USDT", "2024-02-01", None, store=store)) == len(frames["U001USDT"]) - 12 * 1440


def test_load_bars_opens_only_the_months_in_range(tmp_path):
    store = BarStore(tmp_path / "s")
    generate_universe(1, days=45, seed=1, store=store, progress=False)
    (Path(store.root) / "bars" / "symbol=U000USDT" / "month=2024-02" / "data.parquet").write_bytes(b"not parquet")
    got = store.load_bars("U000USDT", "2024-01-10", "2024-01-11")
    assert len(got) == 1440  # the broken February file was never opened


def test_projection_and_time_filter_are_pushed_into_the_parquet_scan(universe):
    store, _, _ = universe
    with store.duckdb() as con:
        plan = "\n".join(r[1] for r in con.sql(
            "EXPLAIN SELECT close FROM bars WHERE timestamp >= TIMESTAMPTZ '2024-02-01'").fetchall())
    scan = plan[plan.index("READ_PARQUET"):]
    assert "Projections" in scan and "close" in scan
    assert "Filters" in scan and "timestamp>=" in scan.replace(" ", "")


def test_bad_query_arguments_name_the_field(universe):
    store, _, _ = universe
    with pytest.raises(ValueError, match="unknown bars column 'vwap'"):
        store.load_bars("U000USDT", columns=["timestamp", "vwap"])
    with pytest.raises(KeyError, match="NOPE"):
        store.load_bars(["U000USDT", "NOPE"])
    with pytest.raises(ValueError, match="end .* is before start"):
        store.load_bars("U000USDT", "2024-02-01", "2024-01-01")
    with pytest.raises(ValueError, match="batch_rows must be a positive int, got 0"):
        next(store.iter_batches("U000USDT", batch_rows=0))
    with pytest.raises(ValueError, match="field 'symbol' = '../etc'"):
        store.load_bars(["../etc"])


def test_a_symbol_that_is_not_a_plain_name_is_refused_before_writing(tmp_store):
    from spark_research.data.schema import DataValidationError
    from spark_research.data.synthetic import generate_bars

    with pytest.raises(DataValidationError, match="field 'symbol' = 'BTC/USDT'"):
        tmp_store.write_bars(generate_bars("BTC/USDT", n=10))
    assert not Path(tmp_store.root).exists()


def test_a_range_with_no_data_is_an_empty_typed_frame(universe):
    store, _, _ = universe
    got = store.load_bars(["U000USDT"], "2030-01-01", "2030-02-01", ["timestamp", "close"])
    assert len(got) == 0 and list(got.columns) == ["timestamp", "close"]
    assert str(got["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_duckdb_view_answers_a_cross_sectional_query(universe):
    store, _, frames = universe
    with store.duckdb() as con:
        got = con.sql("""
            SELECT symbol, date_trunc('day', timestamp) AS day, last(close ORDER BY timestamp) AS close
            FROM bars GROUP BY ALL ORDER BY symbol, day""").df()
    exp = pd.concat(frames.values()).assign(day=lambda d: d["timestamp"].dt.floor("D"))
    exp = exp.groupby(["symbol", "day"], as_index=False)["close"].last()
    assert len(got) == len(exp) == 3 * DAYS
    np.testing.assert_array_equal(got["close"].to_numpy(), exp["close"].to_numpy())


def test_utc_bucket_resamples_to_any_interval_like_pandas(universe):
    store, _, frames = universe
    with store.duckdb() as con:
        got = con.sql("""
            SELECT utc_bucket(timestamp, INTERVAL 15 minute) AS t, max(high) AS high, sum(volume) AS volume
            FROM bars WHERE symbol = 'U001USDT' GROUP BY ALL ORDER BY t""").df()
    exp = frames["U001USDT"].set_index("timestamp").resample("15min").agg({"high": "max", "volume": "sum"})
    assert len(got) == len(exp) == DAYS * 96
    assert (pd.to_datetime(got["t"]).dt.tz_localize("UTC").to_numpy() == exp.index.to_numpy()).all()
    np.testing.assert_array_equal(got["high"].to_numpy(), exp["high"].to_numpy())
    np.testing.assert_allclose(got["volume"].to_numpy(), exp["volume"].to_numpy(), rtol=1e-12)


def test_duckdb_view_of_an_empty_store_has_no_rows(tmp_store):
    assert tmp_store.query("SELECT count(*) AS n FROM bars")["n"].iloc[0] == 0


def test_iter_batches_streams_what_load_bars_returns(universe):
    store, _, _ = universe
    batches = list(store.iter_batches(SYMS, "2024-01-25", columns=["symbol", "close"], batch_rows=10_000))
    assert len(batches) > 3 and all(b.num_rows <= 10_000 for b in batches)
    streamed = pd.concat([b.to_pandas() for b in batches], ignore_index=True)
    pd.testing.assert_frame_equal(streamed, store.load_bars(SYMS, "2024-01-25", columns=["symbol", "close"]))


def test_a_store_pickles_for_dask_workers(universe):
    store, _, _ = universe
    clone = pickle.loads(pickle.dumps(store))
    assert clone.root == store.root and len(clone.load_bars("U000USDT")) == DAYS * 1440


# ----------------------------------------------------------------- crash safety
_SLOW_WRITER = textwrap.dedent("""
    import os, sys, time
    import spark_research.data.fs as fsmod
    from spark_research.data import BarStore
    from spark_research.data.synthetic import generate_bars

    real_open = open
    class HalfThenHang:
        def __init__(self, fh): self.fh = fh
        def __enter__(self): return self
        def __exit__(self, *a): self.fh.close()
        def write(self, data):
            self.fh.write(data[: len(data) // 2]); self.fh.flush(); os.fsync(self.fh.fileno())
            open(sys.argv[2], "w").close()      # tell the test: half a partition is on disk
            time.sleep(60)                       # the test SIGKILLs us here
    fsmod.open = lambda p, mode="r", *a, **k: HalfThenHang(real_open(p, mode, *a, **k)) if p.endswith(".partial") else real_open(p, mode, *a, **k)
    store = BarStore(sys.argv[1])
    bars = generate_bars("U000USDT", n=3000, seed=2)
    bars["close"] = bars["close"]  # same rows, new write: the partition is rewritten
    store.write_bars(bars)
""")


def test_a_writer_killed_mid_partition_leaves_the_old_partition_readable(tmp_path):
    from spark_research.data.synthetic import generate_bars

    store = BarStore(tmp_path / "s")
    store.write_bars(generate_bars("U000USDT", n=2000, seed=1))
    before = store.load_bars("U000USDT")
    signal_file = tmp_path / "half-written"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(store.root), str(signal_file)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            assert proc.poll() is None, "writer exited before writing"
            assert time.monotonic() < deadline, "writer never reached the partition write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = list(Path(store.root).rglob(".tmp-*"))
    assert leftovers and all(p.suffix == ".partial" for p in leftovers)  # the torn bytes exist...
    pd.testing.assert_frame_equal(store.load_bars("U000USDT"), before)  # ...but no reader sees them
    assert store.query("SELECT count(*) AS n FROM bars")["n"].iloc[0] == len(before)
    assert store.summary()["rows"].iloc[0] == len(before)
    store.write_bars(generate_bars("U000USDT", n=2500, seed=1))  # the next writer is not bothered
    assert len(store.load_bars("U000USDT")) == 2500


def test_a_generator_killed_at_any_moment_leaves_only_whole_partitions(tmp_path):
    store = tmp_path / "s"
    code = ("import sys; from spark_research.data import BarStore; from spark_research.data.universe import "
            "generate_universe; generate_universe(40, days=62, store=BarStore(sys.argv[1]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(store)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(list(store.rglob("data.parquet"))) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = list(store.rglob("data.parquet"))
    rows = sum(pq.read_table(f).num_rows for f in files)  # every visible file is a whole Parquet file
    s = BarStore(store)
    assert s.query("SELECT count(*) AS n FROM bars")["n"].iloc[0] == rows == s.summary()["rows"].sum()

"""Streaming CSV: every row written once, read back and counted; constant memory; clean failures."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from spark_research.export import ExportParamError, ExportSourceError, open_source, write_csv
from spark_research.export.sources import synthetic_fill_batches

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def read_back(path) -> pa.Table:
    opts = pcsv.ConvertOptions(column_types={"ts": pa.string()})
    if str(path).endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return pcsv.read_csv(fh, convert_options=opts)
    return pcsv.read_csv(path, convert_options=opts)


@pytest.mark.parametrize("rows", [10_000, 50_000])
def test_synthetic_fills_csv_has_every_row_once(tmp_path, rows):
    res = write_csv(open_source("synthetic_trades", {"rows": rows, "seed": 3}), tmp_path / "f.csv")
    back = read_back(res.path)
    assert res.rows == back.num_rows == rows
    assert back.column_names == ["ts", "symbol", "side", "price", "qty", "fee", "id"]
    assert np.array_equal(back["id"].to_numpy(), np.arange(1, rows + 1))
    expected_qty = sum(float(pa.compute.sum(b["qty"]).as_py()) for b in synthetic_fill_batches(rows, 3))
    assert back["qty"].to_numpy().sum() == pytest.approx(expected_qty, rel=1e-12)
    assert res.bytes == res.path.stat().st_size


def test_gzip_csv_round_trips_and_is_smaller(tmp_path):
    plain = write_csv(open_source("synthetic_trades", {"rows": 20_000}), tmp_path / "a.csv")
    packed = write_csv(open_source("synthetic_trades", {"rows": 20_000}), tmp_path / "a.csv.gz", gzip=True)
    assert packed.bytes < plain.bytes / 2
    assert gzip.decompress(packed.path.read_bytes()) == plain.path.read_bytes()


def test_same_seed_gives_identical_bytes(tmp_path):
    a = write_csv(open_source("synthetic_trades", {"rows": 70_000, "seed": 9}), tmp_path / "a.csv")
    b = write_csv(open_source("synthetic_trades", {"rows": 70_000, "seed": 9}), tmp_path / "b.csv")
    assert a.path.read_bytes() == b.path.read_bytes()


def test_progress_reports_rows_and_total_after_each_batch(tmp_path):
    seen = []
    write_csv(open_source("synthetic_trades", {"rows": 150_000}), tmp_path / "p.csv",
              progress=lambda rows, total, nbytes: seen.append((rows, total, nbytes)))
    rows = [r for r, _, _ in seen]
    assert rows == sorted(rows) and rows[-1] == 150_000 and len(seen) >= 3
    assert {t for _, t, _ in seen} == {150_000}
    assert seen[-1][2] == (tmp_path / "p.csv").stat().st_size


def test_failing_source_leaves_no_partial_file(tmp_path):
    src = open_source("synthetic_trades", {"rows": 200_000, "fail_after": 100_000})
    with pytest.raises(ExportSourceError, match="fail_after"):
        write_csv(src, tmp_path / "bad.csv")
    assert list(tmp_path.iterdir()) == []


def test_store_bars_export_matches_the_store(sample_store, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_STORE", str(sample_store.root))
    expected = sample_store.load_bars("ETHUSDT", start="2024-01-03", end="2024-01-10 12:00")
    res = write_csv(open_source("bars", {"symbol": "ETHUSDT", "start": "2024-01-03", "end": "2024-01-10 12:00"}),
                    tmp_path / "bars.csv")
    back = pcsv.read_csv(res.path)
    assert res.rows == back.num_rows == len(expected) == 7.5 * 1440
    assert np.allclose(back["close"].to_numpy(), expected["close"].to_numpy())


def test_store_trades_export_counts_every_symbol(tmp_store, tmp_path, monkeypatch):
    from spark_research.data import generate_trades

    for sym, n in (("BTCUSDT", 12_000), ("SOLUSDT", 3_000)):
        tmp_store.write_trades(generate_trades(sym, n=n, seed=5))
    monkeypatch.setenv("SPARK_STORE", str(tmp_store.root))
    src = open_source("trades", {})
    res = write_csv(src, tmp_path / "t.csv")
    back = pcsv.read_csv(res.path)
    assert src.total_rows == res.rows == back.num_rows == 15_000
    assert back["symbol"].value_counts().to_pylist() == [{"values": "BTCUSDT", "counts": 12_000},
                                                         {"values": "SOLUSDT", "counts": 3_000}]


def test_backtest_trades_csv_matches_run_backtest(tmp_path):
    from spark_research.backtest import run_backtest
    from spark_research.data import generate_bars

    params = {"synthetic_bars": 20_000, "seed": 4, "params": {"fast": 5, "slow": 20}}
    res = write_csv(open_source("backtest_trades", params), tmp_path / "bt.csv")
    direct = run_backtest("sma_cross", generate_bars("BTCUSDT", n=20_000, seed=4), {"fast": 5, "slow": 20})
    back = pcsv.read_csv(res.path)
    assert res.rows == back.num_rows == len(direct.trades) > 100
    assert back["pnl"].to_numpy().sum() == pytest.approx(direct.trades["pnl"].sum(), rel=1e-9)


@pytest.mark.parametrize(("what", "params", "field"), [
    ("nope", {}, "what"),
    ("synthetic_trades", {"rowz": 1}, "parameters.rowz"),
    ("synthetic_trades", {"rows": "ten"}, "parameters.rows"),
    ("synthetic_trades", {"rows": True}, "parameters.rows"),
    ("synthetic_trades", {"rows": 0}, "parameters.rows"),
    ("backtest_trades", {"strategy": "moon"}, "parameters.strategy"),
    ("backtest_trades", {"synthetic_bars": 1_000, "params": {"fast": 50, "slow": 10}}, "parameters.params"),
    ("bars", {"symbol": "NOPEUSDT"}, "parameters.symbol"),
    ("bars", {"start": "yesterday-ish"}, "parameters.start"),
])
def test_bad_parameters_name_the_field_and_value(sample_store, monkeypatch, what, params, field):
    monkeypatch.setenv("SPARK_STORE", str(sample_store.root))
    with pytest.raises(ExportParamError) as err:
        open_source(what, params)
    assert err.value.field == field
    assert field in str(err.value)


def test_million_row_csv_keeps_memory_flat(tmp_path):
    """1M rows through the writer in a fresh process: peak RSS growth well under 200 MB."""
    out = tmp_path / "m.csv"
    script = textwrap.dedent(f"""
        import json, psutil

        def peak_rss():  # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec)
            line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
            return int(line.split()[1]) * 1024
        from spark_research.export import open_source, write_csv
        write_csv(open_source("synthetic_trades", {{"rows": 1000}}), {str(tmp_path / 'warm.csv')!r})
        base = psutil.Process().memory_info().rss
        res = write_csv(open_source("synthetic_trades", {{"rows": 1_000_000}}), {str(out)!r})
        peak = peak_rss()
        print(json.dumps({{"rows": res.rows, "bytes": res.bytes, "growth_mb": (peak - base) / 2**20}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    newlines = 0
    with open(out, "rb") as fh:
        while chunk := fh.read(1 << 22):
            newlines += chunk.count(b"\n")
    assert stats["rows"] == 1_000_000 == newlines - 1  # header line
    assert stats["bytes"] == out.stat().st_size
    print(f"1M-row CSV: {stats['bytes'] / 2**20:.1f} MiB, peak RSS growth {stats['growth_mb']:.1f} MB")
    assert stats["growth_mb"] < 200

"""`spark data import DIR`: Binance kline dumps, in parallel, resumable, bad files and rows reported."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from spark_research.data import BarStore
from spark_research.data.importer import imported_files, import_klines, parse_klines
from spark_research.data.synthetic import generate_bars

ROOT = Path(__file__).resolve().parents[2]
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore")


def kline_csv(bars: pd.DataFrame, header: bool = False, unit: str = "ms") -> str:
    """Bars as Binance writes them: 12 columns, open/close times in ms (or µs)."""
    scale = 1_000_000 if unit == "ms" else 1_000
    t = bars["timestamp"].astype("int64") // scale
    step = 60_000 if unit == "ms" else 60_000_000
    lines = [HEADER] if header else []
    for ot, o, h, lo, c, v in zip(t, bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"]):
        lines.append(f"{ot},{o},{h},{lo},{c},{v},{ot + step - 1},{v * c:.4f},10,{v / 2:.6f},{v * c / 2:.4f},0")
    return "\n".join(lines) + "\n"


def write_zip(path: Path, csv_name: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(csv_name, text)
    return path


def month_bars(symbol: str, month: str, days: int = 2, seed: int = 1) -> pd.DataFrame:
    return generate_bars(symbol, n=days * 1440, seed=seed, start=f"{month}-01")


@pytest.fixture
def dumps(tmp_path):
    """A directory as downloaded from data.binance.vision: good files and a few bad ones."""
    d = tmp_path / "dumps"
    (d / "spot").mkdir(parents=True)
    good = {
        ("BTCUSDT", "2024-01"): month_bars("BTCUSDT", "2024-01"),
        ("BTCUSDT", "2024-02"): month_bars("BTCUSDT", "2024-02", seed=2),
        ("ETHUSDT", "2024-01"): month_bars("ETHUSDT", "2024-01"),
        ("SOLUSDT", "2025-03"): month_bars("SOLUSDT", "2025-03"),
    }
    write_zip(d / "BTCUSDT-1m-2024-01.zip", "BTCUSDT-1m-2024-01.csv", kline_csv(good["BTCUSDT", "2024-01"]))
    write_zip(d / "BTCUSDT-1m-2024-02.zip", "BTCUSDT-1m-2024-02.csv", kline_csv(good["BTCUSDT", "2024-02"], header=True))
    (d / "spot" / "ETHUSDT-1m-2024-01.csv").write_text(kline_csv(good["ETHUSDT", "2024-01"]))
    write_zip(d / "SOLUSDT-1m-2025-03.zip", "SOLUSDT-1m-2025-03.csv", kline_csv(good["SOLUSDT", "2025-03"], unit="us"))
    # bad rows inside an otherwise good file
    bad = month_bars("XRPUSDT", "2024-01", days=1)
    lines = kline_csv(bad).splitlines()
    lines[9] = lines[9].replace(lines[9].split(",")[4], "abc", 1)  # line 10: close is not a number
    f = lines[19].split(",")
    f[2], f[3] = f[3], str(float(f[2]) * 1.5)  # line 20: high < low
    lines[19] = ",".join(f)
    lines[29] = lines[28]  # line 30: the same open time again
    lines[39] = lines[39] + ",extra"  # line 40: 13 fields
    write_zip(d / "XRPUSDT-1m-2024-01.zip", "XRPUSDT-1m-2024-01.csv", "\n".join(lines) + "\n")
    # bad files
    (d / "ADAUSDT-1m-2024-01.zip").write_bytes(b"this is not a zip archive")
    write_zip(d / "DOTUSDT-1m-2024-01.zip", "README.txt", "no csv in here")
    (d / "notes.csv").write_text("what,ever\n1,2\n")
    (d / "LTCUSDT-5m-2024-01.csv").write_text(kline_csv(month_bars("LTCUSDT", "2024-01", days=1)))
    return d, good, bad


def test_good_files_land_and_every_bad_file_and_row_is_reported(dumps, tmp_store):
    d, good, bad = dumps
    report = import_klines(d, tmp_store, workers=2, progress=False)
    assert sorted(report.imported) == ["BTCUSDT-1m-2024-01.zip", "BTCUSDT-1m-2024-02.zip", "SOLUSDT-1m-2025-03.zip",
                                       "XRPUSDT-1m-2024-01.zip", "spot/ETHUSDT-1m-2024-01.csv"]
    for (sym, month), df in good.items():
        got = tmp_store.load_bars(sym, f"{month}-01", pd.Timestamp(f"{month}-01") + pd.offsets.MonthBegin(1))
        pd.testing.assert_frame_equal(got, df, check_dtype=False)
    rows = {(b.file, b.row, b.field) for b in report.bad if b.row is not None}
    assert rows == {("XRPUSDT-1m-2024-01.zip", 10, "close"), ("XRPUSDT-1m-2024-01.zip", 20, "high"),
                    ("XRPUSDT-1m-2024-01.zip", 30, "open_time"), ("XRPUSDT-1m-2024-01.zip", 40, "columns")}
    assert len(tmp_store.load_bars("XRPUSDT")) == len(bad) - 4  # the good rows of that file landed
    assert sorted(report.failed) == ["ADAUSDT-1m-2024-01.zip", "DOTUSDT-1m-2024-01.zip", "LTCUSDT-5m-2024-01.csv",
                                     "notes.csv"]
    reasons = {b.file: str(b) for b in report.bad if b.row is None}
    assert "not a zip" in reasons["ADAUSDT-1m-2024-01.zip"]
    assert "exactly one .csv" in reasons["DOTUSDT-1m-2024-01.zip"]
    assert "interval" in reasons["LTCUSDT-5m-2024-01.csv"] and "file name" in reasons["notes.csv"]
    assert report.bad_rows == 4 and not report.ok
    assert not {"ADAUSDT", "DOTUSDT", "LTCUSDT"} & set(tmp_store.symbols())


def test_a_second_run_skips_what_is_imported_and_retries_what_failed(dumps, tmp_store):
    d, good, _ = dumps
    first = import_klines(d, tmp_store, workers=1, progress=False)
    manifest = imported_files(tmp_store)
    assert sorted(manifest["file"]) == sorted(first.imported)
    assert manifest.set_index("file").loc["XRPUSDT-1m-2024-01.zip", "bad_rows"] == 4
    write_zip(d / "BTCUSDT-1m-2024-03.zip", "BTCUSDT-1m-2024-03.csv", kline_csv(month_bars("BTCUSDT", "2024-03")))
    second = import_klines(d, tmp_store, workers=1, progress=False)
    assert second.imported == ["BTCUSDT-1m-2024-03.zip"]
    assert sorted(second.skipped) == sorted(first.imported)
    assert sorted(second.failed) == sorted(first.failed)  # bad files are reported again, not forgotten
    assert tmp_store.summary().set_index("symbol").loc["BTCUSDT", "rows"] == 3 * 2 * 1440
    again = import_klines(d, tmp_store, workers=1, progress=False, reimport=True)
    assert len(again.imported) == 6 and tmp_store.summary().set_index("symbol").loc["BTCUSDT", "rows"] == 3 * 2 * 1440


def test_daily_and_monthly_files_of_one_month_merge_in_one_partition(tmp_path, tmp_store):
    d = tmp_path / "daily"
    d.mkdir()
    bars = generate_bars("BTCUSDT", n=3 * 1440, seed=4, start="2024-05-01")
    for day in range(3):
        part = bars.iloc[day * 1440:(day + 1) * 1440]
        write_zip(d / f"BTCUSDT-1m-2024-05-0{day + 1}.zip", f"BTCUSDT-1m-2024-05-0{day + 1}.csv", kline_csv(part))
    report = import_klines(d, tmp_store, workers=3, progress=False)
    assert report.ok and len(report.imported) == 3
    pd.testing.assert_frame_equal(tmp_store.load_bars("BTCUSDT"), bars, check_dtype=False)


def test_parse_reports_line_numbers_counting_the_header():
    bars = generate_bars("BTCUSDT", n=5, seed=1)
    lines = kline_csv(bars, header=True).splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[5], "-3", 1)  # line 4 (3rd data row): volume < 0
    good, bad, n_bad = parse_klines("\n".join(lines), "f.csv", "BTCUSDT")
    assert len(good) == 4 and n_bad == 1
    assert (bad[0].row, bad[0].field, bad[0].value) == (4, "volume", "-3")
    assert "f.csv line 4: field 'volume' = '-3'" in str(bad[0])


def test_import_of_a_missing_directory_names_it(tmp_store, tmp_path):
    with pytest.raises(NotADirectoryError, match="nowhere"):
        import_klines(tmp_path / "nowhere", tmp_store, progress=False)
    with pytest.raises(ValueError, match="workers must be a positive int, got 0"):
        import_klines(tmp_path, tmp_store, workers=0, progress=False)


def test_spark_data_import_dir_cli_reports_bad_rows_and_exits_1(dumps, tmp_path, capsys):
    from spark_research.cli import main

    d, _, _ = dumps
    store = tmp_path / "cli-store"
    assert main(["data", "import", str(d), "--store", str(store), "--workers", "1", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "5 files imported" in out and "4 bad files, 4 bad rows" in out
    assert "XRPUSDT-1m-2024-01.zip line 10: field 'close' = 'abc'" in out
    assert main(["data", "import", str(d), "--store", str(store), "--workers", "1", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "0 files imported" in out and "5 already imported" in out


_KILLED_IMPORT = textwrap.dedent("""
    import sys, time
    import spark_research.data.importer as imp
    real = imp.import_file
    calls = []
    def slow(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            open(sys.argv[3], "w").close()
            time.sleep(60)  # killed here, two files in
        return real(*a, **k)
    imp.import_file = slow
    from spark_research.data import BarStore
    imp.import_klines(sys.argv[1], BarStore(sys.argv[2]), workers=1, progress=False)
""")


def test_an_import_killed_midway_resumes_to_the_same_store(dumps, tmp_path):
    d, good, _ = dumps
    store_dir, flag = tmp_path / "killed", tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(d), str(store_dir), str(flag)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "import never got two files in"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = BarStore(store_dir)
    done = sorted(imported_files(store)["file"])
    assert 1 <= len(done) < 5  # it died with some files in and some to go
    resumed = import_klines(d, store, workers=1, progress=False)
    assert sorted(resumed.skipped) == done and len(resumed.imported) == 5 - len(done)
    reference = BarStore(tmp_path / "reference")
    import_klines(d, reference, workers=1, progress=False)
    pd.testing.assert_frame_equal(store.summary().drop(columns="bytes"), reference.summary().drop(columns="bytes"))

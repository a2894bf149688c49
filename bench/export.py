"""Export@Scale benchmark: a trades CSV through the export library vs DuckDB COPY and pandas.

The same Parquet file of seeded fills (ts UTC, symbol, side, price, qty, fee, id) is written
to CSV by three contenders, each in a fresh subprocess so its peak RSS growth (VmHWM minus
the RSS after imports) is its own:

* ``duckdb``  ``COPY (SELECT * FROM read_parquet(...)) TO 'x.csv' (HEADER)`` - the floor
* ``spark``   ``write_csv(from_parquet(...))`` - the export library (streams Arrow batches)
* ``pandas``  ``pd.read_parquet(...).to_csv(...)`` - what a notebook would do

Wall time on a shared machine swings with other load, so CPU seconds (user + sys, all threads)
are printed beside it. Targets (SPEC.md): spark <= 2x DuckDB, >= 4x faster than pandas, RSS growth < 200 MB at any
row count. Then the 50k-trade PDF report end to end (target < 10 s) on both routes, chromium
and its LaTeX (xelatex) fallback, with their ratio.

Contenders run round-robin, ``--runs`` times each (default 5): every figure is the median
[min–max] over the runs, every ratio the median [min–max] of the per-run ratios. Never asserts
on time; exits 1 only if the contenders' outputs disagree. A default run (about 3 minutes)
records its figures in ``bench/results.json``.

    .venv/bin/python bench/export.py [--rows 1000000 5000000] [--runs 5] [--no-pdf] [--renderers chromium latex]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import RESULTS, record
from _timing import MIN_RUNS, Spread, ratios

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import json, resource, sys, time, psutil
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def hwm():
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))
    return int(line.split()[1]) * 1024
"""
CONTENDERS = {
    "duckdb": """
import duckdb
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
base = psutil.Process().memory_info().rss
c0, t0 = cpu(), time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_parquet('{src}')) TO '{out}' (HEADER)")
""",
    "spark": """
from spark_research.export.sources import from_parquet
from spark_research.export.streaming import write_csv
base = psutil.Process().memory_info().rss
c0, t0 = cpu(), time.perf_counter()
write_csv(from_parquet(src), out)
""",
    "pandas": """
import pandas as pd
base = psutil.Process().memory_info().rss
c0, t0 = cpu(), time.perf_counter()
pd.read_parquet(src).to_csv(out, index=False)
""",
}


def make_rows(path: Path, rows: int) -> None:
    """Seeded fills to Parquet, one batch at a time (the generator of the export library)."""
    import pyarrow.parquet as pq

    from spark_research.export.sources import SYNTHETIC_SCHEMA, synthetic_fill_batches

    with pq.ParquetWriter(path, SYNTHETIC_SCHEMA, compression="zstd") as w:
        for batch in synthetic_fill_batches(rows, seed=42):
            w.write_batch(batch)


def run_contender(name: str, src: Path, out: Path) -> dict:
    code = _PRELUDE + f"src, out = {str(src)!r}, {str(out)!r}\n" + CONTENDERS[name] + \
        "sec = time.perf_counter() - t0\nprint(json.dumps({'seconds': sec, 'cpu': cpu() - c0, 'growth_mb': (hwm() - base) / 2**20}))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def count_and_ids(path: Path) -> tuple[int, str]:
    """Data rows of a CSV (newlines minus the header) and the last field of its last line (the id)."""
    n, last = 0, b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
            last = (last + chunk)[-200:]
    return n - 1, last.rstrip(b"\n").rsplit(b"\n", 1)[-1].rsplit(b",", 1)[-1].decode()


def bench_csv(rows: int, runs: int, workdir: Path, with_pandas: bool) -> tuple[bool, dict[str, Spread]]:
    """CSV export of ``rows`` fills by each contender; (outputs agree, figures by name)."""
    src = workdir / f"fills-{rows}.parquet"
    t0 = time.perf_counter()
    make_rows(src, rows)
    print(f"\n== {rows:,} fills -> CSV  (Parquet source {src.stat().st_size / 2**20:.0f} MiB, made in "
          f"{time.perf_counter() - t0:.1f} s); median [min–max] of {runs} runs, contenders round-robin")
    names = ["duckdb", "spark"] + (["pandas"] if with_pandas else [])
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(runs):
        for name in names:
            samples[name].append(run_contender(name, src, workdir / f"{name}.csv"))
    ok = True
    figures: dict[str, Spread] = {}
    for name in names:
        out = workdir / f"{name}.csv"
        n, last_id = count_and_ids(out)
        mib = out.stat().st_size / 2**20
        out.unlink()
        wall, cpu, growth = (Spread.of(r[key] for r in samples[name]) for key in ("seconds", "cpu", "growth_mb"))
        figures.update({name: wall, f"{name} growth": growth})
        print(f"  {name:7s} {format(wall, '.2f'):>22} s  (cpu {cpu.median:6.2f} s)   RSS growth "
              f"{format(growth, '.1f'):>22} MB   {mib:7.1f} MiB   rows {n:,}")
        if n != rows or last_id != str(rows):
            print(f"  !! {name} wrote {n} rows ending with id {last_id!r}, expected {rows} ending with {rows}")
            ok = False
    secs = {name: [r["seconds"] for r in samples[name]] for name in names}
    cpus = {name: [r["cpu"] for r in samples[name]] for name in names}
    figures["spark / duckdb"] = ratios(secs["spark"], secs["duckdb"])
    print(f"  ratio spark / duckdb COPY : {figures['spark / duckdb']:.2f}x   (target <= 2x)   "
          f"cpu time ratio {ratios(cpus['spark'], cpus['duckdb']).median:.2f}x (DuckDB uses both cores)")
    if with_pandas:
        figures["pandas / spark"] = ratios(secs["pandas"], secs["spark"])
        print(f"  speedup pandas / spark    : {figures['pandas / spark']:.2f}x   (target >= 4x)")
    print(f"  spark RSS growth          : {figures['spark growth']:.1f} MB   (target < 200 MB)")
    return ok, figures


def bench_pdf(workdir: Path, renderers: list[str], runs: int) -> dict[str, Spread | int]:
    """The backtest PDF report on each renderer, round-robin; figures by renderer (seconds end to end)."""
    from spark_research.export.report import render_report

    params = {"synthetic_bars": 240_000, "seed": 7, "params": {"fast": 2, "slow": 5}, "fees": 0.0,
              "slippage": 0.0, "direction": "both"}
    print(f"\n== backtest PDF report with every trade (stats, charts, monthly returns, summary, CSV attached); "
          f"median [min–max] of {runs} runs, renderers round-robin")
    for renderer in renderers:
        render_report("backtest", {"synthetic_bars": 2_000}, workdir / "warm.pdf", renderer=renderer)  # caches warm
    totals: dict[str, list[float]] = {r: [] for r in renderers}
    renders: dict[str, list[float]] = {r: [] for r in renderers}
    prints: dict[str, list[float]] = {r: [] for r in renderers}
    trades = 0
    for i in range(runs):
        for renderer in renderers:
            res = render_report("backtest", params, workdir / f"{renderer}{i}.pdf", renderer=renderer)
            totals[renderer].append(res.seconds)
            renders[renderer].append(res.timings["execute"] + res.timings["print"] + res.timings["attach"])
            prints[renderer].append(res.timings["print"])
            trades = res.rows
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items())
            print(f"  {res.renderer:8s} run {i}: {res.rows:,} trades, {res.bytes / 1e6:.1f} MB PDF, "
                  f"{res.seconds:.1f} s ({stages})")
    figures: dict[str, Spread | int] = {"trades": trades}
    for renderer in renderers:
        figures[renderer] = Spread.of(totals[renderer])
        print(f"  {renderer:8s} end to end (backtest included): {figures[renderer]:.1f} s; "
              f"report render (execute + print + attach): {Spread.of(renders[renderer]):.1f} s   (target < 10 s)")
    if {"chromium", "latex"} <= set(renderers):
        figures["latex / chromium"] = ratios(totals["latex"], totals["chromium"])
        print(f"  latex / chromium: end to end {figures['latex / chromium']:.2f}x, "
              f"print stage {ratios(prints['latex'], prints['chromium']):.2f}x")
    return figures


def record_csv(rows: int, f: dict[str, Spread]) -> None:
    size = f"{rows / 1e6:g}M rows"
    spark, duck = f"trades CSV, {size}, export library (`write_csv`)", f"trades CSV, {size}, DuckDB `COPY`"
    record("export", spark, f["spark"], "s", peer=duck, ratio=f["spark / duckdb"], target="≤ 2×")
    record("export", duck, f["duckdb"], "s")
    if "pandas" in f:
        record("export", f"trades CSV, {size}, pandas `read_parquet().to_csv()`", f["pandas"], "s", peer=spark,
               ratio=f["pandas / spark"], target="≥ 4×")
    record("export", f"trades CSV, {size}, export library RSS growth", f["spark growth"], "MB", target="< 200 MB")


def record_pdf(f: dict[str, Spread | int]) -> None:
    what = f"{f['trades'] / 1000:.0f}k-trade PDF report, end to end"
    chromium = f"{what}, chromium"
    if "chromium" in f:
        record("export", chromium, f["chromium"], "s", target="< 10 s", note="in a cancellable worker process")
    if "latex" in f:
        record("export", f"{what}, LaTeX (fallback)", f["latex"], "s", target="< 10 s",
               **({"peer": chromium, "ratio": f["latex / chromium"]} if "latex / chromium" in f else {}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--runs", "--repeat", type=int, default=MIN_RUNS, help="runs per contender (default 5)")
    ap.add_argument("--pandas-max-rows", type=int, default=1_000_000, help="skip pandas above this (minutes, GBs)")
    ap.add_argument("--no-pdf", action="store_true")
    ap.add_argument("--renderers", nargs="+", default=["chromium", "latex"], choices=["chromium", "latex"])
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args(argv)
    # only a run of the default sizes makes the README's figures
    defaults = all(getattr(args, k) == ap.get_default(k) for k in ("rows", "pandas_max_rows", "no_pdf", "renderers"))
    recording = not args.no_record and defaults and args.runs >= MIN_RUNS
    ok = True
    csv: dict[int, dict[str, Spread]] = {}
    pdf: dict[str, Spread | int] = {}
    with tempfile.TemporaryDirectory(prefix="spark-bench-export-") as tmp:
        for rows in args.rows:
            agree, csv[rows] = bench_csv(rows, args.runs, Path(tmp), with_pandas=rows <= args.pandas_max_rows)
            ok &= agree
        if not args.no_pdf:
            pdf = bench_pdf(Path(tmp), args.renderers, args.runs)
    if recording and ok:
        for rows, figures in csv.items():
            record_csv(rows, figures)
        if pdf:
            record_pdf(pdf)
        print(f"\nfigures recorded in {RESULTS}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())

"""Universe-scale benchmark: a 100-symbol x 1-year 1-minute universe (~52M bars) in the store.

Data half (this file today):

* ``generate``  ``generate_universe`` streams the universe into a fresh store: bars/s, store
  bytes, and the peak RSS of the generating process (it must stay far below the universe's size).
* ``scan``      one full-universe query - each symbol's last close per day and its daily return -
  by three contenders on the same Parquet files, each in a fresh subprocess so its peak RSS is
  its own (VmHWM), round-robin over ``--runs`` runs (median [min–max]):

  - ``spark``   ``BarStore(root).query(SQL)`` - the project's DuckDB view over the store
  - ``duckdb``  the same SQL on ``read_parquet('<root>/bars/*/*/data.parquet')`` - the floor
  - ``pandas``  ``pd.read_parquet`` of the columns it needs + ``groupby`` - what a notebook would do

  Targets (SPEC.md): spark <= 1.5x raw DuckDB; client peak RSS < 1 GB.

* ``sweep``     100 sma_cross combinations over every symbol on fresh Dask worker processes: worker-side
  loading (each step names a symbol, the worker reads it from the store) on 1 and 2 workers - the
  scaling, target >= 1.6x - and on 2 workers against the client loading and scattering the bars
  itself; peak RSS of the client and of each worker.

The universe goes to ``--dir`` (or ``$SPARK_BENCH_DIR``, else a temp dir removed at the end);
``--reuse`` keeps an existing universe there instead of generating it again. ``--symbols`` and
``--days`` shrink it. A run at the default size records its figures in ``bench/results.json``.
Never asserts on time; exits 1 only if the contenders' answers disagree.

    .venv/bin/python bench/scale.py [--symbols 100] [--days 365] [--runs 5] [--dir D] [--reuse]
                                    [--sections generate scan]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from _results import record
from _timing import MIN_RUNS, Spread, ratios

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SYMBOLS, DEFAULT_DAYS = 100, 365

#: The scan every contender answers: last close of each symbol per UTC day, and its daily return.
#: The day is bucketed on the epoch (what ``BarStore.duckdb()``'s ``utc_bucket`` macro expands to):
#: ``time_bucket`` on a TIMESTAMPTZ goes through ICU per row and made both DuckDB contenders ~20x slower.
SCAN_SQL = """
WITH daily AS (
    SELECT symbol, make_timestamp(epoch_ns(timestamp) // 86400000000000 * 86400000000) AS day,
           arg_max(close, timestamp) AS close
    FROM {bars} GROUP BY ALL)
SELECT symbol, day, close, close / lag(close) OVER (PARTITION BY symbol ORDER BY day) - 1 AS ret
FROM daily ORDER BY symbol, day
"""

_PRELUDE = """
import json, sys, time
import psutil
import pandas, pyarrow  # every contender returns a pandas frame: imports stay outside the timing
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) * 1024
root, sql = sys.argv[1], sys.argv[2]
"""
CONTENDERS = {
    "spark": """
from spark_research.data.store import BarStore
base = psutil.Process().memory_info().rss
t0 = time.perf_counter()
out = BarStore(root).query(sql.format(bars="bars"))
""",
    "duckdb": """
import duckdb
base = psutil.Process().memory_info().rss
t0 = time.perf_counter()
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
out = con.sql(sql.format(bars=f"read_parquet('{root}/bars/*/*/data.parquet')")).df()
""",
    "pandas": """
import pandas as pd
base = psutil.Process().memory_info().rss
t0 = time.perf_counter()
bars = pd.read_parquet(f"{root}/bars", columns=["timestamp", "symbol", "close"], partitioning=None)
bars["day"] = bars["timestamp"].dt.floor("D")
# files are read in path order (symbol, month), each sorted by time: no sort needed before last()
out = bars.groupby(["symbol", "day"], as_index=False, observed=True, sort=False)["close"].last()
del bars
out["ret"] = out.groupby("symbol", observed=True)["close"].pct_change()
""",
}
_EPILOGUE = """
sec = time.perf_counter() - t0
print(json.dumps({"seconds": sec, "hwm_mb": hwm() / 2**20, "growth_mb": (hwm() - base) / 2**20,
                  "rows": len(out), "close_sum": float(out["close"].sum()),
                  "ret_sum": float(out["ret"].fillna(0).sum())}))
"""


@dataclass
class BenchContext:
    """What the sections share: arguments, where the universe is, and the figures so far."""

    args: argparse.Namespace
    store_dir: Path
    figures: dict[str, Spread | float] = field(default_factory=dict)
    ok: bool = True

    @property
    def default_size(self) -> bool:
        return self.args.symbols == DEFAULT_SYMBOLS and self.args.days == DEFAULT_DAYS

    @property
    def label(self) -> str:
        return f"{self.args.symbols} symbols x {self.args.days} days of 1-min bars"


def _run_child(code: str, *argv: str, timeout: float = 3600) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- sections
def section_generate(ctx: BenchContext) -> None:
    """Generate the universe in a child process: bars/s, bytes, peak RSS of the generator."""
    a = ctx.args
    if a.reuse and (ctx.store_dir / "bars").is_dir():
        print(f"\n== generate: reusing the universe in {ctx.store_dir}")
        return
    shutil.rmtree(ctx.store_dir, ignore_errors=True)
    code = _PRELUDE.replace("root, sql = sys.argv[1], sys.argv[2]", "root = sys.argv[1]") + f"""
from spark_research.data.store import BarStore
from spark_research.data.universe import generate_universe
rep = generate_universe({a.symbols}, days={a.days}, seed=42, store=BarStore(root), progress=False)
print(json.dumps({{"bars": rep.bars, "bytes": rep.bytes, "seconds": rep.seconds, "hwm_mb": hwm() / 2**20}}))
"""
    print(f"\n== generate {ctx.label} into {ctx.store_dir} (one run: it is minutes at full size)")
    r = _run_child(code, str(ctx.store_dir))
    ctx.figures.update({"generate bars/s": r["bars"] / r["seconds"], "store GB": r["bytes"] / 1e9,
                        "generate RSS MB": r["hwm_mb"], "bars": r["bars"], "generate s": r["seconds"]})
    print(f"  {r['bars']:,} bars in {r['seconds']:.1f} s = {r['bars'] / r['seconds']:,.0f} bars/s; store "
          f"{r['bytes'] / 1e9:.2f} GB ({r['bytes'] / r['bars']:.1f} bytes/bar); generator peak RSS "
          f"{r['hwm_mb']:.0f} MB")


def section_scan(ctx: BenchContext) -> None:
    """The full-universe daily scan by each contender, round-robin, each run in a fresh process."""
    names = ["spark", "duckdb"] + ([] if ctx.args.no_pandas else ["pandas"])
    runs = ctx.args.runs
    print(f"\n== full-universe scan ({ctx.label}): last close per symbol per day + daily return; "
          f"median [min–max] of {runs} runs, contenders round-robin, each in a fresh process")
    samples: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(runs):
        for name in names:
            samples[name].append(_run_child(_PRELUDE + CONTENDERS[name] + _EPILOGUE, str(ctx.store_dir), SCAN_SQL))
        print(f"  run {i + 1}/{runs}: " + ", ".join(f"{n} {samples[n][-1]['seconds']:.2f} s" for n in names), flush=True)
    answers = {n: (samples[n][-1]["rows"], round(samples[n][-1]["close_sum"], 4), round(samples[n][-1]["ret_sum"], 6))
               for n in names}
    if len(set(answers.values())) != 1:
        print(f"  !! contenders disagree (rows, sum of closes, sum of returns): {answers}")
        ctx.ok = False
    for name in names:
        wall = Spread.of(r["seconds"] for r in samples[name])
        rss = Spread.of(r["hwm_mb"] for r in samples[name])
        ctx.figures[f"scan {name}"], ctx.figures[f"scan {name} RSS"] = wall, rss
        print(f"  {name:7s} {format(wall, '.2f'):>22} s   peak RSS {format(rss, '.0f'):>18} MB   "
              f"rows {answers[name][0]:,}")
    secs = {n: [r["seconds"] for r in samples[n]] for n in names}
    ctx.figures["scan spark / duckdb"] = ratios(secs["spark"], secs["duckdb"])
    print(f"  ratio spark / raw DuckDB : {ctx.figures['scan spark / duckdb']:.2f}x   (target <= 1.5x)")
    print(f"  spark client peak RSS    : {ctx.figures['scan spark RSS']:.0f} MB   (target < 1024 MB)")
    if "pandas" in names:
        ctx.figures["scan pandas / spark"] = ratios(secs["pandas"], secs["spark"])
        print(f"  pandas / spark           : {ctx.figures['scan pandas / spark']:.2f}x slower")


_SWEEP_CLIENT = """
import json, sys, time
from distributed import Client
from spark_research.data import BarStore
from spark_research.optimizer import Optimizer, SweepSpec
from spark_research.optimizer.warm import register_warm_plugin
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) * 1024
addr, root, mode, symbols = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = Client(addr, timeout="60s")
register_warm_plugin(client, wait=True)  # kernels loaded on every worker before the clock starts
opt = Optimizer(client, bar_store=BarStore(root), persist=False, load_on_workers=mode == "workers",
                warm_workers=False)
spec = SweepSpec(strategy="sma_cross", symbols=symbols, check=None,
                 values={"fast": list(range(5, 55, 5)), "slow": list(range(50, 550, 50))})
t0 = time.perf_counter()
table = opt.run(spec, progress=False).table
sec = time.perf_counter() - t0
print(json.dumps({"seconds": sec, "rows": len(table), "hwm_mb": hwm() / 2**20,
                  "sharpe_sum": float(table["sharpe"].sum())}))
"""


def _worker_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


def _sweep_once(ctx: BenchContext, mode: str, n_workers: int, symbols: list[str]) -> dict:
    """One sweep by a fresh client on a fresh scheduler and ``n_workers`` fresh worker processes."""
    import socket

    from spark_research.optimizer.service import worker_memory_limit
    from spark_research.platform.supervisor import Supervised

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = Path(tempfile.mkdtemp(prefix="scale-sweep-"))
    module = [sys.executable, "-m", "spark_research.optimizer.service"]
    address = f"tcp://127.0.0.1:{port}"
    procs = [Supervised("scheduler", module + ["scheduler", "--port", str(port), "--state-file", str(run / "s.json")],
                        state_file=run / "s.json").start()]
    try:
        for i in range(n_workers):
            procs.append(Supervised(f"w{i}", module + ["worker", "--scheduler", address, "--name", f"w{i}",
                                                       "--memory-limit", worker_memory_limit(2),
                                                       "--state-file", str(run / f"w{i}.json")],
                                    state_file=run / f"w{i}.json").start())
        r = _run_child(_SWEEP_CLIENT, address, str(ctx.store_dir), mode, json.dumps(symbols))
        r["worker_hwm_mb"] = [_worker_hwm_mb(p.pid) for p in procs[1:]]
        return r
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(run, ignore_errors=True)


def section_sweep(ctx: BenchContext) -> None:
    """A sweep of 100 sma_cross combinations over every symbol of the universe on fresh Dask worker
    processes: worker-side loading on 1 and 2 workers (the scaling), and on 2 workers against the
    client loading and scattering the bars itself; peak RSS of the client and of each worker."""
    from spark_research.data.universe import universe_symbols

    symbols = universe_symbols(ctx.args.symbols)
    runs = ctx.args.runs
    configs = [("workers", 1), ("workers", 2), ("scatter", 2)]
    print(f"\n== universe sweep ({ctx.label}, 100 combinations per symbol): median [min–max] of {runs} runs, "
          "configurations round-robin, fresh scheduler, workers and client each run")
    samples: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    for i in range(runs):
        for mode, n in configs:
            samples[(mode, n)].append(_sweep_once(ctx, mode, n, symbols))
        print(f"  run {i + 1}/{runs}: " + ", ".join(
            f"{m} x{n} {samples[(m, n)][-1]['seconds']:.1f} s" for m, n in configs), flush=True)
    answers = {c: (s[-1]["rows"], round(s[-1]["sharpe_sum"], 6)) for c, s in samples.items()}
    if len(set(answers.values())) != 1:
        print(f"  !! configurations disagree (rows, sum of sharpe): {answers}")
        ctx.ok = False
    for (mode, n), rs in samples.items():
        key = f"sweep {mode} x{n}"
        ctx.figures[key] = Spread.of(r["seconds"] for r in rs)
        ctx.figures[key + " client RSS"] = Spread.of(r["hwm_mb"] for r in rs)
        ctx.figures[key + " worker RSS"] = Spread.of(max(r["worker_hwm_mb"]) for r in rs)
        print(f"  {mode:7s} x{n}: {format(ctx.figures[key], '.1f'):>22} s   client peak RSS "
              f"{format(ctx.figures[key + ' client RSS'], '.0f'):>16} MB   largest worker peak RSS "
              f"{format(ctx.figures[key + ' worker RSS'], '.0f'):>16} MB")
    one = [r["seconds"] for r in samples[("workers", 1)]]
    two = [r["seconds"] for r in samples[("workers", 2)]]
    ctx.figures["sweep scaling"] = ratios(one, two)
    ctx.figures["sweep scatter / workers"] = ratios([r["seconds"] for r in samples[("scatter", 2)]], two)
    print(f"  2-worker scaling (worker-side loading): {ctx.figures['sweep scaling']:.2f}x   (target >= 1.6x)")
    print(f"  client scatter / worker-side loading, 2 workers: {ctx.figures['sweep scatter / workers']:.2f}x "
          "(> 1: worker-side loading is faster)")


#: Sections in run order; ``--sections`` picks some. Add the sweep's implementation above.
SECTIONS: dict[str, Callable[[BenchContext], None]] = {
    "generate": section_generate,
    "scan": section_scan,
    "sweep": section_sweep,
}


def record_figures(ctx: BenchContext) -> None:
    f, size = ctx.figures, "100 symbols x 1 year of 1-min bars"
    if "generate bars/s" in f:
        record("scale", f"generate universe ({size}), bars/s", f["generate bars/s"], "bars/s",
               note=f"{f['bars']:,.0f} bars, store {f['store GB']:.2f} GB, generator peak RSS {f['generate RSS MB']:.0f} MB")
    if "scan spark" in f:
        duck = f"full-universe daily scan ({size}), raw DuckDB"
        record("scale", f"full-universe daily scan ({size}), `BarStore.query`", f["scan spark"], "s", peer=duck,
               ratio=f["scan spark / duckdb"], target="≤ 1.5×")
        record("scale", duck, f["scan duckdb"], "s")
        record("scale", "universe scan client peak RSS", f["scan spark RSS"], "MB", target="< 1 GB")
        if "scan pandas" in f:
            record("scale", f"full-universe daily scan ({size}), pandas `read_parquet` + groupby", f["scan pandas"],
                   "s", peer="`BarStore.query`", ratio=f["scan pandas / spark"])
    _record_sweep(f, size)


def _record_sweep(f: dict, size: str) -> None:
    if "sweep workers x1" not in f:
        return
    label = f"universe sweep ({size}), 100 sma_cross combos per symbol"
    record("scale", f"{label}, worker-side loading, 1 worker", f["sweep workers x1"], "s",
           note=f"client peak RSS {f['sweep workers x1 client RSS']:.0f} MB, worker {f['sweep workers x1 worker RSS']:.0f} MB")
    record("scale", f"{label}, worker-side loading, 2 workers: scaling over 1 worker", f["sweep scaling"], "×",
           target="≥ 1.6×", note=f"2 workers {f['sweep workers x2']:.1f} s; client peak RSS "
                                 f"{f['sweep workers x2 client RSS']:.0f} MB, largest worker {f['sweep workers x2 worker RSS']:.0f} MB")
    record("scale", f"{label}, client scatter, 2 workers", f["sweep scatter x2"], "s",
           peer="worker-side loading, 2 workers", ratio=f["sweep scatter / workers"],
           note=f"client peak RSS {f['sweep scatter x2 client RSS']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS)
    ap.add_argument("--days", type=int, default=DEFAULT_DAYS)
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help=f"runs per scan contender (default {MIN_RUNS})")
    ap.add_argument("--dir", default=os.environ.get("SPARK_BENCH_DIR"), help="where the universe store goes "
                    "(default $SPARK_BENCH_DIR, else a temp dir removed afterwards)")
    ap.add_argument("--reuse", action="store_true", help="keep a universe already in --dir")
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas peer (it holds the universe in RAM)")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args(argv)
    for name in ("symbols", "days", "runs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    temp = args.dir is None
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="spark-scale-"))
    ctx = BenchContext(args, base / f"universe-{args.symbols}x{args.days}")
    t0 = time.perf_counter()
    try:
        for name in args.sections:
            SECTIONS[name](ctx)
    finally:
        if temp:
            shutil.rmtree(base, ignore_errors=True)
    if ctx.default_size and not args.no_record:
        record_figures(ctx)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s" + ("" if ctx.ok else " - CONTENDERS DISAGREE"))
    return 0 if ctx.ok else 1


if __name__ == "__main__":
    sys.exit(main())

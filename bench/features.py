"""Features benchmark: the feature store vs a straightforward pandas implementation, incremental
updates vs full recompute, and the live one-bar path.

Sections (``--sections`` picks some; each is a function of :class:`BenchContext`):

* ``store``       every shipped feature (20 features, 23 columns, cross-asset ones included) for
  one symbol of ``--bars`` 1-minute bars, *through the store*: ``FeatureStore.build(full=True)``
  reads the bars (and the universe's closes) from the bar store, computes, writes Parquet by
  month with the code hashes. Peers, measured round-robin in the same runs:

  - ``pandas``          the same features written the way a pandas user writes them (``rolling``,
    ``ewm`` for MACD, ``rolling(...).apply`` for the fixed-width fractional differencing, as in
    AFML snippet 5.3), reading the same bars with ``BarStore.load_bars`` and writing one Parquet
    file with ``DataFrame.to_parquet``;
  - ``pandas+convolve`` the same, but the fractional differencing as ``np.convolve`` - a stronger
    peer than a pandas user would write, to show how much of the gap is the one slow feature.

  Also compute-only (in memory, no I/O) ratios, and a check that both agree (every feature
  whose definition is the same in both; MACD differs by design: truncated vs infinite EMA).
  Target: store >= 3x faster than the pandas peer.
* ``incremental`` 1,000 new bars appended to the bar store, then ``FeatureStore.build`` (only the
  new rows, with the lookback as context) vs ``build(full=True)`` on the same data; each run
  appends the next 1,000 bars. The two stores' contents are checked equal bit for bit at the end.
  Target: incremental >= 100x faster.
* ``live``        ``LiveFeatures.update`` of one bar with every shipped feature: P50/P95/P99 per
  bar over ``--live-bars`` bars per run. Target (features + inference): P95 < 2 ms.
* ``cv`` and ``inference``: hooks for the models half of issue 12 (purged CV of LightGBM on
  1M rows x 20 features on 1 vs 2 workers; live feature + inference P95). Replace the
  placeholders below; :func:`live_rows` gives them the same live feature stream.

Default size (1M bars, 5 runs) records its figures in ``bench/results.json`` (``--no-record``
or ``$SPARK_BENCH_RESULTS`` to write elsewhere). Never asserts on time; exits 1 only if a
check of agreement fails.

    .venv/bin/python bench/features.py [--bars 1000000] [--runs 5] [--sections store incremental live]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from _results import record
from _timing import MIN_RUNS, Spread, ratios, timed_interleaved

DEFAULT_BARS = 1_000_000
SYMBOL, UNIVERSE = "BTCUSDT", ("BTCUSDT", "ETHUSDT", "SOLUSDT")
NEW_BARS = 1_000


@dataclass
class BenchContext:
    """What the sections share: arguments, the bar store and the figures so far."""

    args: argparse.Namespace
    root: Path
    figures: dict[str, Spread | float | str] = field(default_factory=dict)
    ok: bool = True
    _bars: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def default_size(self) -> bool:
        return self.args.bars == DEFAULT_BARS and self.args.runs >= MIN_RUNS

    def bars(self, symbol: str) -> pd.DataFrame:
        """Seeded 1-minute bars of ``symbol`` (``--bars`` + room for the incremental runs)."""
        if symbol not in self._bars:
            from spark_research.data.synthetic import generate_bars

            self._bars[symbol] = generate_bars(symbol, n=self.args.bars + NEW_BARS * self.args.runs, seed=12)
        return self._bars[symbol]

    def store_dir(self, name: str, n: int) -> Path:
        """A bar store under the bench dir with the first ``n`` bars of every universe symbol."""
        from spark_research.data.store import BarStore

        path = self.root / name
        if not path.exists():
            store = BarStore(path)
            for s in UNIVERSE:
                store.write_bars(self.bars(s).iloc[:n])
        return path


# ----------------------------------------------------------------- the pandas peer
def pandas_features(b: pd.DataFrame, universe: pd.DataFrame, fracdiff: str = "rolling_apply") -> pd.DataFrame:
    """The shipped features as a pandas user writes them (``b`` indexed by timestamp)."""
    from spark_research.features.kernels import ffd_weights

    c, o, h, lo, v = b["close"], b["open"], b["high"], b["low"], b["volume"]
    lc = np.log(c)
    lr = lc.diff()
    out: dict[str, pd.Series] = {}
    for hz in (1, 5, 20):
        out[f"ret_{hz}"] = c.pct_change(hz)
    for hz in (1, 5, 20):
        out[f"logret_{hz}"] = lc.diff(hz)
    out["rv_cc_20"] = lr.rolling(20).std()
    hl2 = np.log(h / lo) ** 2
    out["rv_parkinson_20"] = np.sqrt(hl2.rolling(20).mean() / (4 * np.log(2)))
    gk = 0.5 * hl2 - (2 * np.log(2) - 1) * np.log(c / o) ** 2
    out["rv_gk_20"] = np.sqrt(gk.rolling(20).mean().clip(lower=0))
    d = c.diff()
    up, down = d.clip(lower=0).rolling(14).sum(), (-d).clip(lower=0).rolling(14).sum()
    out["rsi_14"] = 100 * up / (up + down)
    line = c.ewm(span=12, adjust=False).mean() / c.ewm(span=26, adjust=False).mean() - 1
    out["macd_line"], out["macd_hist"] = line, line - line.ewm(span=9, adjust=False).mean()
    out["bb_pos_20"] = (c - c.rolling(20).mean()) / (2.0 * c.rolling(20).std())
    out["volume_z_50"] = (v - v.rolling(50).mean()) / v.rolling(50).std()
    dv = np.log(c * v)
    out["dollar_volume_z_50"] = (dv - dv.rolling(50).mean()) / dv.rolling(50).std()
    out["autocorr_50"] = lr.rolling(50).corr(lr.shift(1))
    w = ffd_weights(0.4, 1e-4)
    if fracdiff == "rolling_apply":
        out["fracdiff_04"] = lc.rolling(len(w)).apply(lambda x: np.dot(w[::-1], x), raw=True)
    else:
        fd = np.full(len(lc), np.nan)
        fd[len(w) - 1:] = np.convolve(lc.to_numpy(), w, mode="valid")
        out["fracdiff_04"] = pd.Series(fd, index=lc.index)
    idx = b.index
    seconds = idx.hour * 3600 + idx.minute * 60 + idx.second
    out["time_of_day_sin"] = pd.Series(np.sin(2 * np.pi * seconds / 86400), index=idx)
    out["time_of_day_cos"] = pd.Series(np.cos(2 * np.pi * seconds / 86400), index=idx)
    out["day_of_week_sin"] = pd.Series(np.sin(2 * np.pi * idx.day_of_week / 7), index=idx)
    out["day_of_week_cos"] = pd.Series(np.cos(2 * np.pi * idx.day_of_week / 7), index=idx)
    lu = np.log(universe)
    for hz in (1, 20):
        out[f"xs_ret_{hz}"] = lc.diff(hz) - lu.diff(hz).mean(axis=1)
    return pd.DataFrame(out)


def pandas_store(root: Path, out_file: Path, fracdiff: str) -> pd.DataFrame:
    """The peer through the same bar store: load bars and universe, compute, one Parquet file."""
    from spark_research.data.store import BarStore

    store = BarStore(root)
    b = store.load_bars(SYMBOL).set_index("timestamp")
    universe = pd.DataFrame({s: store.load_bars(s).set_index("timestamp")["close"] for s in UNIVERSE}).reindex(b.index)
    feats = pandas_features(b, universe, fracdiff)
    feats.to_parquet(out_file)
    return feats


# ----------------------------------------------------------------- sections
def section_store(ctx: BenchContext) -> None:
    from spark_research.features import get_feature, list_features
    from spark_research.features.registry import as_bars, compute_features, feature_columns
    from spark_research.features.store import FeatureStore

    n, runs = ctx.args.bars, ctx.args.runs
    names = [name for name in list_features() if not get_feature(name).trades]  # the bench store holds bars, no trades
    print(f"\n== store: {len(names)} features ({len(feature_columns(names))} columns) x {n:,} bars of {SYMBOL} "
          f"(universe {len(UNIVERSE)} symbols), {runs} runs")
    root = ctx.store_dir("store", n)
    fs = FeatureStore(root)
    out_dir = ctx.root / "peer"
    out_dir.mkdir(exist_ok=True)
    # warm every path once (numba kernels from the disk cache, DuckDB, pyarrow)
    fs.build(SYMBOL, names, full=True)
    t = timed_interleaved({
        "store": lambda: fs.build(SYMBOL, names, full=True),
        "pandas": lambda: pandas_store(root, out_dir / "a.parquet", "rolling_apply"),
        "pandas+convolve": lambda: pandas_store(root, out_dir / "b.parquet", "convolve"),
    }, runs)
    stored = fs.load(SYMBOL, names)
    peer = t["pandas"].result.reindex(columns=stored.columns)
    same = [c for c in stored.columns if not c.startswith("macd")]
    # difference in units of the column's spread: pandas' rolling mean/std carry running sums whose
    # error grows along the series (bb_pos_20 on raw prices drifts to ~2e-5 of its spread over 1M
    # bars; the store recomputes each window), and sin(pi) is 1e-16 either side of 0, so a
    # relative difference would flag noise
    errs = {c: float(np.nanmax(np.abs(stored[c].to_numpy() - peer[c].to_numpy())) / np.nanstd(peer[c].to_numpy()))
            for c in same}
    worst = max(errs, key=errs.get)
    err = errs[worst]
    nan_same = bool((np.isnan(stored[same].to_numpy()) == np.isnan(peer[same].to_numpy())).all())
    agree = err < 1e-4 and nan_same
    ctx.ok &= agree
    r = ratios(t["pandas"], t["store"])
    r2 = ratios(t["pandas+convolve"], t["store"])
    for k in ("store", "pandas", "pandas+convolve"):
        print(f"  {k:<16} {t[k]:.3f} s")
    print(f"  pandas / store            {r:.1f}x   (target >= 3x)")
    print(f"  pandas+convolve / store   {r2:.1f}x")
    print(f"  agreement (all but MACD): max |diff| / std {err:.1e} ({worst}), same NaNs {nan_same} "
          f"-> {'ok' if agree else 'DISAGREE'}")

    # compute only: the same features in memory, no I/O
    b = as_bars(ctx.bars(SYMBOL).iloc[:n])
    universe = pd.DataFrame({s: as_bars(ctx.bars(s).iloc[:n])["close"] for s in UNIVERSE})
    c = timed_interleaved({
        "spark": lambda: compute_features(b, names, universe=universe),
        "pandas": lambda: pandas_features(b, universe, "rolling_apply"),
        "pandas+convolve": lambda: pandas_features(b, universe, "convolve"),
    }, runs)
    rc, rc2 = ratios(c["pandas"], c["spark"]), ratios(c["pandas+convolve"], c["spark"])
    print(f"  compute only: spark {c['spark']:.3f} s, pandas {c['pandas']:.3f} s ({rc:.1f}x), "
          f"pandas+convolve {c['pandas+convolve']:.3f} s ({rc2:.1f}x)")
    ctx.figures.update({"store": t["store"], "pandas": t["pandas"], "pandas+convolve": t["pandas+convolve"],
                        "store ratio": r, "store ratio convolve": r2, "compute": c["spark"],
                        "compute pandas": c["pandas"], "compute ratio": rc, "compute ratio convolve": rc2})


def section_incremental(ctx: BenchContext) -> None:
    from spark_research.data.store import BarStore
    from spark_research.features import get_feature, list_features
    from spark_research.features.store import FeatureStore

    n, runs = ctx.args.bars, ctx.args.runs
    names = [name for name in list_features() if not get_feature(name).trades]  # the bench store holds bars, no trades
    print(f"\n== incremental: {NEW_BARS:,} new bars on {n:,} stored, {len(names)} features, {runs} runs")
    root = ctx.root / "incremental"
    shutil.rmtree(root, ignore_errors=True)
    if (ctx.root / "store" / "bars").is_dir():  # the store section's bars: copying beats writing them again
        shutil.copytree(ctx.root / "store" / "bars", root / "bars")
    root = ctx.store_dir("incremental", n)
    bars, fs = BarStore(root), FeatureStore(root)
    fs.build(SYMBOL, names, full=True)
    inc, full, inc_cpu, full_cpu = [], [], [], []
    for r in range(runs):
        lo, hi = n + r * NEW_BARS, n + (r + 1) * NEW_BARS
        for s in UNIVERSE:  # the bars arrive (not timed: that is the bar store's write)
            bars.write_bars(ctx.bars(s).iloc[lo:hi])
        t0, c0 = time.perf_counter(), time.process_time()
        res = fs.build(SYMBOL, names)[SYMBOL]
        inc.append(time.perf_counter() - t0)
        inc_cpu.append(time.process_time() - c0)
        if (res.mode, res.rows) != ("incremental", NEW_BARS):
            print(f"  run {r}: expected an incremental build of {NEW_BARS} rows, got {res.mode} {res.rows}")
            ctx.ok = False
        after_inc = fs.load(SYMBOL, names) if r == runs - 1 else None
        t0, c0 = time.perf_counter(), time.process_time()
        fs.build(SYMBOL, names, full=True)
        full.append(time.perf_counter() - t0)
        full_cpu.append(time.process_time() - c0)
        if after_inc is not None:
            after_full = fs.load(SYMBOL, names)
            same = after_inc.index.equals(after_full.index) and np.array_equal(
                after_inc.to_numpy(), after_full.to_numpy(), equal_nan=True)
            print(f"  incremental == full recompute, bit for bit ({len(after_full):,} rows): {same}")
            ctx.ok &= same
    ti, tf = Spread.of(inc), Spread.of(full)
    ratio = ratios(full, inc)
    cpu_ratio = ratios(full_cpu, inc_cpu)
    print(f"  incremental {ti.scaled(1e3):.1f} ms, full recompute {tf:.3f} s -> {ratio:.0f}x  (target >= 100x)")
    print(f"  process CPU: incremental {Spread.of(inc_cpu).scaled(1e3):.1f} ms, full {Spread.of(full_cpu):.3f} s "
          f"-> {cpu_ratio:.0f}x  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    ctx.figures.update({"incremental": ti, "full": tf, "incremental ratio": ratio, "incremental cpu ratio": cpu_ratio})


def live_rows(ctx: BenchContext, names: list[str] | None = None, n: int | None = None
              ) -> Iterator[tuple[float, float, np.ndarray]]:
    """Warm a :class:`LiveFeatures` on the bench bars, then yield ``(wall s, thread CPU s, row)`` for
    each of ``n`` further bars: the live feature stream the inference section reuses (add the
    model's time). On a shared machine the wall time includes waits for a core; the thread's CPU
    time is what the code costs."""
    from spark_research.features.live import LiveFeatures
    from spark_research.features.registry import as_bars

    n = n or ctx.args.live_bars
    live = LiveFeatures(names, universe=list(UNIVERSE))
    total = live.lookback + 1 + n
    b = as_bars(ctx.bars(SYMBOL).iloc[:total])
    universe = pd.DataFrame({s: as_bars(ctx.bars(s).iloc[:total])["close"] for s in UNIVERSE})
    live.warm(b.iloc[:live.lookback + 1], universe.iloc[:live.lookback + 1])
    ts = b.index
    cols = {c: b[c].to_numpy() for c in b.columns}
    uni = universe.to_numpy()
    for i in range(live.lookback + 1, total):
        bar = {"timestamp": int(ts[i].value), **{c: cols[c][i] for c in cols}}
        u = dict(zip(UNIVERSE, uni[i]))
        t0, c0 = time.perf_counter(), time.thread_time()
        row = live.update(bar, u)
        yield time.perf_counter() - t0, time.thread_time() - c0, row


def section_live(ctx: BenchContext) -> None:
    from spark_research.features import get_feature, list_features

    names = [name for name in list_features() if not get_feature(name).trades]  # the bench store holds bars, no trades
    print(f"\n== live: one bar -> its row of {len(names)} features, {ctx.args.live_bars:,} bars x {ctx.args.runs} runs")
    for _ in live_rows(ctx, names, 200):  # warm-up
        pass
    p50, p95, p99, c95 = [], [], [], []
    for _ in range(ctx.args.runs):
        times = np.array([(w, c) for w, c, _ in live_rows(ctx, names)]) * 1e3
        p50.append(np.percentile(times[:, 0], 50))
        p95.append(np.percentile(times[:, 0], 95))
        p99.append(np.percentile(times[:, 0], 99))
        c95.append(np.percentile(times[:, 1], 95))
    s50, s95, s99, sc95 = Spread.of(p50), Spread.of(p95), Spread.of(p99), Spread.of(c95)
    print(f"  per bar, wall: P50 {s50:.3f} ms, P95 {s95:.3f} ms, P99 {s99:.3f} ms  (target features + inference P95 < 2 ms)")
    print(f"  per bar, thread CPU: P95 {sc95:.3f} ms  (wall - CPU = waiting for a core; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    ctx.figures.update({"live p50": s50, "live p95": s95, "live p99": s99, "live cpu p95": sc95})


def section_cv(ctx: BenchContext) -> None:
    """Purged K-fold CV of LightGBM on 1M rows x 20 features on a 1-worker and a 2-worker LocalCluster
    (``bench/features_cv.py``): target 2-worker scaling >= 1.6x; out-of-fold predictions identical."""
    from features_cv import bench_purged_cv

    print(f"\n== cv: purged CV of LightGBM, {ctx.args.bars:,} rows x 20 features, 1 vs 2 Dask workers, "
          f"{ctx.args.runs} runs")
    figs = bench_purged_cv(n_rows=ctx.args.bars, n_features=20, repeat=ctx.args.runs)
    ctx.figures.update({"cv one": figs["one"], "cv two": figs["two"], "cv scaling": figs["scaling"]})
    if not figs["identical"]:
        print("  !! out-of-fold predictions differ between 1 worker, 2 workers and in-process")
        ctx.ok = False


def section_inference(ctx: BenchContext) -> None:
    """Live features + LightGBM inference per bar through the models' ModelMonitor (target P95 < 2 ms)."""
    from spark_research.models.monitor import ModelMonitor
    from spark_research.models.training import TrainSpec, train_model

    bars = ctx.bars(SYMBOL)
    n_train, n_live = 20_000, ctx.args.live_bars
    model = train_model(bars.iloc[:n_train], TrainSpec(n_splits=3))
    print(f"\n== inference: ModelMonitor.update (live features, LightGBM P(up), drift bins) per bar, "
          f"{len(model.columns)} columns, {n_live:,} bars x {ctx.args.runs} runs")
    p50, p95, p99, c95 = [], [], [], []
    for r in range(ctx.args.runs + 1):  # run 0 warms up
        start = n_train + r * n_live
        mon = ModelMonitor(model, history=bars.iloc[start - 300:start], window=500)
        wall, cpu = [], []
        for bar in bars.iloc[start:start + n_live].to_dict("records"):
            t0, c0 = time.perf_counter(), time.thread_time()
            mon.update(bar)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        if r:
            w, c = np.array(wall) * 1e3, np.array(cpu) * 1e3
            p50.append(np.percentile(w, 50)); p95.append(np.percentile(w, 95)); p99.append(np.percentile(w, 99))
            c95.append(np.percentile(c, 95))
    s50, s95, s99, sc95 = Spread.of(p50), Spread.of(p95), Spread.of(p99), Spread.of(c95)
    print(f"  per bar, wall: P50 {s50:.3f} ms, P95 {s95:.3f} ms, P99 {s99:.3f} ms  (target P95 < 2 ms)")
    print(f"  per bar, thread CPU: P95 {sc95:.3f} ms  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    ctx.figures.update({"inference p50": s50, "inference p95": s95, "inference p99": s99, "inference cpu p95": sc95})


#: Sections in run order; ``--sections`` picks some. Add the models' sections above.
SECTIONS: dict[str, Callable[[BenchContext], None]] = {
    "store": section_store,
    "incremental": section_incremental,
    "live": section_live,
    "cv": section_cv,
    "inference": section_inference,
}


def record_figures(ctx: BenchContext) -> None:
    f, size = ctx.figures, f"{ctx.args.bars / 1e6:g}M bars"
    if "store" in f:
        peer = f"pandas features ({size}), load + compute + to_parquet"
        record("features", f"20 features through the feature store ({size})", f["store"], "s", peer=peer,
               ratio=Spread(1 / f["store ratio"].median, 1 / f["store ratio"].max, 1 / f["store ratio"].min,
                            f["store ratio"].runs), target="≤ 0.33× (≥ 3× faster)",
               note="peer computes fracdiff with rolling().apply (AFML 5.3)")
        record("features", peer, f["pandas"], "s")
        record("features", "pandas peer with fracdiff by np.convolve", f["pandas+convolve"], "s",
               peer="feature store", ratio=f["store ratio convolve"])
        record("features", f"20 features in memory, compute only ({size})", f["compute"], "s",
               peer="pandas, compute only", ratio=f["compute ratio"])
    if "incremental" in f:
        record("features", f"incremental update, {NEW_BARS:,} new bars on {size}", f["incremental"], "s",
               peer="full recompute", ratio=f["incremental ratio"], target="≥ 100× faster",
               note=f"process CPU ratio {f['incremental cpu ratio'].median:.0f}×")
        record("features", f"full recompute ({size})", f["full"], "s")
    if "cv scaling" in f:
        name = f"purged CV LightGBM, {ctx.args.bars:,} rows x 20 features"
        record("features", f"{name}, 2 workers: scaling over 1 worker", f["cv scaling"], "×", target="≥ 1.6×",
               note=f"1 worker {f['cv one'].median:.1f} s, 2 workers {f['cv two'].median:.1f} s; 1 thread per fold")
    if "inference p95" in f:
        record("features", "live features + LightGBM inference per bar (ModelMonitor.update), P95", f["inference p95"],
               "ms", target="< 2 ms", note=f"P50 {f['inference p50'].median:.3f} ms, thread CPU P95 "
                                           f"{f['inference cpu p95'].median:.3f} ms")
    if "live p95" in f:
        record("features", "live feature row per bar, P95", f["live p95"], "ms", target="< 2 ms with inference",
               note=f"P50 {f['live p50'].median:.3f} ms, P99 {f['live p99'].median:.3f} ms, "
                    f"thread CPU P95 {f['live cpu p95'].median:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=DEFAULT_BARS)
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help=f"runs per contender (default {MIN_RUNS})")
    ap.add_argument("--live-bars", type=int, default=5_000, help="bars per live run (default 5000)")
    ap.add_argument("--dir", help="where the bench stores go, kept for the next run with the same --bars "
                    "(default: a temp dir removed afterwards)")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args(argv)
    for name in ("bars", "runs", "live_bars"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    temp = args.dir is None
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="spark-features-"))
    ctx = BenchContext(args, base)
    t0 = time.perf_counter()
    try:
        for name in args.sections:
            SECTIONS[name](ctx)
    finally:
        if temp:
            shutil.rmtree(base, ignore_errors=True)
    if ctx.default_size and not args.no_record:
        record_figures(ctx)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s" + ("" if ctx.ok else " - CHECKS FAILED"))
    return 0 if ctx.ok else 1


if __name__ == "__main__":
    sys.exit(main())

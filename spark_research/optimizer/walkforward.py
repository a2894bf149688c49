"""Walk-forward optimisation with an overfitting report.

The bars are cut into in-sample (IS) / out-of-sample (OOS) windows, rolling (the IS window
slides) or anchored (the IS window always starts at the first bar). Each IS window is swept
on the optimizer (all windows are submitted at once and share the cluster); the best
combination is then backtested on the following OOS window with ``run_backtest`` (full
vectorbt stats; indicators warm up inside the OOS window, so no IS bar leaks into it). The
OOS equity curves are chained into one stitched curve.

The report adds, over the whole sample, the probability of backtest overfitting by CSCV
and the deflated Sharpe ratio of the best combination given the number of trials
(:mod:`spark_research.optimizer.overfitting`), from per-period returns of every combination.

Example::

    >>> wf_windows(1_000, is_bars=400, oos_bars=200)
    [(0, 400, 400, 600), (200, 600, 600, 800), (400, 800, 800, 1000)]
    >>> wf_windows(1_000, is_bars=400, oos_bars=300, anchored=True)
    [(0, 400, 400, 700), (0, 700, 700, 1000)]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.backtest import run_backtest
from spark_research.optimizer.overfitting import PBOResult, dsr_of_best, pbo_cscv, period_returns
from spark_research.optimizer.spec import SpecError, SweepSpec, combinations
from spark_research.optimizer.sweep import Optimizer, pre_sweep_check, rank


def wf_windows(n_bars: int, *, is_bars: int, oos_bars: int, anchored: bool = False) -> list[tuple[int, int, int, int]]:
    """``(is_start, is_end, oos_start, oos_end)`` bar positions (ends exclusive) of every window that fits."""
    for name, v in (("n_bars", n_bars), ("is_bars", is_bars), ("oos_bars", oos_bars)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if is_bars + oos_bars > n_bars:
        raise ValueError(f"is_bars + oos_bars = {is_bars + oos_bars} exceeds n_bars = {n_bars}")
    out, k = [], 0
    while is_bars + (k + 1) * oos_bars <= n_bars:
        is_end = is_bars + k * oos_bars
        out.append((0 if anchored else k * oos_bars, is_end, is_end, is_end + oos_bars))
        k += 1
    return out


@dataclass
class WalkForwardResult:
    """Per-window choices and objectives, stitched OOS equity and the overfitting report."""

    spec: SweepSpec
    windows: pd.DataFrame  #: one row per window: bounds, chosen parameters, IS and OOS objective
    oos_equity: pd.Series  #: OOS equity curves chained into one
    pbo: PBOResult
    dsr: dict[str, float]
    full_sweep: pd.DataFrame = field(repr=False)  #: the whole-sample sweep used for PBO and DSR
    check: dict[str, Any] | None = None  #: the lookahead check run before the first window (or skipped)

    def report(self) -> dict[str, Any]:
        """Headline numbers: mean IS vs OOS objective, PBO, deflated Sharpe ratio."""
        w = self.windows
        return {"objective": self.spec.objective, "windows": len(w),
                "is_objective_mean": float(w["is_objective"].mean()),
                "oos_objective_mean": float(w["oos_objective"].mean()),
                "oos_total_return": float(self.oos_equity.iloc[-1] / self.spec.init_cash - 1),
                "pbo": self.pbo.pbo, "cscv_splits": self.pbo.n_splits, "trials": self.pbo.n_trials,
                "dsr": self.dsr["dsr"], "best_sharpe_per_period": self.dsr["sr"],
                "expected_max_sharpe_per_period": self.dsr["sr0"]}


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    """Bars may come with a naive (UTC) index from the engine's frame helpers: report UTC times."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _checkpoints(n_bars: int, n_periods: int) -> np.ndarray:
    """Last bar position of each of ``n_periods`` near-equal blocks."""
    return np.array([b[-1] for b in np.array_split(np.arange(n_bars), n_periods)], dtype=np.int64)


def walk_forward(
    optimizer: Optimizer,
    spec: SweepSpec,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    *,
    is_bars: int,
    oos_bars: int,
    anchored: bool = False,
    n_periods: int = 64,
    cscv_splits: int = 8,
    timeout: float | None = None,
) -> WalkForwardResult:
    """Walk-forward optimise ``spec`` (one symbol; grid, random or list space) on ``bars``.

    ``n_periods``: the whole sample is cut into this many periods whose returns feed PBO
    (``cscv_splits`` blocks) and the deflated Sharpe ratio.

    Example::

        >>> res = walk_forward(opt, spec, bars, is_bars=8_000, oos_bars=4_000)  # doctest: +SKIP
        >>> res.report()["pbo"]                                                 # doctest: +SKIP
    """
    if len(spec.symbols) != 1:
        raise SpecError(f"symbols: walk-forward takes exactly one symbol, got {spec.symbols!r}")
    if spec.space == "tpe":
        raise SpecError("space: walk-forward sweeps a fixed set of combinations (grid, random, list), got 'tpe'")
    sym = spec.symbols[0]
    frame = optimizer._bars(spec, bars)[sym]
    n = len(frame)
    wins = wf_windows(n, is_bars=is_bars, oos_bars=oos_bars, anchored=anchored)
    if n_periods < cscv_splits:
        raise ValueError(f"n_periods ({n_periods}) must be >= cscv_splits ({cscv_splits})")
    combos = combinations(spec)
    check = pre_sweep_check(spec, {sym: frame}, combos)  # once for the whole walk-forward
    user_spec, spec = spec, dataclasses.replace(spec, check=None)
    handles = [optimizer.submit(spec, {sym: frame.iloc[a:b]}, block=True, combos=combos, persist=False,
                                sweep_id=f"wf-{i}-{np.random.default_rng().integers(1 << 40):x}")
               for i, (a, b, _, _) in enumerate(wins)]
    ck = _checkpoints(n, n_periods)
    full = optimizer.submit(spec, {sym: frame}, block=True, combos=combos, persist=False, checkpoints={sym: ck},
                            sweep_id=f"wf-full-{np.random.default_rng().integers(1 << 40):x}")
    rows, segments, level = [], [], spec.init_cash
    params = spec.param_names
    for (a, b, c, d), h in zip(wins, handles):
        ranked = rank(h.result(timeout).table, spec)
        if not np.isfinite(ranked["objective"].iloc[0]):
            raise ValueError(f"window {a}:{b}: no combination has a finite {spec.objective}")
        best = {p: ranked[p].iloc[0].item() for p in params}
        oos = run_backtest(spec.strategy, frame.iloc[c:d], best, fees=spec.fees, slippage=spec.slippage,
                           init_cash=spec.init_cash)
        eq = oos.equity * (level / spec.init_cash)
        level = float(eq.iloc[-1])
        segments.append(eq)
        rows.append({"is_start": _utc(frame.index[a]), "is_end": _utc(frame.index[b - 1]),
                     "oos_start": _utc(frame.index[c]), "oos_end": _utc(frame.index[d - 1]), **best, "is_objective": float(ranked["objective"].iloc[0]),
                     "oos_objective": float(oos.stats[spec.objective]),
                     "oos_total_return": float(oos.stats["total_return"]), "oos_trades": int(oos.stats["trades"])})
    full_res = full.result(timeout)
    values = full_res.values[sym]
    rets = period_returns(values, spec.init_cash)
    return WalkForwardResult(spec=user_spec, check=check, windows=pd.DataFrame(rows), oos_equity=pd.concat(segments).rename("oos_equity"),
                             pbo=pbo_cscv(rets, n_splits=cscv_splits), dsr=dsr_of_best(rets), full_sweep=full_res.table)


__all__ = ["wf_windows", "walk_forward", "WalkForwardResult"]

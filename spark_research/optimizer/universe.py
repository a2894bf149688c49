"""Universe sweeps: one strategy x a parameter grid x every symbol of a universe, judged together.

:func:`universe_sweep` runs the sweep on the optimizer's Dask cluster with each worker loading
the symbols its steps name from the store (the client never holds the universe), records
every (symbol, combination) trial's portfolio value at ``n_periods`` period ends, and reports:

- ``table``: one row per symbol and combination (every stat of the sweep);
- :meth:`UniverseSweepResult.summary`: one row per combination aggregated over the universe
  (mean and median objective, share of symbols where it is positive), best first;
- :meth:`UniverseSweepResult.heatmap`: the objective over a parameter pair, averaged over symbols;
- ``overfitting``: the probability of backtest overfitting (CSCV) and the deflated Sharpe ratio of
  the best trial, over all symbol x combination trials (the universe multiplies the trials a
  researcher has effectively looked at, and the deflation accounts for them).

The universe's symbols are expected to cover the same bars (a generated or imported universe
does); the period ends are positions in the first symbol's bars.

Example::

    >>> res = universe_sweep(opt, SweepSpec(strategy="sma_cross", symbols=symbols,     # doctest: +SKIP
    ...                      values={"fast": [5, 10, 20], "slow": [50, 100]}))
    >>> res.summary().head(3); res.overfitting["pbo"]                                  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from spark_research.optimizer.overfitting import dsr_of_best, pbo_cscv, period_returns
from spark_research.optimizer.spec import SpecError, SweepSpec
from spark_research.optimizer.sweep import Optimizer, SweepResult


@dataclass
class UniverseSweepResult:
    """A universe sweep: the per-symbol table, the trials' period returns and the overfitting report."""

    sweep: SweepResult
    returns: np.ndarray = field(repr=False)  #: periods x trials (trial = symbol-major, then combination)
    trials: pd.DataFrame = field(repr=False)  #: symbol and parameters of each trial (columns of ``returns``)
    overfitting: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        return self.sweep.table

    def summary(self) -> pd.DataFrame:
        """One row per combination over the universe: mean/median objective, share of symbols > 0; best first."""
        spec = self.sweep.spec
        params, obj = spec.param_names, spec.objective
        g = self.table.groupby(params, sort=False)[obj]
        out = pd.DataFrame({f"{obj}_mean": g.mean(), f"{obj}_median": g.median(),
                            "positive_share": g.apply(lambda s: float((s > 0).mean())), "symbols": g.size()})
        return out.sort_values(f"{obj}_mean", ascending=False).reset_index()

    def heatmap(self, x: str, y: str, **opts: Any):
        """HoloViews heatmap of the objective over ``x`` and ``y``, averaged over every symbol (and other params)."""
        return self.sweep.heatmap(x, y, **opts)


def universe_sweep(optimizer: Optimizer, spec: SweepSpec, *, n_periods: int = 16, cscv_splits: int = 8,
                   timeout: float | None = None, progress: bool = True) -> UniverseSweepResult:
    """Sweep ``spec`` over every symbol of ``spec.symbols`` from the store (see the module docstring)."""
    from spark_research.data import default_store

    if len(spec.symbols) < 2:
        raise SpecError(f"symbols: a universe sweep needs at least 2 symbols, got {spec.symbols!r}")
    store = optimizer.bar_store if optimizer.bar_store is not None else default_store()
    summary = store.summary()
    rows = summary[(summary["kind"] == "bars") & summary["symbol"].isin(spec.symbols)].set_index("symbol")["rows"]
    missing = [s for s in spec.symbols if s not in rows.index]
    if missing:
        raise SpecError(f"symbols {missing} are not in the store {store.root}")
    if spec.start is not None or spec.end is not None:
        n_bars = len(store.load_bars(spec.symbols[0], spec.start, spec.end, columns=["timestamp"]))
    else:
        n_bars = int(rows.min())
    if n_bars < n_periods * 2:
        raise SpecError(f"n_periods: {n_periods} periods need at least {2 * n_periods} bars, the universe has {n_bars}")
    ck = np.array([b[-1] for b in np.array_split(np.arange(n_bars), n_periods)], dtype=np.int64)
    handle = optimizer.submit(spec, checkpoints={s: ck for s in spec.symbols}, block=True, timeout=timeout)
    optimizer.follow(handle, progress=progress, timeout=timeout)
    result = handle.result(timeout)
    per_symbol = [period_returns(result.values[s], spec.init_cash) for s in spec.symbols]
    returns = np.concatenate(per_symbol, axis=1)
    combos = result.table.loc[result.table["symbol"] == spec.symbols[0], spec.param_names].reset_index(drop=True)
    trials = pd.concat([combos.assign(symbol=s) for s in spec.symbols], ignore_index=True)
    pbo = pbo_cscv(returns, n_splits=cscv_splits)
    dsr = dsr_of_best(returns)
    best = trials.iloc[dsr["best"]].to_dict()
    report = {"pbo": pbo.pbo, "cscv_splits": pbo.n_splits, "trials": int(returns.shape[1]), "periods": n_periods,
              "dsr": dsr["dsr"], "best_trial": best, "best_sharpe_per_period": dsr["sr"],
              "expected_max_sharpe_per_period": dsr["sr0"]}
    return UniverseSweepResult(result, returns, trials, report)

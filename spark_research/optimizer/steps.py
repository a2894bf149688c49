"""One sweep step: a chunk of combinations for one symbol, evaluated in one call on a worker.

The fused numba kernels (:mod:`spark_research.optimizer.fused`) evaluate a step when the
strategy has one, the engine options are ``run_backtest``'s defaults and the objective is
one of :data:`FUSED_STATS`; any other strategy (the user's own) runs on the generic path
(:mod:`spark_research.optimizer.generic`: the strategy's own signals, all combinations
simulated in one numba kernel, every stat of ``run_backtest``). ``force_engine`` loops
``run_backtest`` instead (the reference the other two are tested against).

``strategy`` is anything the resolver takes, or a
:class:`~spark_research.backtest.registry.StrategyPayload` (how a sweep ships a user's
class to its workers: by import path or by value).

Example::

    >>> import pandas as pd
    >>> from spark_research.data import generate_bars
    >>> bars = generate_bars("BTCUSDT", n=2_000, seed=1).set_index("timestamp")
    >>> out = evaluate_step("sma_cross", "BTCUSDT", bars, pd.DataFrame({"fast": [5], "slow": [30]}))
    >>> out["table"][["symbol", "fast", "slow", "trades"]].to_dict("records")
    [{'symbol': 'BTCUSDT', 'fast': 5, 'slow': 30, 'trades': 44}]
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spark_research.backtest import STAT_FIELDS, run_backtest
from spark_research.backtest.registry import load_payload
from spark_research.backtest.strategies import STRATEGIES
from spark_research.optimizer.fused import FUSED_STATS, evaluate_fused, supports


@dataclass(frozen=True)
class BarsRef:
    """Where a step's bars are, so the worker running it loads them itself from the store.

    The client then never holds the universe: a step names a store (its root: a path, a shared
    mount or an ``s3://`` URL), a symbol and a time range. A worker keeps the last few symbols it
    loaded (:data:`WORKER_CACHE` of them), so the many steps of one symbol load it once.

    Example::

        >>> ref = BarsRef("data/store", "BTCUSDT")
        >>> ref.load().index.name                     # doctest: +SKIP
        'timestamp'
    """

    root: str
    symbol: str
    start: str | None = None
    end: str | None = None
    storage_options: tuple[tuple[str, Any], ...] | None = None  # hashable, for the worker's cache

    @classmethod
    def of(cls, store, symbol: str, start: Any = None, end: Any = None) -> "BarsRef":
        opts = getattr(store, "_storage_options", None)
        return cls(str(getattr(store, "url", store.root)), symbol, None if start is None else str(start),
                   None if end is None else str(end), tuple(sorted(opts.items())) if opts else None)

    def load(self) -> pd.DataFrame:
        """The bars, indexed by ``timestamp`` without the ``symbol`` column (as steps take them)."""
        return _load_ref(self)


#: Symbols a worker keeps in memory after loading them for a step.
WORKER_CACHE = 4


@functools.lru_cache(maxsize=WORKER_CACHE)
def _load_ref(ref: BarsRef) -> pd.DataFrame:
    from spark_research.data import BarStore

    store = BarStore(ref.root, dict(ref.storage_options)) if ref.storage_options else BarStore(ref.root)
    df = store.load_bars(ref.symbol, ref.start, ref.end)
    if df.empty:
        raise KeyError(f"symbol {ref.symbol!r} has no bars in the store {ref.root} between {ref.start} and {ref.end}")
    return df.set_index("timestamp").drop(columns="symbol")


def uses_fused(strategy, objective: str) -> bool:
    """True when a sweep of ``strategy`` judged by ``objective`` runs on a fused kernel."""
    cls = load_payload(strategy)
    return supports(cls.name) and objective in FUSED_STATS and STRATEGIES.get(cls.name) is cls


def evaluate_step(
    strategy,
    symbol: str,
    bars: "pd.DataFrame | BarsRef",
    combos: pd.DataFrame,
    *,
    objective: str = "sharpe",
    fees: float = 0.001,
    slippage: float = 0.0005,
    init_cash: float = 10_000.0,
    checkpoints: np.ndarray | None = None,
    force_engine: bool = False,
) -> dict[str, Any]:
    """Evaluate every row of ``combos`` on ``bars``; returns ``{"table", "values", "ms"}``.

    ``table``: ``symbol``, the parameter columns and the stats (fused: :data:`FUSED_STATS`,
    engine: every stat of ``run_backtest``). ``values``: portfolio value at ``checkpoints``
    (bars x combos) or None. ``ms``: wall time on the worker. Any invalid combination raises
    ``ParameterError`` naming it, which fails the step (and its job).
    """
    t0 = time.perf_counter()
    if isinstance(bars, BarsRef):
        bars = bars.load()
    strat = load_payload(strategy)
    for combo in combos.to_dict("records"):
        strat.resolve(combo)  # raises ParameterError naming the bad combination
    values = None
    if not force_engine and uses_fused(strat, objective):
        res = evaluate_fused(strat.name, bars, combos, fees=fees, slippage=slippage, init_cash=init_cash,
                             checkpoints=checkpoints)
        stats, values = res if checkpoints is not None else (res, None)
    elif not force_engine:
        from spark_research.optimizer.generic import evaluate_generic

        res = evaluate_generic(strat, bars, combos, fees=fees, slippage=slippage, init_cash=init_cash,
                               checkpoints=checkpoints)
        stats, values = res if checkpoints is not None else (res, None)
    else:
        rows, cols = [], []
        for combo in combos.to_dict("records"):
            r = run_backtest(strat, bars, combo, fees=fees, slippage=slippage, init_cash=init_cash)
            rows.append(r.stats)
            if checkpoints is not None:
                cols.append(r.equity.to_numpy()[np.asarray(checkpoints, dtype=np.int64)])
        stats = pd.DataFrame(rows, columns=list(STAT_FIELDS), index=combos.index)
        if checkpoints is not None:
            values = np.column_stack(cols) if cols else np.empty((len(checkpoints), 0))
    table = pd.concat([combos.reset_index(drop=True), stats.reset_index(drop=True)], axis=1)
    table.insert(0, "symbol", symbol)
    return {"table": table, "values": values, "ms": (time.perf_counter() - t0) * 1e3}

"""Cross-sectional strategies: rank the universe each period, hold the top of it, one shared cash pool.

A :class:`CrossSectionalStrategy` scores every symbol on every bar (higher is better); every
``rebalance`` bars the ``top_k`` best-scored symbols get equal target weights and the rest
none. :func:`run_rotation` backtests it on vectorbt (``Portfolio.from_orders`` with target
percentages, one group with ``cash_sharing=True`` and ``call_seq="auto"`` so sells fund buys),
with the platform's fill rule: weights decided on a bar's close trade at the next bar's open.
Fees may differ per symbol. Deterministic: ties in the ranking break by symbol name.

Example::

    >>> from spark_research.data import generate_bars
    >>> bars = {s: generate_bars(s, n=3_000, seed=i) for i, s in enumerate(["AAA", "BBB", "CCC", "DDD"])}
    >>> res = run_rotation(MomentumRotation, bars, {"lookback": 240, "top_k": 2, "rebalance": 240})
    >>> res.weights.iloc[240:].dropna(how="all").sum(axis=1).round(6).unique().tolist()
    [1.0]
    >>> sorted(res.stats)[:3]
    ['max_drawdown', 'rebalances', 'sharpe']
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.backtest.strategy import Param, ParameterError


class CrossSectionalStrategy:
    """Base of strategies that rank a universe: declare :class:`Param` attributes, implement :meth:`scores`.

    ``top_k`` and ``rebalance`` are Params of every such strategy (override their ranges).
    """

    top_k = Param(10, low=1, high=500)
    rebalance = Param(1_440, low=1, high=100_000)
    params: dict[str, Param] = {}
    name = "cross_sectional"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Param)})
        cls.params = found
        if "name" not in vars(cls):
            cls.name = cls.__name__

    @classmethod
    def defaults(cls) -> dict[str, int | float]:
        return {k: p.default for k, p in cls.params.items()}

    @classmethod
    def resolve(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, each checked against its Param's range (errors name it)."""
        out = cls.defaults()
        for k, v in dict(params or {}).items():
            if k not in cls.params:
                raise ParameterError(f"{cls.name}: unknown parameter {k!r}; known: {sorted(cls.params)}")
            p = cls.params[k]
            if p.is_int:
                if float(v) != int(v):
                    raise ParameterError(f"{cls.name}: parameter {k!r} = {v!r} must be an integer")
                v = int(v)
            else:
                v = float(v)
            if not p.low <= v <= p.high:
                raise ParameterError(f"{cls.name}: parameter {k!r} = {v!r} outside [{p.low}, {p.high}]")
            out[k] = v
        return out

    def scores(self, closes: pd.DataFrame, **params: Any) -> pd.DataFrame:  # pragma: no cover - abstract
        """Bars x symbols: each symbol's score on each bar (NaN: not rankable yet)."""
        raise NotImplementedError


class MomentumRotation(CrossSectionalStrategy):
    """Hold the ``top_k`` symbols by trailing return over ``lookback`` bars, rebalanced every ``rebalance`` bars."""

    name = "momentum_rotation"
    lookback = Param(1_440, low=2, high=100_000)

    def scores(self, closes: pd.DataFrame, lookback: int, **_: Any) -> pd.DataFrame:
        return closes / closes.shift(lookback) - 1.0


def target_weights(scores: pd.DataFrame, top_k: int, rebalance: int) -> pd.DataFrame:
    """Equal weights ``1/top_k`` on the ``top_k`` best scores every ``rebalance`` bars (NaN elsewhere: no order).

    A rebalance bar with fewer than ``top_k`` rankable symbols holds the rest in cash. Ties break by
    column order (symbols sorted by name), so the result is deterministic.
    """
    values = scores.to_numpy(dtype=float)
    out = np.full(values.shape, np.nan)
    rows = np.arange(0, len(values), int(rebalance))
    for i in rows:
        row = values[i]
        ok = np.flatnonzero(np.isfinite(row))
        if ok.size == 0:
            continue
        order = ok[np.lexsort((ok, -row[ok]))]  # best score first, then symbol order
        out[i] = 0.0
        out[i, order[:top_k]] = 1.0 / top_k
    return pd.DataFrame(out, index=scores.index, columns=scores.columns)


def universe_frames(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(opens, closes)``: bars x symbols (symbols sorted) from a long frame or ``{symbol: frame}``."""
    if isinstance(bars, Mapping):
        parts = []
        for sym, df in bars.items():
            df = df.reset_index() if "timestamp" not in df.columns else df
            parts.append(df.assign(symbol=sym)[["timestamp", "symbol", "open", "close"]])
        bars = pd.concat(parts, ignore_index=True)
    wide = bars.pivot(index="timestamp", columns="symbol", values=["open", "close"]).sort_index()
    opens, closes = wide["open"], wide["close"]
    cols = sorted(closes.columns)
    return opens[cols].ffill(), closes[cols].ffill()


@dataclass
class RotationResult:
    """A rotation backtest: the target weights, the vectorbt portfolio (one group, shared cash) and its stats."""

    strategy: str
    params: dict[str, Any]
    weights: pd.DataFrame
    portfolio: Any = field(repr=False)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def equity(self) -> pd.Series:
        """Portfolio value of the shared pool on every bar."""
        return self.portfolio.value()


def _stats(pf, weights: pd.DataFrame) -> dict[str, float]:
    value = pf.value().to_numpy()
    rets = np.diff(value) / value[:-1]
    sd = rets.std(ddof=1) if len(rets) > 1 else 0.0
    peak = np.maximum.accumulate(value)
    return {"total_return": float(value[-1] / value[0] - 1.0),
            "sharpe": float(rets.mean() / sd * math.sqrt(len(rets))) if sd > 0 else 0.0,  # over the sample
            "max_drawdown": float(((peak - value) / peak).max()),
            "trades": int(pf.orders.count().sum()),
            "rebalances": int(weights.notna().any(axis=1).sum())}


def run_rotation(strategy: type[CrossSectionalStrategy], bars: pd.DataFrame | Mapping[str, pd.DataFrame],
                 params: Mapping[str, Any] | None = None, *, fees: float | Mapping[str, float] = 0.001,
                 slippage: float = 0.0005, init_cash: float = 100_000.0) -> RotationResult:
    """Backtest ``strategy`` on the universe ``bars`` with one shared cash pool (see the module docstring).

    ``fees``: one fraction for every symbol, or ``{symbol: fraction}`` (symbols left out pay 0.001).
    """
    p = strategy.resolve(params)
    opens, closes = universe_frames(bars)
    if isinstance(fees, Mapping):
        unknown = sorted(set(fees) - set(closes.columns))
        if unknown:
            raise ParameterError(f"fees: symbols {unknown} are not in the universe")
        fee_row = np.array([float(fees.get(s, 0.001)) for s in closes.columns])
    else:
        fee_row = np.full(len(closes.columns), float(fees))
    weights = target_weights(strategy().scores(closes, **p), p["top_k"], p["rebalance"])
    return RotationResult(strategy.name, p, weights, *_simulate(opens, closes, weights, fee_row, slippage, init_cash))


def _simulate(opens, closes, weights, fee_row, slippage, init_cash):
    import vectorbt as vbt

    size = weights.shift(1)  # decided on the close, traded at the next open
    pf = vbt.Portfolio.from_orders(
        closes, size=size, size_type="targetpercent", price=opens, fees=fee_row[None, :], slippage=slippage,
        init_cash=init_cash, cash_sharing=True, group_by=True, call_seq="auto", freq=_freq(closes.index))
    return pf, _stats(pf, weights)


def _freq(index: pd.Index):
    return pd.Timedelta(np.median(np.diff(index.asi8[:1000]))) if len(index) > 1 else None


# ------------------------------------------------------------------------------ sweeps on Dask
@dataclass(frozen=True)
class UniverseRef:
    """The universe a rotation step runs on: the worker loads it from the store itself (and keeps the last one)."""

    root: str
    symbols: tuple[str, ...]
    start: str | None = None
    end: str | None = None

    def load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _load_universe(self)


@functools.lru_cache(maxsize=2)
def _load_universe(ref: UniverseRef) -> tuple[pd.DataFrame, pd.DataFrame]:
    from spark_research.data import BarStore

    store = BarStore(ref.root)
    frames = {s: store.load_bars(s, ref.start, ref.end) for s in ref.symbols}
    empty = [s for s, f in frames.items() if f.empty]
    if empty:
        raise KeyError(f"symbols {empty} have no bars in the store {ref.root}")
    return universe_frames(frames)


def evaluate_rotation_step(strategy: type[CrossSectionalStrategy], universe: UniverseRef, combos: pd.DataFrame,
                           fees: float = 0.001, slippage: float = 0.0005, init_cash: float = 100_000.0) -> dict:
    """Every row of ``combos`` on the universe (one Dask step); returns ``{"table": params + stats}``."""
    opens, closes = universe.load()
    fee_row = np.full(len(closes.columns), float(fees))
    rows = []
    for combo in combos.to_dict("records"):
        p = strategy.resolve(combo)
        w = target_weights(strategy().scores(closes, **p), p["top_k"], p["rebalance"])
        _, stats = _simulate(opens, closes, w, fee_row, slippage, init_cash)
        rows.append({**combo, **stats})
    return {"table": pd.DataFrame(rows)}


def sweep_rotation(optimizer, strategy: type[CrossSectionalStrategy], symbols: list[str],
                   values: Mapping[str, list], *, store=None, start: Any = None, end: Any = None,
                   user: str = "default", priority: str = "normal", step_size: int = 2,
                   timeout: float | None = None) -> pd.DataFrame:
    """Sweep ``strategy``'s parameter grid ``values`` over the universe ``symbols`` on the optimizer's
    Dask cluster (its queue: priorities and fairness apply); each worker loads the universe itself.
    Returns one row per combination, sorted by Sharpe (best first).
    """
    import itertools

    from spark_research.data import default_store

    store = store if store is not None else default_store()
    names = list(values)
    combos = pd.DataFrame([dict(zip(names, v)) for v in itertools.product(*(values[n] for n in names))])
    for combo in combos.to_dict("records"):
        strategy.resolve(combo)  # a bad combination fails here, named, not on a worker
    ref = UniverseRef(str(getattr(store, "url", store.root)), tuple(sorted(symbols)),
                      None if start is None else str(start), None if end is None else str(end))
    steps = [(evaluate_rotation_step, (strategy, ref, combos.iloc[i:i + step_size]), {}, step_size * len(symbols))
             for i in range(0, len(combos), step_size)]
    job = optimizer.scheduler.submit(steps, user=user, priority=priority)
    parts = job.result(timeout)
    table = pd.concat([p["table"] for p in parts], ignore_index=True)
    return table.sort_values(["sharpe"] + names, ascending=[False] + [True] * len(names), ignore_index=True)

"""Lookahead-bias and warm-up checks for strategies.

* :func:`check_lookahead` recomputes signals and indicators on data truncated at many
  points. A causal strategy gives, for every bar before the cut, exactly the values it
  gave on the full data; any value that changes when *future* bars are removed is
  lookahead, and is reported with its bar, series and both values.
* :func:`check_warmup` recomputes indicators on the last *L* bars only, for growing *L*,
  and reports which indicators' latest values depend on how much history was loaded
  (recursive indicators such as EMAs do) and the history length that makes them stable.

Example::

    >>> from spark_research.backtest.lookahead import check_lookahead
    >>> from spark_research.data import generate_bars
    >>> check_lookahead("sma_cross", generate_bars("BTCUSDT", n=2_000, seed=1)).passed
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.backtest.engine import to_frame
from spark_research.backtest.strategies import get_strategy
from spark_research.backtest.strategy import Strategy

_SIGNALS = ("entries", "exits", "short_entries", "short_exits")


@dataclass(frozen=True)
class Violation:
    """One value that changed when bars after ``cut`` were removed."""

    series: str
    timestamp: pd.Timestamp
    cut: pd.Timestamp
    full_value: Any
    truncated_value: Any

    def __str__(self) -> str:
        return (f"{self.series} at {self.timestamp}: {self.full_value!r} with all bars, "
                f"{self.truncated_value!r} with bars up to {self.cut}")


@dataclass
class LookaheadReport:
    """Result of :func:`check_lookahead`; ``passed`` is True when nothing peeked ahead."""

    strategy: str
    params: dict[str, Any]
    cuts: int
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def leaky_series(self) -> list[str]:
        return sorted({v.series for v in self.violations})

    def __str__(self) -> str:
        if self.passed:
            return f"{self.strategy} {self.params}: no lookahead in {self.cuts} truncation points"
        lines = [f"{self.strategy} {self.params}: LOOKAHEAD in {self.leaky_series}"]
        lines += [f"  {v}" for v in self.violations[:10]]
        return "\n".join(lines)


def _series_of(strategy: type[Strategy], bars: pd.DataFrame, params: Mapping[str, Any]) -> dict[str, pd.Series]:
    inst = strategy()
    out = {f"indicator:{k}": v for k, v in inst.indicators(bars, **params).items()}
    sig = inst.signals(bars, **params)
    out.update({f"signal:{k}": getattr(sig, k) for k in _SIGNALS if getattr(sig, k) is not None})
    return out


def _first_mismatch(full: pd.Series, part: pd.Series, rtol: float) -> int | None:
    a, b = full.to_numpy(), part.to_numpy()
    if a.dtype == bool or b.dtype == bool:
        diff = a.astype(bool) != b.astype(bool)
    else:
        a, b = a.astype("float64"), b.astype("float64")
        both_nan = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=rtol, atol=0.0)
        diff = ~(close | both_nan)
    idx = np.flatnonzero(diff)
    return int(idx[0]) if len(idx) else None


def check_lookahead(strategy: str | type[Strategy], bars: pd.DataFrame, params: Mapping[str, Any] | None = None,
                    n_cuts: int = 25, min_bars: int | None = None, rtol: float = 1e-12) -> LookaheadReport:
    """Recompute the strategy on ``bars[:k]`` for ``n_cuts`` cut points ``k`` and report every
    signal or indicator value (before the cut) that differs from the full-data run."""
    strat = get_strategy(strategy)
    resolved = strat.resolve(dict(params or {}))
    frame = to_frame(bars)
    n = len(frame)
    lo = min_bars or max(2, min(n // 10, 500))
    cuts = np.unique(np.linspace(lo, n - 1, num=min(n_cuts, max(1, n - lo))).astype(int))
    full = _series_of(strat, frame, resolved)
    report = LookaheadReport(strat.name, resolved, len(cuts))
    for k in cuts:
        part = _series_of(strat, frame.iloc[:k], resolved)
        for name, series in full.items():
            i = _first_mismatch(series.iloc[:k], part[name], rtol)
            if i is not None:
                report.violations.append(Violation(name, frame.index[i], frame.index[k - 1],
                                                   series.iloc[i], part[name].iloc[i]))
    return report


@dataclass
class WarmupReport:
    """Result of :func:`check_warmup`: per indicator, the history needed for stable values."""

    strategy: str
    params: dict[str, Any]
    tail: int
    #: indicator -> bars of history after which its last ``tail`` values no longer change
    warmup_bars: dict[str, int]
    #: indicators whose recent values depend on the loaded history beyond their window
    history_dependent: list[str]

    @property
    def warmup(self) -> int:
        """History the whole strategy needs: the largest per-indicator warm-up."""
        return max(self.warmup_bars.values(), default=0)

    def __str__(self) -> str:
        parts = [f"{k}: {v} bars" for k, v in self.warmup_bars.items()]
        dep = f"; history-dependent (recursive): {self.history_dependent}" if self.history_dependent else ""
        return f"{self.strategy} {self.params}: warm-up {self.warmup} bars ({', '.join(parts)}){dep}"


def check_warmup(strategy: str | type[Strategy], bars: pd.DataFrame, params: Mapping[str, Any] | None = None,
                 tail: int = 50, rtol: float = 1e-9) -> WarmupReport:
    """Compute indicators on the last ``L`` bars for growing ``L`` and find, per indicator, the
    smallest ``L`` from which its last ``tail`` values equal the full-history values.

    An indicator is *history-dependent* when some ``L`` already gives it a full, NaN-free
    tail that still differs from the full-history values (recursive smoothing), so the
    warm-up it needs is longer than its nominal window.
    """
    strat = get_strategy(strategy)
    resolved = strat.resolve(dict(params or {}))
    frame = to_frame(bars)
    n = len(frame)
    inst = strat()
    full = {k: v.iloc[-tail:] for k, v in inst.indicators(frame, **resolved).items()}
    lengths = sorted({int(x) for x in np.unique(np.geomspace(tail + 1, n, num=24).astype(int))} | {n})
    stable_from = {k: n for k in full}
    dependent: set[str] = set()
    ok_since: dict[str, int | None] = {k: None for k in full}
    for length in lengths:
        part = inst.indicators(frame.iloc[-length:], **resolved)
        for name, ref in full.items():
            got = part[name].iloc[-tail:]
            same = _first_mismatch(ref, got, rtol) is None
            if same:
                ok_since[name] = ok_since[name] or length
            else:
                ok_since[name] = None
                if not got.isna().any():
                    dependent.add(name)
    for name in full:
        stable_from[name] = ok_since[name] or n
    return WarmupReport(strat.name, resolved, tail, stable_from, sorted(dependent))

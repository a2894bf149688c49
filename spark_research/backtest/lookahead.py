"""Lookahead-bias and warm-up checks for strategies.

* :func:`check_lookahead` recomputes signals and indicators on data truncated at many
  points. A causal strategy gives, for every bar up to the cut, exactly the values it
  gave on the full data; any value that changes when *future* bars are removed is
  lookahead, and is reported with its bar, series and both values. The cuts go where
  leaks show: through the indicators' warm-up, at every signal bar, at bars before time
  gaps, day boundaries and empty bars, plus evenly spaced and seeded random ones.
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

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from spark_research.backtest.strategy import Strategy

# The engine (vectorbt, ~4 s to import) is imported by the strategy checks when they run, so
# check_series_lookahead (features) costs no vectorbt import.

_SIGNALS = ("entries", "exits", "short_entries", "short_exits")

#: Every kind of cut :func:`check_lookahead` makes, in the order it plans them.
CUT_KINDS = ("warmup", "special", "signal", "even", "random")


@dataclass(frozen=True)
class Violation:
    """One value that changed when the bars after ``cut`` were removed.

    ``bar`` is the integer position of the offending bar (``timestamp``), ``cut_bar`` the
    position of the last bar kept (``cut``), so ``bar <= cut_bar``; ``kind`` is the kind of
    cut that found it (one of :data:`CUT_KINDS`).
    """

    series: str
    timestamp: pd.Timestamp
    cut: pd.Timestamp
    full_value: Any
    truncated_value: Any
    bar: int = -1
    cut_bar: int = -1
    kind: str = ""

    def __str__(self) -> str:
        return (f"{self.series} at bar {self.bar} ({self.timestamp}): {self.full_value!r} with all bars, "
                f"{self.truncated_value!r} with bars up to bar {self.cut_bar} ({self.cut}) [{self.kind} cut]")


@dataclass
class LookaheadReport:
    """Result of :func:`check_lookahead`; ``passed`` is True when nothing peeked ahead.

    A *cut at bar t* reruns the strategy on bars ``0..t`` and compares every value up to
    ``t`` with the full-data run.
    """

    strategy: str
    params: dict[str, Any]
    #: cuts made (each a rerun of the strategy on a prefix of the bars)
    cuts: int
    violations: list[Violation] = field(default_factory=list)
    #: kind -> cuts made of that kind (a bar wanted by two kinds is cut once)
    cuts_by_kind: dict[str, int] = field(default_factory=dict)
    #: sorted positions of the last bar kept by each cut
    cut_bars: list[int] = field(default_factory=list)
    #: bars where some signal fires on the full data (and a cut is possible)
    signal_bars: int = 0
    #: how many of those bars had a cut right at them
    signal_bars_checked: int = 0
    #: cuts planned before the time budget was applied
    planned: int = 0
    budget_s: float = math.inf
    #: True when the time budget stopped the check before every planned cut was made
    budget_exhausted: bool = False
    elapsed_s: float = 0.0
    #: cut bar -> exception raised by the strategy on that prefix (not lookahead; not compared)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def leaky_series(self) -> list[str]:
        return sorted({v.series for v in self.violations})

    def _coverage(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.cuts_by_kind.items())
        text = (f"{self.cuts} truncation points ({kinds}); "
                f"signal bars checked {self.signal_bars_checked}/{self.signal_bars}")
        if self.budget_exhausted:
            text += f"; time budget {self.budget_s:g} s ran out after {self.cuts} of {self.planned} planned cuts"
        if self.errors:
            first = min(self.errors)
            text += f"; strategy raised on {len(self.errors)} cut(s), first at bar {first}: {self.errors[first]}"
        return text

    def __str__(self) -> str:
        if self.passed:
            return f"{self.strategy} {self.params}: no lookahead in {self._coverage()}"
        lines = [f"{self.strategy} {self.params}: LOOKAHEAD in {self.leaky_series}", f"  {self._coverage()}"]
        # the earliest offending bar of each series first: the same bar seen by many cuts is one finding
        first: dict[str, Violation] = {}
        for v in sorted(self.violations, key=lambda v: (v.bar, v.cut_bar)):
            first.setdefault(v.series, v)
        shown = list(first.values())[:10]
        lines += [f"  {v}" for v in shown]
        if len(self.violations) > len(shown):
            lines.append(f"  ... and {len(self.violations) - len(shown)} more (bar, cut) pairs")
        return "\n".join(lines)


# -- running a strategy ----------------------------------------------------------------------


def _run(strategy: type[Strategy], bars: pd.DataFrame, params: Mapping[str, Any]) -> dict[str, pd.Series]:
    """Indicators and signals of one run, named ``indicator:<name>`` and ``signal:<name>``."""
    inst = strategy()
    computed = inst.indicators(bars, **params)
    compute = inst.indicators
    try:
        sig = inspect.signature(compute)
    except (TypeError, ValueError):  # pragma: no cover - builtins only
        sig = None

    # signals() usually calls self.indicators(bars, ...) again: reuse this run's result
    # when it asks for the same bars and parameters (halves the cost of every cut).
    def indicators(b, *args, **kwargs):
        if b is bars and sig is not None:
            try:
                bound = sig.bind(b, *args, **kwargs).arguments
            except TypeError:
                bound = None
            if bound is not None and _flatten(sig, bound) == dict(params):
                return dict(computed)
        return compute(b, *args, **kwargs)

    inst.indicators = indicators
    signals = inst.signals(bars, **params)
    out = {f"indicator:{k}": v for k, v in computed.items()}
    out.update({f"signal:{k}": getattr(signals, k) for k in _SIGNALS if getattr(signals, k, None) is not None})
    return out


def _flatten(sig: inspect.Signature, bound: Mapping[str, Any]) -> dict[str, Any]:
    """Bound arguments other than the bars, with ``**params`` spread out."""
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.items()):
        if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif i > 0:
            out[name] = value
    return out


def _values(series: Any, index: pd.Index) -> np.ndarray:
    """``series`` as an array aligned on ``index``: float64 (NaN for missing) when numeric."""
    if isinstance(series, pd.DataFrame):
        raise TypeError(f"indicator is a DataFrame with columns {list(series.columns)}; return one Series per name")
    if not isinstance(series, pd.Series):
        series = pd.Series(np.asarray(series), index=index[: len(np.asarray(series))])
    if not (series.index is index or series.index.equals(index)):
        series = series.reindex(index)
    try:
        return series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        return series.to_numpy(dtype=object)


def _first_mismatch(full: np.ndarray, part: np.ndarray, rtol: float) -> int | None:
    """Position of the first value of ``part`` that differs from ``full`` (NaN equals NaN)."""
    a = full[: len(part)]
    if a.dtype == object or part.dtype == object:
        same = (a == part) | (pd.isna(a) & pd.isna(part))
        idx = np.flatnonzero(~same.astype(bool))
        return int(idx[0]) if len(idx) else None
    if np.array_equal(a, part, equal_nan=True):
        return None
    with np.errstate(invalid="ignore"):
        same = (a == part) | (np.isnan(a) & np.isnan(part)) | (np.abs(a - part) <= rtol * np.abs(part))
    idx = np.flatnonzero(~same)
    return int(idx[0]) if len(idx) else None


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# -- where to cut -----------------------------------------------------------------------------


def _warmup_cuts(full: dict[str, np.ndarray], params: Mapping[str, Any], last: int) -> list[int]:
    """Cut bars through every indicator's warm-up: 1, 2, 4, 7, 12, ... (Fibonacci bar counts)
    until past twice the longest warm-up, plus right at each indicator's first value and at each
    integer parameter (a bfill of the warm-up only shows on cuts that end inside it)."""
    first_valid = []
    for name, values in full.items():
        if name.startswith("indicator:") and values.dtype != object:
            valid = np.flatnonzero(~np.isnan(values))
            if len(valid):
                first_valid.append(int(valid[0]))
    windows = [int(v) for v in params.values() if float(v).is_integer() and 0 < v < last]
    longest = max(first_valid + windows + [8])
    counts: set[int] = set()
    a, b = 2, 3
    while a <= 2 * longest:
        counts.add(a)
        a, b = b, a + b
    counts.add(a)  # the first one past twice the longest warm-up
    for f in first_valid:
        counts.update({f, f + 1, f + 2})  # cut bars f-1, f, f+1
    for w in windows:
        counts.update({w - 1, w, w + 1, w + 2})
    return sorted(c - 1 for c in counts if 1 <= c - 1 <= last)


def _special_bars(frame: pd.DataFrame, rng: np.random.Generator, cap: int) -> list[int]:
    """Cut bars at and right after bars that are special in the data, rarest first: empty
    bars (NaN prices, zero volume), bars before a time gap (largest first), last bars of a
    UTC day. A repair of bar *t* from bar *t+1* shows only on the cut that ends at *t*."""
    n = len(frame)
    cols = [c for c in ("open", "high", "low", "close", "volume") if c in frame.columns]
    values = frame[cols].to_numpy(dtype="float64", na_value=np.nan)
    empty = np.isnan(values).any(axis=1)
    if "volume" in frame.columns:
        empty |= frame["volume"].to_numpy(dtype="float64", na_value=np.nan) == 0
    groups = [np.flatnonzero(empty)]
    ts = frame.index.asi8
    if n > 2:
        step = np.diff(ts)
        spacing = np.median(step)
        gap_after = np.flatnonzero(step > spacing)
        groups.append(gap_after[np.argsort(-step[gap_after], kind="stable")])
        if spacing < pd.Timedelta("1D").value:
            day = ts // pd.Timedelta("1D").value
            groups.append(np.flatnonzero(day[1:] > day[:-1]))
    out: list[int] = []
    seen: set[int] = set()
    for group in groups:
        cuts = [c for t in group for c in (int(t), int(t) + 1) if c <= n - 2 and c not in seen]
        cuts = list(dict.fromkeys(cuts))
        room = cap - len(out)
        if room <= 0:
            break
        if len(cuts) > room:
            cuts = [cuts[i] for i in sorted(rng.choice(len(cuts), size=room, replace=False))]
        out += cuts
        seen.update(cuts)
    return out


def _signal_bars(full: dict[str, np.ndarray], last: int) -> dict[str, np.ndarray]:
    out = {}
    for name, values in full.items():
        if name.startswith("signal:"):
            fired = values != 0 if values.dtype != object else values.astype(bool)
            fired = fired & ~pd.isna(values)
            out[name] = np.flatnonzero(fired[: last + 1])
    return out


def _signal_cuts(by_series: dict[str, np.ndarray], rng: np.random.Generator, cap: int) -> list[int]:
    """A cut at every signal bar (the signal bar is the last bar kept); above ``cap``, a seeded
    sample taken from each signal series in turn, so rare short signals get their share."""
    every = np.unique(np.concatenate([np.empty(0, np.int64), *by_series.values()]))
    if len(every) <= cap:
        return [int(t) for t in every]
    queues = [list(rng.permutation(bars)) for _, bars in sorted(by_series.items())]
    out: dict[int, None] = {}
    while len(out) < cap and any(queues):
        for q in queues:
            while q and len(out) < cap:
                t = int(q.pop())
                if t not in out:
                    out[t] = None
                    break
    return list(out)


def _even_cuts(n: int, n_cuts: int, min_bars: int | None) -> list[int]:
    lo = min_bars or max(2, min(n // 10, 500))
    ks = np.unique(np.linspace(lo, n - 1, num=min(n_cuts, max(1, n - lo))).astype(int))
    return [int(k) - 1 for k in ks]


def _random_cuts(first: int, last: int, count: int, rng: np.random.Generator) -> list[int]:
    if last < first or count <= 0:
        return []
    size = min(count, last - first + 1)
    return [int(first + t) for t in rng.choice(last - first + 1, size=size, replace=False)]


def _plan(planned: dict[str, list[int]]) -> list[tuple[int, str]]:
    """Warm-up cuts first (tiny, cheap), then the other kinds in turn, each bar once."""
    order: list[tuple[int, str]] = []
    seen: set[int] = set()

    def take(t: int, kind: str) -> None:
        if t not in seen:
            seen.add(t)
            order.append((t, kind))

    for t in planned.get("warmup", []):
        take(t, "warmup")
    rest = [(kind, list(planned.get(kind, []))) for kind in CUT_KINDS if kind != "warmup"]
    for i in range(max((len(c) for _, c in rest), default=0)):
        for kind, cuts in rest:
            if i < len(cuts):
                take(cuts[i], kind)
    return order


def check_lookahead(strategy: str | type[Strategy] | Strategy, bars: pd.DataFrame,
                    params: Mapping[str, Any] | None = None, n_cuts: int = 25, min_bars: int | None = None,
                    rtol: float = 1e-12, *, seed: int = 0, budget_s: float = 5.0, max_signal_cuts: int = 64,
                    kinds: Collection[str] = CUT_KINDS) -> LookaheadReport:
    """Rerun the strategy on ``bars`` cut after bar *t*, for many *t*, and report every signal
    or indicator value (up to *t*) that differs from the full-data run.

    Cuts (``kinds``, see :data:`CUT_KINDS`):

    * ``warmup``: 2, 3, 5, 8, 13, ... bars, until past twice the longest indicator warm-up (where
      indicators stop being NaN, and the integer parameters), to catch warm-ups filled from
      later bars;
    * ``special``: at and right after bars with NaN prices or zero volume, bars before a time
      gap longer than the median spacing, and last bars of a UTC day (at most
      ``max_signal_cuts``), to catch repairs of special bars from the next bar;
    * ``signal``: at every bar where an entry or exit (long or short) fires on the full
      data, so the signal bar is the last bar kept; above ``max_signal_cuts`` signal bars,
      a sample drawn with ``seed``;
    * ``even``: ``n_cuts`` evenly spaced from ``min(n/10, 500)`` bars (or ``min_bars``);
    * ``random``: ``n_cuts`` drawn with ``seed``.

    ``min_bars``, when given, is the fewest bars any cut keeps. The check stops adding cuts
    once ``budget_s`` seconds have passed (the report says so) and never raises on a cut:
    a strategy that fails on a short prefix has the error recorded in ``report.errors``.

    Example::

        >>> from spark_research.data import generate_bars
        >>> report = check_lookahead("donchian_breakout", generate_bars("BTCUSDT", n=3_000, seed=2))
        >>> report.passed, sorted(report.cuts_by_kind) == sorted(CUT_KINDS)
        (True, True)
        >>> report.signal_bars_checked >= min(report.signal_bars, 64)  # every signal bar, up to 64
        True
    """
    unknown = sorted(set(kinds) - set(CUT_KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown cut kind(s) {unknown}; known: {list(CUT_KINDS)}")
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s!r}")
    if max_signal_cuts < 0:
        raise ValueError(f"max_signal_cuts must be >= 0, got {max_signal_cuts!r}")
    from spark_research.backtest.engine import _is_utc_aware, to_frame
    from spark_research.backtest.strategies import get_strategy

    started = time.perf_counter()
    strat = get_strategy(strategy)
    resolved = strat.resolve(dict(params or {}))
    frame = to_frame(bars)
    index = frame.index.tz_localize("UTC") if _is_utc_aware(bars) else frame.index
    n = len(frame)
    full = {name: _values(s, frame.index) for name, s in _run(strat, frame, resolved).items()}

    # a cut at bar t keeps bars 0..t; t = n - 1 would be the full run
    first, last = max(1, (min_bars or 2) - 1), n - 2
    rng = np.random.default_rng(seed)
    signals_at = _signal_bars(full, last)
    all_signal_bars = np.unique(np.concatenate([np.empty(0, np.int64), *signals_at.values()]))
    all_signal_bars = all_signal_bars[all_signal_bars >= first]
    candidates = {
        "warmup": _warmup_cuts(full, resolved, last) if "warmup" in kinds else [],
        "special": _special_bars(frame, rng, max_signal_cuts) if "special" in kinds else [],
        "signal": _signal_cuts({k: v[v >= first] for k, v in signals_at.items()}, rng, max_signal_cuts)
        if "signal" in kinds else [],
        "even": _even_cuts(n, n_cuts, min_bars) if "even" in kinds else [],
        "random": _random_cuts(first, last, n_cuts, rng) if "random" in kinds else [],
    }
    plan = [(t, kind) for t, kind in _plan(candidates) if first <= t <= last]

    report = LookaheadReport(strat.name, resolved, 0, cuts_by_kind={k: 0 for k in CUT_KINDS if k in kinds},
                             signal_bars=len(all_signal_bars), planned=len(plan), budget_s=budget_s)
    done: list[int] = []
    for t, kind in plan:
        if time.perf_counter() - started > budget_s:
            report.budget_exhausted = True
            break
        prefix = frame.iloc[: t + 1]
        try:
            part = _run(strat, prefix, resolved)
        except Exception as exc:  # a strategy that cannot run on few bars is not lookahead
            report.errors[t] = f"{type(exc).__name__}: {exc}"
            continue
        done.append(t)
        report.cuts_by_kind[kind] += 1
        for name, values in full.items():
            if name not in part:  # e.g. short signals only with enough bars
                report.violations.append(Violation(name, index[t], index[t], _scalar(values[t]), None, t, t, kind))
                continue
            got = _values(part[name], prefix.index)
            i = _first_mismatch(values, got, rtol)
            if i is not None:
                report.violations.append(Violation(name, index[i], index[t], _scalar(values[i]),
                                                   _scalar(got[i]), i, t, kind))
    report.cuts = len(done)
    report.cut_bars = sorted(done)
    report.signal_bars_checked = int(np.isin(all_signal_bars, done).sum())
    report.violations.sort(key=lambda v: (v.bar, v.series, v.cut_bar))
    report.elapsed_s = time.perf_counter() - started
    return report


# -- warm-up -----------------------------------------------------------------------------------


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


def check_warmup(strategy: str | type[Strategy] | Strategy, bars: pd.DataFrame,
                 params: Mapping[str, Any] | None = None, tail: int = 50, rtol: float = 1e-9) -> WarmupReport:
    """Compute indicators on the last ``L`` bars for growing ``L`` and find, per indicator, the
    smallest ``L`` from which its last ``tail`` values equal the full-history values
    (a geometric grid of ``L``, then a bisection between the last unstable and the first
    stable length).

    An indicator is *history-dependent* when some ``L`` already gives it a full, NaN-free
    tail that still differs from the full-history values (recursive smoothing), so the
    warm-up it needs is longer than its nominal window.

    Example::

        >>> from spark_research.data import generate_bars
        >>> w = check_warmup("sma_cross", generate_bars("BTCUSDT", n=2_000, seed=1), {"fast": 10, "slow": 40})
        >>> w.warmup_bars["slow_ma"], w.history_dependent   # 50 tail bars + 39 bars of window
        (89, [])
    """
    from spark_research.backtest.engine import to_frame
    from spark_research.backtest.strategies import get_strategy

    strat = get_strategy(strategy)
    resolved = strat.resolve(dict(params or {}))
    frame = to_frame(bars)
    n = len(frame)
    tail = min(tail, n)
    inst = strat()
    full = {k: _values(v, frame.index)[-tail:] for k, v in inst.indicators(frame, **resolved).items()}
    lengths = sorted({int(x) for x in np.unique(np.geomspace(tail + 1, n, num=24).astype(int))} | {n})
    dependent: set[str] = set()
    ok_since: dict[str, int | None] = {k: None for k in full}
    unstable_below: dict[str, int] = {k: tail - 1 for k in full}  # fewer bars have no full tail

    def stable(name: str, part: dict[str, Any], length: int) -> bool:
        got = _values(part[name], frame.index[-length:])[-tail:]
        same = _first_mismatch(full[name], got, rtol) is None
        if not same and not pd.isna(got).any():
            dependent.add(name)
        return same

    for length in lengths:
        part = inst.indicators(frame.iloc[-length:], **resolved)
        for name in full:
            if stable(name, part, length):
                ok_since[name] = ok_since[name] or length
            else:
                ok_since[name], unstable_below[name] = None, length
    stable_from = {}
    for name in full:
        lo, hi = unstable_below[name], ok_since[name] or n
        while hi - lo > 1:  # smallest stable length between the grid points
            mid = (lo + hi) // 2
            if stable(name, inst.indicators(frame.iloc[-mid:], **resolved), mid):
                hi = mid
            else:
                lo = mid
        stable_from[name] = hi
    return WarmupReport(strat.name, resolved, tail, stable_from, sorted(dependent))


# -- any bars -> series callable (features) ----------------------------------------------------


def _named_series(out: Any, name: str, index: pd.Index) -> dict[str, np.ndarray]:
    """``out`` (Series, DataFrame, mapping of Series, or array) as ``{series name: values}``."""
    if isinstance(out, pd.DataFrame):
        return {f"{name}:{c}": _values(out[c], index) for c in out.columns}
    if isinstance(out, Mapping):
        return {f"{name}:{k}": _values(v, index) for k, v in out.items()}
    return {name: _values(out, index)}


def check_series_lookahead(compute: Callable[[pd.DataFrame], Any], bars: pd.DataFrame, name: str = "series",
                           params: Mapping[str, Any] | None = None, n_cuts: int = 25, min_bars: int | None = None,
                           rtol: float = 1e-12, *, seed: int = 0, budget_s: float = 5.0, max_special_cuts: int = 32,
                           kinds: Collection[str] = ("warmup", "special", "even", "random")) -> LookaheadReport:
    """:func:`check_lookahead` for any ``bars -> series`` callable (a feature, an indicator).

    ``compute(bars)`` returns a Series aligned to ``bars`` (or a DataFrame / mapping of them,
    each column checked as ``name:column``). It is rerun on ``bars`` cut after bar *t*, for the
    same kinds of cut as strategies get (``signal`` cuts do not apply), and every value up to
    *t* that differs from the full run is a :class:`Violation`. ``params`` only feed the warm-up
    cuts (integer parameters such as windows and the lookback get cuts around them) and the
    report. ``bars`` is passed to ``compute`` as given (a ``timestamp`` column or a
    DatetimeIndex), prefixes with ``bars.iloc[:t + 1]``.

    Example::

        >>> from spark_research.data import generate_bars
        >>> bars = generate_bars("BTCUSDT", n=500, seed=1).set_index("timestamp")
        >>> check_series_lookahead(lambda b: b["close"].rolling(5).mean(), bars, "sma_5").passed
        True
        >>> report = check_series_lookahead(lambda b: b["close"].shift(-1), bars, "next_close")
        >>> report.passed, report.violations[0].bar  # the earliest cut keeps bars 0..1
        (False, 1)
    """
    unknown = sorted(set(kinds) - set(CUT_KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown cut kind(s) {unknown}; known: {list(CUT_KINDS)}")
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s!r}")
    started = time.perf_counter()
    params = dict(params or {})
    frame = bars.set_index("timestamp") if "timestamp" in bars.columns else bars
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(f"bars: need a 'timestamp' column or a DatetimeIndex, got {type(frame.index).__name__}")
    index = frame.index
    n = len(frame)
    full = _named_series(compute(bars), name, index)
    first, last = max(1, (min_bars or 2) - 1), n - 2
    rng = np.random.default_rng(seed)
    ints = {k: v for k, v in params.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)}
    candidates = {
        "warmup": _warmup_cuts({f"indicator:{k}": v for k, v in full.items()}, ints, last) if "warmup" in kinds else [],
        "special": _special_bars(frame, rng, max_special_cuts) if "special" in kinds else [],
        "even": _even_cuts(n, n_cuts, min_bars) if "even" in kinds else [],
        "random": _random_cuts(first, last, n_cuts, rng) if "random" in kinds else [],
    }
    plan = [(t, kind) for t, kind in _plan(candidates) if first <= t <= last]
    report = LookaheadReport(name, params, 0, cuts_by_kind={k: 0 for k in CUT_KINDS if k in kinds and k != "signal"},
                             planned=len(plan), budget_s=budget_s)
    done: list[int] = []
    for t, kind in plan:
        if time.perf_counter() - started > budget_s:
            report.budget_exhausted = True
            break
        try:
            part = _named_series(compute(bars.iloc[: t + 1]), name, index[: t + 1])
        except Exception as exc:  # a callable that cannot run on few bars is not lookahead
            report.errors[t] = f"{type(exc).__name__}: {exc}"
            continue
        done.append(t)
        report.cuts_by_kind[kind] += 1
        for series, values in full.items():
            if series not in part:
                report.violations.append(Violation(series, index[t], index[t], _scalar(values[t]), None, t, t, kind))
                continue
            i = _first_mismatch(values, part[series], rtol)
            if i is not None:
                report.violations.append(Violation(series, index[i], index[t], _scalar(values[i]),
                                                   _scalar(part[series][i]), i, t, kind))
    report.cuts = len(done)
    report.cut_bars = sorted(done)
    report.violations.sort(key=lambda v: (v.bar, v.series, v.cut_bar))
    report.elapsed_s = time.perf_counter() - started
    return report

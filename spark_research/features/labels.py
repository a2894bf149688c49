"""Labels and sample weights for supervised learning on bars (López de Prado, AFML ch. 3-4).

* :func:`fixed_horizon_labels` — the sign of the return over the next ``horizon`` bars.
* :func:`triple_barrier_labels` — profit-take and stop-loss barriers scaled by a rolling
  volatility estimate (:func:`volatility`), and a vertical barrier ``max_bars`` bars after
  the event; the label is the sign of the return at the first barrier touched.
* :func:`meta_labels` — triple-barrier labels of the trades a primary
  :class:`~spark_research.backtest.Strategy` opens: 1 if the trade would have hit its
  profit-take first, else 0 (a secondary model then learns *when to trust* the primary).
* :func:`average_uniqueness` — sample weights for overlapping labels: the mean over a
  label's bars of 1 / (number of labels alive on that bar), by a sweep line (O(bars + events)).

Every labelling function returns a frame indexed by the event time ``t0`` with the label's
end ``t1`` (the bar whose close resolves it): ``t1`` is what :class:`~spark_research.features.cv.PurgedKFold`
purges on and what :func:`average_uniqueness` counts overlaps with.

Example::

    >>> import numpy as np, pandas as pd
    >>> close = pd.Series([100.0, 101, 102, 99, 98, 103], index=pd.RangeIndex(6))
    >>> lab = triple_barrier_labels(close, pt=1, sl=1, max_bars=3, target=0.015)
    >>> lab[["t1", "barrier", "label"]].iloc[0].tolist()   # +2% by bar 2: profit-take first
    [2, 1, 1]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from numba import njit

#: ``barrier`` codes of :func:`triple_barrier_labels`.
PROFIT_TAKE, STOP_LOSS, VERTICAL = 1, -1, 0


class LabelError(ValueError):
    """Bad input to a labelling function (the message names the field and the value)."""


# --------------------------------------------------------------------------- helpers


def _close_series(close: pd.Series | np.ndarray, name: str = "close") -> pd.Series:
    if isinstance(close, pd.DataFrame):
        raise LabelError(f"{name} must be a Series of prices, got a DataFrame with columns {list(close.columns)}")
    s = close if isinstance(close, pd.Series) else pd.Series(np.asarray(close, dtype=float))
    values = s.to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if len(bad):
        raise LabelError(f"{name}[{s.index[bad[0]]}] = {float(values[bad[0]])}: prices must be finite and > 0")
    if not s.index.is_monotonic_increasing or not s.index.is_unique:
        raise LabelError(f"{name}.index must be strictly increasing (bar times)")
    return s.astype(float)


def _event_positions(index: pd.Index, events: Any) -> np.ndarray:
    """Positions in ``index`` of the events: None (every bar), a boolean mask/Series, or event times."""
    n = len(index)
    if events is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(events, pd.Series) and events.dtype == bool:
        if not events.index.equals(index):
            events = events.reindex(index, fill_value=False)
        return np.flatnonzero(events.to_numpy()).astype(np.int64)
    arr = events if isinstance(events, pd.Index) else np.asarray(events)  # an Index keeps its time zone
    if arr.dtype == bool:
        if len(arr) != n:
            raise LabelError(f"events: a boolean mask of length {len(arr)} for {n} bars")
        return np.flatnonzero(arr).astype(np.int64)
    pos = index.get_indexer(pd.Index(arr))
    if (pos < 0).any():
        raise LabelError(f"events: time {arr[np.flatnonzero(pos < 0)[0]]} is not a bar of close.index")
    if len(pos) > 1 and (np.diff(pos) <= 0).any():
        raise LabelError("events must be in increasing time order without duplicates")
    return pos.astype(np.int64)


def _check_positive(name: str, value: float, allow_zero: bool = True) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise LabelError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


# --------------------------------------------------------------------------- volatility


def volatility(close: pd.Series, span: int = 100, horizon: int = 1) -> pd.Series:
    """Exponentially weighted std of ``horizon``-bar returns: the barrier scale (AFML's ``getDailyVol``).

    Bar *t*'s value uses closes up to *t* only. NaN for the first ``horizon + 1`` bars.

    Example::

        >>> close = pd.Series(100 * np.cumprod(1 + np.tile([0.01, -0.01], 50)))
        >>> round(float(volatility(close, span=20).iloc[-1]), 3)
        0.01
    """
    if int(span) < 2:
        raise LabelError(f"span must be an integer >= 2, got {span!r}")
    if int(horizon) < 1:
        raise LabelError(f"horizon must be an integer >= 1, got {horizon!r}")
    s = _close_series(close)
    ret = s / s.shift(int(horizon)) - 1.0
    return ret.ewm(span=int(span), min_periods=2).std().rename("volatility")


# --------------------------------------------------------------------------- fixed horizon


def fixed_horizon_labels(close: pd.Series, horizon: int, threshold: float = 0.0, events: Any = None) -> pd.DataFrame:
    """Label each event by the return over the next ``horizon`` bars: 1 above ``threshold``, -1 below ``-threshold``, else 0.

    Returns columns ``t1`` (the bar ``horizon`` bars later), ``ret`` and ``label`` indexed by
    the event time; events closer than ``horizon`` bars to the end are dropped.

    Example::

        >>> close = pd.Series([100.0, 101, 100, 102, 99])
        >>> fixed_horizon_labels(close, horizon=2)["label"].tolist()
        [0, 1, -1]
    """
    h = int(horizon)
    if h < 1 or h != horizon:
        raise LabelError(f"horizon must be an integer >= 1, got {horizon!r}")
    thr = _check_positive("threshold", threshold)
    s = _close_series(close)
    pos = _event_positions(s.index, events)
    pos = pos[pos + h < len(s)]
    c = s.to_numpy()
    ret = c[pos + h] / c[pos] - 1.0
    label = np.where(ret > thr, 1, np.where(ret < -thr, -1, 0)).astype(np.int8)
    return pd.DataFrame({"t1": s.index[pos + h], "ret": ret, "label": label}, index=s.index[pos].rename("t0"))


# --------------------------------------------------------------------------- triple barrier


@njit(cache=True, nogil=True)
def _triple_barrier_kernel(close, t0, upper, lower, side, max_bars):  # pragma: no cover - numba
    """First touch of each event's barriers; returns (t1 position, return at t1, barrier code)."""
    n_bars = close.shape[0]
    m = t0.shape[0]
    t1 = np.empty(m, dtype=np.int64)
    ret = np.empty(m, dtype=np.float64)
    code = np.empty(m, dtype=np.int8)
    for e in range(m):
        i = t0[e]
        p0 = close[i]
        last = min(i + max_bars, n_bars - 1)
        hit_j, hit_c = last, 0
        for j in range(i + 1, last + 1):
            r = side[e] * (close[j] / p0 - 1.0)
            if r >= upper[e]:
                hit_j, hit_c = j, 1
                break
            if r <= lower[e]:
                hit_j, hit_c = j, -1
                break
        t1[e] = hit_j
        ret[e] = side[e] * (close[hit_j] / p0 - 1.0)
        code[e] = hit_c
    return t1, ret, code


def triple_barrier_labels(
    close: pd.Series,
    events: Any = None,
    *,
    pt: float = 1.0,
    sl: float = 1.0,
    max_bars: int = 20,
    target: pd.Series | float | None = None,
    vol_span: int = 100,
    min_target: float = 0.0,
    side: pd.Series | np.ndarray | float | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels (AFML 3.4-3.6) of ``events`` on ``close``.

    For an event at bar *i* with target ``trgt`` (a return), the upper barrier is
    ``pt * trgt`` and the lower ``-sl * trgt`` (``pt=0`` / ``sl=0`` switch a barrier off), the
    vertical one ``max_bars`` bars later (cut at the last bar). ``target`` defaults to
    :func:`volatility` of ``max_bars``-bar returns with ``span=vol_span`` — known at bar *i*.
    Events whose target is NaN (warm-up) or below ``min_target`` are dropped. ``side`` (+1
    long, -1 short, per event or one number) turns returns into the position's returns.

    Returns columns ``t1`` (time of the first touch), ``ret`` (side-adjusted return from
    close *i* to close at ``t1``), ``trgt``, ``barrier`` (1 profit-take, -1 stop-loss, 0
    vertical) and ``label`` (sign of ``ret``; 0 when exactly flat), indexed by ``t0``.
    A numba kernel scans at most ``max_bars`` bars per event: 1M events x 20 bars in well under a second.

    Example::

        >>> close = pd.Series([100.0, 99, 97, 98, 99, 100])
        >>> lab = triple_barrier_labels(close, pt=1, sl=1, max_bars=4, target=0.02)
        >>> lab.loc[0, ["t1", "barrier", "label"]].tolist()    # -3% at bar 2: stop-loss
        [2, -1, -1]
    """
    s = _close_series(close)
    pt = _check_positive("pt", pt)
    sl = _check_positive("sl", sl)
    if int(max_bars) != max_bars or int(max_bars) < 1:
        raise LabelError(f"max_bars must be an integer >= 1, got {max_bars!r}")
    max_bars = int(max_bars)
    min_target = _check_positive("min_target", min_target)
    pos = _event_positions(s.index, events)
    pos = pos[pos < len(s) - 1]  # an event on the last bar has no future to label
    if target is None:
        trgt = volatility(s, span=vol_span, horizon=max_bars).to_numpy()[pos]
    elif isinstance(target, pd.Series):
        trgt = target.reindex(s.index).to_numpy(dtype=float)[pos]
    else:
        trgt = np.full(len(pos), _check_positive("target", target, allow_zero=False))
    if side is None:
        sides = np.ones(len(pos))
    elif isinstance(side, pd.Series):
        sides = side.reindex(s.index).to_numpy(dtype=float)[pos]
    else:
        sides = np.broadcast_to(np.asarray(side, dtype=float), (len(pos),)) if np.ndim(side) == 0 else np.asarray(side, dtype=float)
        if len(sides) != len(pos):
            raise LabelError(f"side: {len(sides)} values for {len(pos)} events")
    bad_side = ~np.isin(sides, (-1.0, 1.0))
    keep = np.isfinite(trgt) & (trgt > min_target if min_target > 0 else trgt > 0)
    if (bad_side & keep).any():
        first = np.flatnonzero(bad_side & keep)[0]
        raise LabelError(f"side[{s.index[pos[first]]}] = {float(sides[first])}: side must be +1 or -1")
    pos, trgt, sides = pos[keep], trgt[keep], np.ascontiguousarray(sides[keep], dtype=float)
    upper = pt * trgt if pt > 0 else np.full(len(pos), np.inf)
    lower = -sl * trgt if sl > 0 else np.full(len(pos), -np.inf)
    t1, ret, code = _triple_barrier_kernel(s.to_numpy(), pos, np.ascontiguousarray(upper), np.ascontiguousarray(lower),
                                           sides, max_bars)
    return pd.DataFrame({"t1": s.index[t1], "ret": ret, "trgt": trgt, "barrier": code,
                         "label": np.sign(ret).astype(np.int8)}, index=s.index[pos].rename("t0"))


# --------------------------------------------------------------------------- meta-labels


def meta_labels(
    strategy: Any,
    bars: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    pt: float = 1.0,
    sl: float = 1.0,
    max_bars: int = 20,
    target: pd.Series | float | None = None,
    vol_span: int = 100,
) -> pd.DataFrame:
    """Meta-labels (AFML 3.6) of the trades a primary strategy's signals open.

    Each entry signal of ``strategy`` (anything the platform's strategy resolver accepts)
    on one symbol's ``bars`` is an event with side +1 (short entries, if the strategy emits
    them, side -1); the trade is measured from the signal bar's close through the triple
    barrier. ``label`` is 1 if it hit its profit-take first, else 0 (stop-loss or time-out):
    the target of a secondary model that decides whether to take the primary's trade.

    Returns the :func:`triple_barrier_labels` columns with ``side`` added.

    Example::

        >>> from spark_research.data import generate_bars
        >>> lab = meta_labels("sma_cross", generate_bars("BTCUSDT", n=3_000, seed=1), {"fast": 5, "slow": 20})
        >>> set(lab["label"]) <= {0, 1}, bool((lab["side"] == 1).all())
        (True, True)
    """
    from spark_research.backtest import resolve_strategy, split_symbols

    strat = resolve_strategy(strategy)
    frames = split_symbols(bars)
    if len(frames) != 1:
        raise LabelError(f"bars: meta_labels takes one symbol's bars, got symbols {sorted(frames)}")
    frame = next(iter(frames.values()))
    sig = strat().signals(frame, **strat.resolve(dict(params or {})))
    close = frame["close"]
    longs = sig.entries.reindex(close.index, fill_value=False).fillna(False).astype(bool).to_numpy()
    shorts = (np.zeros(len(close), dtype=bool) if sig.short_entries is None else
              sig.short_entries.reindex(close.index, fill_value=False).fillna(False).astype(bool).to_numpy())
    side = pd.Series(np.where(longs, 1.0, np.where(shorts, -1.0, np.nan)), index=close.index)
    lab = triple_barrier_labels(close, longs | shorts, pt=pt, sl=sl, max_bars=max_bars, target=target,
                                vol_span=vol_span, side=side)
    lab["side"] = side.reindex(lab.index).to_numpy().astype(np.int8)
    lab["label"] = (lab["barrier"] == PROFIT_TAKE).astype(np.int8)
    # the frame ran on a naive UTC index (see backtest.engine.to_frame): give zone-aware bars their zone back
    given = bars if not isinstance(bars, Mapping) else next(iter(bars.values()))
    times = given["timestamp"] if "timestamp" in given.columns else given.index
    if getattr(getattr(times, "dt", times), "tz", None) is not None and isinstance(lab.index, pd.DatetimeIndex):
        lab.index = lab.index.tz_localize("UTC")
        lab["t1"] = lab["t1"].dt.tz_localize("UTC")
    return lab


# --------------------------------------------------------------------------- uniqueness


def concurrency(t0_pos: np.ndarray, t1_pos: np.ndarray, n_bars: int) -> np.ndarray:
    """Number of labels alive on each bar; label *i* spans bars ``t0_pos[i]..t1_pos[i]`` inclusive.

    Example::

        >>> concurrency(np.array([0, 1, 4]), np.array([2, 3, 4]), 5).tolist()
        [1, 2, 2, 1, 1]
    """
    t0p, t1p = _spans(t0_pos, t1_pos, n_bars)
    diff = np.bincount(t0p, minlength=n_bars + 1) - np.bincount(t1p + 1, minlength=n_bars + 1)
    return np.cumsum(diff[:-1])


def _spans(t0_pos: np.ndarray, t1_pos: np.ndarray, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    t0p = np.asarray(t0_pos, dtype=np.int64)
    t1p = np.asarray(t1_pos, dtype=np.int64)
    if t0p.shape != t1p.shape or t0p.ndim != 1:
        raise LabelError(f"t0 and t1 must be 1-D and of equal length, got shapes {t0p.shape} and {t1p.shape}")
    if len(t0p) and (t0p.min() < 0 or t1p.max() >= n_bars):
        raise LabelError(f"label spans must lie within the {n_bars} bars, got t0 min {t0p.min()}, t1 max {t1p.max()}")
    bad = np.flatnonzero(t1p < t0p)
    if len(bad):
        raise LabelError(f"t1[{bad[0]}] = {t1p[bad[0]]} is before t0[{bad[0]}] = {t0p[bad[0]]}")
    return t0p, t1p


def average_uniqueness_positions(t0_pos: np.ndarray, t1_pos: np.ndarray, n_bars: int) -> np.ndarray:
    """Average uniqueness of labels spanning bar positions ``t0_pos[i]..t1_pos[i]`` (inclusive).

    Sweep line: concurrency by a difference array, then prefix sums of 1 / concurrency,
    O(n_bars + n_labels).

    Example::

        >>> average_uniqueness_positions(np.array([0, 1, 4]), np.array([2, 3, 4]), 5).round(4).tolist()
        [0.6667, 0.6667, 1.0]
    """
    t0p, t1p = _spans(t0_pos, t1_pos, n_bars)
    c = concurrency(t0p, t1p, n_bars)
    inv = np.zeros(n_bars + 1)
    np.divide(1.0, c, out=inv[1:], where=c > 0)
    # extended precision: a difference of two large prefix sums would lose the last digits over 1M bars
    cum = np.cumsum(inv, dtype=np.longdouble)
    return ((cum[t1p + 1] - cum[t0p]) / (t1p - t0p + 1)).astype(np.float64)


def average_uniqueness(labels: pd.DataFrame | pd.Series, index: pd.Index | None = None) -> pd.Series:
    """Sample weights by average uniqueness (AFML 4.4) of labels indexed by ``t0`` with a ``t1`` column.

    ``index`` is the bar index the labels live on (default: the union of every ``t0`` and
    ``t1``; pass the bars' index when labels are sparse so that bars between events count).
    A label alone on its bars weighs 1; two labels sharing every bar weigh 1/2 each.

    Example::

        >>> lab = pd.DataFrame({"t1": [2, 3, 4]}, index=pd.Index([0, 1, 4], name="t0"))
        >>> average_uniqueness(lab, index=pd.RangeIndex(5)).round(4).tolist()
        [0.6667, 0.6667, 1.0]
    """
    t1 = labels["t1"] if isinstance(labels, pd.DataFrame) else labels
    ends = pd.Index(t1.array)  # .array keeps a time zone; .to_numpy() would make 1M Timestamp objects
    if index is None:
        index = pd.Index(t1.index).union(ends)
    t0_pos = index.get_indexer(t1.index)
    t1_pos = index.get_indexer(ends)
    missing = np.flatnonzero((t0_pos < 0) | (t1_pos < 0))
    if len(missing):
        i = missing[0]
        raise LabelError(f"labels: t0={t1.index[i]!r} / t1={t1.iloc[i]!r} is not in the bar index")
    return pd.Series(average_uniqueness_positions(t0_pos, t1_pos, len(index)), index=t1.index, name="uniqueness")

"""Fused sweep kernels: signal generation and simulation in one numba loop per combination.

``run_backtest`` builds a vectorbt ``Portfolio`` per parameter set, which is right for the
full report of one combination but wasteful for thousands: every combination recomputes
its indicators, materialises boolean signal series and allocates order records. Here each
indicator window is computed once per sweep (with the very same vectorbt/pandas code the
strategy uses, so crossings are decided on identical floats) and a numba kernel walks the
bars once per combination, deciding signals and filling orders on the fly.

The kernels reproduce ``run_backtest``'s defaults exactly (tested to 1e-9):

* ``fill="next_open"``: a signal at bar *t*'s close fills at bar *t+1*'s open;
* ``direction="longonly"``, no accumulation: an entry while long and an exit while flat
  are ignored; an entry and an exit on the same bar cancel (vectorbt's ``ignore``);
* ``size=inf`` (all cash): vectorbt's ``buy_nb`` spends ``cash / (1 + fees)`` at
  ``open * (1 + slippage)``; ``sell_nb`` closes the whole position at
  ``open * (1 - slippage)`` and pays ``fees`` on the proceeds;
* stats as vectorbt computes them: total return and final equity from the value series
  ``cash + position * close``, trade count = filled entries (open trade included), Sharpe
  of per-bar returns (ddof 1, ``inf`` when their deviation is 0, annualised with 365 days
  over the bar frequency) and max drawdown of the value series.

Example::

    >>> from spark_research.data import generate_bars
    >>> import pandas as pd
    >>> bars = generate_bars("BTCUSDT", n=2_000, seed=1)
    >>> combos = pd.DataFrame({"fast": [5, 10], "slow": [20, 40]})
    >>> out = evaluate_fused("sma_cross", bars, combos)
    >>> list(out.columns)
    ['total_return', 'final_equity', 'trades', 'sharpe', 'max_drawdown']
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np
import pandas as pd
from numba import njit

#: Stats the fused kernels compute (the others need the full vectorbt Portfolio).
FUSED_STATS = ("total_return", "final_equity", "trades", "sharpe", "max_drawdown")

_REL_TOL = 1e-9  # vectorbt.utils.math_.rel_tol
_ABS_TOL = 1e-12  # vectorbt.utils.math_.abs_tol
_YEAR_NS = 365 * 86_400 * 1_000_000_000


@njit(cache=True, inline="always")
def _is_close(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


@njit(cache=True, inline="always")
def _add(a: float, b: float) -> float:
    # vectorbt's add_nb: a sum that is zero up to tolerance is exactly zero
    if np.sign(a) != np.sign(b):
        if _is_close(abs(a), abs(b)):
            return 0.0
    elif _is_close(a + b, 0.0):
        return 0.0
    return a + b


@njit(cache=True, inline="always")
def _order(entry: bool, exit_: bool, price: float, cash: float, pos: float, fees: float, slip: float):
    """One bar of from_signals (long-only, all cash); returns (cash, pos, filled_entry)."""
    if entry and exit_:  # upon_long_conflict="ignore"
        return cash, pos, False
    if _is_close(cash, 0.0):
        cash = 0.0
    if _is_close(pos, 0.0):
        pos = 0.0
    if entry and pos == 0.0:
        if cash == 0.0 or np.isnan(price):
            return cash, pos, False
        adj = price * (1.0 + slip)
        max_req = _add(cash, -0.0) / (1.0 + fees)
        if max_req <= 0.0:
            return cash, pos, False
        size = max_req / adj
        return _add(cash, -cash), _add(pos, size), True
    if exit_ and pos > 0.0:
        if np.isnan(price):
            return cash, pos, False
        adj = price * (1.0 - slip)
        acq = pos * adj
        final = _add(acq, -(acq * fees))
        if final < 0.0:
            return cash, pos, False
        return cash + final, _add(pos, -pos), False
    return cash, pos, False


@njit(cache=True, inline="always")
def _value_stats(t: int, value: float, prev_value: float, n_ret: int, s1: float, s2: float,
                 peak: float, mdd: float):
    """Accumulate per-bar returns (sum, sum of squares) and the running drawdown.

    Divisions are what this loop costs, so they are skipped where they cannot matter: a bar
    whose value did not change has a return of exactly 0, and a bar that is not below the
    deepest drawdown so far (checked by a multiplication with a safety margin) cannot set it.
    """
    if value != prev_value:
        if prev_value == 0.0:
            r = np.inf * np.sign(value)
        else:
            r = (value - prev_value) / prev_value
        s1 += r
        s2 += r * r
    n_ret += 1
    if t == 0 or value > peak:
        peak = value
    elif value < peak * (1.0 + mdd) * (1.0 + 1e-12):
        dd = value / peak - 1.0
        if dd < mdd:
            mdd = dd
    return n_ret, s1, s2, peak, mdd


@njit(cache=True, inline="always")
def _finish(out: np.ndarray, k: int, cash: float, pos: float, last_close: float, init_cash: float,
            trades: int, n_ret: int, s1: float, s2: float, mdd: float, ann_factor: float) -> None:
    final = cash + pos * last_close
    out[k, 0] = (final - init_cash) / init_cash
    out[k, 1] = final
    out[k, 2] = trades
    if n_ret < 2:
        out[k, 3] = np.nan
    else:
        mean = s1 / n_ret
        std = np.sqrt(max((s2 - s1 * mean) / (n_ret - 1), 0.0))
        out[k, 3] = np.inf if std == 0.0 else mean / std * np.sqrt(ann_factor)
    out[k, 4] = mdd


@njit(cache=True, nogil=True)
def sma_cross_kernel(open_, close, ma, fast_idx, slow_idx, fees, slip, init_cash, ann_factor, ck_idx, out, ck_out):
    """Fused SMA crossover sweep: ``ma[j]`` is the j-th window's SMA; one combo per (fast_idx, slow_idx)."""
    n = close.shape[0]
    for k in range(fast_idx.shape[0]):
        f, s = fast_idx[k], slow_idx[k]
        cash, pos, trades = init_cash, 0.0, 0
        entry, exit_ = False, False
        prev_value, n_ret, s1, s2, peak, mdd = init_cash, 0, 0.0, 0.0, 0.0, 0.0
        c = 0
        for t in range(n):
            if entry or exit_:
                cash, pos, filled = _order(entry, exit_, open_[t], cash, pos, fees, slip)
                trades += filled
            value = cash + pos * close[t]
            n_ret, s1, s2, peak, mdd = _value_stats(t, value, prev_value, n_ret, s1, s2, peak, mdd)
            prev_value = value
            if c < ck_idx.shape[0] and ck_idx[c] == t:
                ck_out[c, k] = value
                c += 1
            if t > 0:
                a, b, pa, pb = ma[f, t], ma[s, t], ma[f, t - 1], ma[s, t - 1]
                entry = a > b and pa <= pb
                exit_ = b > a and pb <= pa
        _finish(out, k, cash, pos, close[n - 1], init_cash, trades, n_ret, s1, s2, mdd, ann_factor)


@njit(cache=True, nogil=True)
def rsi_reversion_kernel(open_, close, rsi, win_idx, lower, upper, fees, slip, init_cash, ann_factor, ck_idx, out, ck_out):
    """Fused RSI mean-reversion sweep: enter when RSI crosses below ``lower``, exit above ``upper``."""
    n = close.shape[0]
    for k in range(win_idx.shape[0]):
        w, lo, hi = win_idx[k], lower[k], upper[k]
        cash, pos, trades = init_cash, 0.0, 0
        entry, exit_ = False, False
        prev_value, n_ret, s1, s2, peak, mdd = init_cash, 0, 0.0, 0.0, 0.0, 0.0
        c = 0
        for t in range(n):
            if entry or exit_:
                cash, pos, filled = _order(entry, exit_, open_[t], cash, pos, fees, slip)
                trades += filled
            value = cash + pos * close[t]
            n_ret, s1, s2, peak, mdd = _value_stats(t, value, prev_value, n_ret, s1, s2, peak, mdd)
            prev_value = value
            if c < ck_idx.shape[0] and ck_idx[c] == t:
                ck_out[c, k] = value
                c += 1
            if t > 0:
                r, pr = rsi[w, t], rsi[w, t - 1]
                entry = lo > r and lo <= pr
                exit_ = r > hi and pr <= hi
        _finish(out, k, cash, pos, close[n - 1], init_cash, trades, n_ret, s1, s2, mdd, ann_factor)


@njit(cache=True, nogil=True)
def donchian_breakout_kernel(open_, close, upper, lower, up_idx, lo_idx, fees, slip, init_cash, ann_factor, ck_idx, out, ck_out):
    """Fused Donchian breakout sweep: ``upper``/``lower`` hold the prior-bar channel of each window."""
    n = close.shape[0]
    for k in range(up_idx.shape[0]):
        u, l = up_idx[k], lo_idx[k]
        cash, pos, trades = init_cash, 0.0, 0
        entry, exit_ = False, False
        prev_value, n_ret, s1, s2, peak, mdd = init_cash, 0, 0.0, 0.0, 0.0, 0.0
        c = 0
        for t in range(n):
            if entry or exit_:
                cash, pos, filled = _order(entry, exit_, open_[t], cash, pos, fees, slip)
                trades += filled
            value = cash + pos * close[t]
            n_ret, s1, s2, peak, mdd = _value_stats(t, value, prev_value, n_ret, s1, s2, peak, mdd)
            prev_value = value
            if c < ck_idx.shape[0] and ck_idx[c] == t:
                ck_out[c, k] = value
                c += 1
            entry = close[t] > upper[u, t]
            exit_ = close[t] < lower[l, t]
        _finish(out, k, cash, pos, close[n - 1], init_cash, trades, n_ret, s1, s2, mdd, ann_factor)


class _WindowCache:
    """Indicator columns per (bars object, indicator), each window computed once per process.

    A Dask worker evaluates many steps of one sweep on the same scattered bars object; the
    steps share most indicator windows, so each window is computed once and kept in a
    (windows x bars) matrix that grows as new windows appear: one contiguous row per window,
    so a kernel streams two rows per combination instead of striding over all of them. Entries hold a reference to
    their bars object (so its ``id`` cannot be reused while cached) and the least recently
    used ones are dropped beyond ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 256 * 2 ** 20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, str], list] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: object, kind: str, windows: np.ndarray,
            fn: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The matrix holding ``fn(w)`` for every ``w`` in ``windows`` and each one's column index."""
        wins = [int(w) for w in np.asarray(windows).astype(np.int64)]
        key = (id(owner), kind)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not owner:
                entry = [owner, None, {}, 0]  # owner, matrix, {window: column}, columns used
                self._entries[key] = entry
            self._entries.move_to_end(key)
            need = sorted(set(wins) - set(entry[2]))
            if need:
                cols = [np.asarray(fn(w), dtype=np.float64) for w in need]
                mat, used = entry[1], entry[3]
                if mat is None or used + len(need) > mat.shape[0]:
                    grown = np.empty((max(16, int(1.5 * (used + len(need)))), len(cols[0])))
                    if mat is not None:
                        grown[:used] = mat[:used]
                    mat = grown
                for j, (w, col) in enumerate(zip(need, cols)):
                    mat[used + j] = col
                    entry[2][w] = used + j
                entry[1], entry[3] = mat, used + len(need)
                while len(self._entries) > 1 and sum(e[1].nbytes for e in self._entries.values()
                                                     if e[1] is not None) > self.max_bytes:
                    self._entries.popitem(last=False)
            return entry[1], np.array([entry[2][w] for w in wins], dtype=np.int64)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHE = _WindowCache()


def _sma(owner: object, close: pd.Series, combos: pd.DataFrame):
    # vectorbt's MA.run calls this very kernel; calling it directly skips ~50 ms of wrapping per step
    from vectorbt.generic.nb import rolling_mean_1d_nb

    c = close.to_numpy(dtype=np.float64)
    n = len(combos)
    ma, idx = _CACHE.get(owner, "sma", np.concatenate([combos["fast"], combos["slow"]]),
                         lambda w: rolling_mean_1d_nb(c, w, w))
    return ma, idx[:n], idx[n:]


def _rsi(owner: object, close: pd.Series, combos: pd.DataFrame):
    # the arithmetic of vectorbt's RSI (rsi_cache_nb / rsi_apply_nb, simple moving averages), step by step
    from vectorbt.generic.nb import rolling_mean_1d_nb

    moves: list[np.ndarray] = []

    def rsi(w: int) -> np.ndarray:
        if not moves:
            c = close.to_numpy(dtype=np.float64)
            delta = np.empty_like(c)
            delta[0] = np.nan
            delta[1:] = c[1:] - c[:-1]
            moves.extend([np.where(delta < 0, 0.0, delta), np.abs(np.where(delta > 0, 0.0, delta))])
        with np.errstate(divide="ignore", invalid="ignore"):
            rs = rolling_mean_1d_nb(moves[0], w, w) / rolling_mean_1d_nb(moves[1], w, w)
            return 100 - 100 / (1 + rs)

    mat, idx = _CACHE.get(owner, "rsi", combos["window"].to_numpy(), rsi)
    return mat, idx, combos["lower"].to_numpy(dtype=np.float64), combos["upper"].to_numpy(dtype=np.float64)


def _donchian(owner: object, bars: pd.DataFrame, combos: pd.DataFrame):
    high, low = bars["high"], bars["low"]
    upper, ui = _CACHE.get(owner, "donchian_upper", combos["window"].to_numpy(),
                           lambda w: high.rolling(w).max().shift(1).to_numpy(dtype=np.float64))
    lower, li = _CACHE.get(owner, "donchian_lower", combos["exit_window"].to_numpy(),
                           lambda w: low.rolling(w).min().shift(1).to_numpy(dtype=np.float64))
    return upper, lower, ui, li


#: Strategies with a fused kernel, and the parameters each kernel reads.
FUSED_PARAMS: dict[str, tuple[str, ...]] = {
    "sma_cross": ("fast", "slow"),
    "rsi_reversion": ("window", "lower", "upper"),
    "donchian_breakout": ("window", "exit_window"),
}


def supports(strategy: str, *, direction: str = "longonly", fill: str = "next_open", size: float | None = None) -> bool:
    """True when ``strategy`` with these engine options can run on a fused kernel."""
    return strategy in FUSED_PARAMS and direction == "longonly" and fill == "next_open" and size is None


def ann_factor(index: pd.DatetimeIndex) -> float:
    """Bars per year the way ``run_backtest`` annualises (365 days over the median bar spacing)."""
    if len(index) < 2:
        return np.nan
    freq_ns = int(np.median(np.diff(index.asi8[: min(len(index), 1000)])))
    return _YEAR_NS / freq_ns


def evaluate_fused(
    strategy: str,
    bars: pd.DataFrame,
    combos: pd.DataFrame,
    *,
    fees: float = 0.001,
    slippage: float = 0.0005,
    init_cash: float = 10_000.0,
    checkpoints: np.ndarray | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Stats of every row of ``combos`` (parameter columns) for one symbol's ``bars``.

    Returns a frame with :data:`FUSED_STATS` aligned with ``combos``. With ``checkpoints``
    (increasing bar positions) also returns the portfolio value at each checkpoint, shape
    ``(len(checkpoints), len(combos))`` — the raw material of period returns for the
    overfitting report.

    Example::

        >>> from spark_research.data import generate_bars
        >>> bars = generate_bars("ETHUSDT", n=1_000, seed=2)
        >>> evaluate_fused("donchian_breakout", bars, pd.DataFrame({"window": [20], "exit_window": [10]})).shape
        (1, 5)
    """
    if strategy not in FUSED_PARAMS:
        raise KeyError(f"strategy {strategy!r} has no fused kernel; fused: {sorted(FUSED_PARAMS)}")
    missing = [p for p in FUSED_PARAMS[strategy] if p not in combos.columns]
    if missing:
        raise KeyError(f"combos lack parameter column(s) {missing} of {strategy!r}")
    owner = bars  # identity key of the indicator cache
    if "timestamp" in bars.columns:
        bars = bars.set_index("timestamp")
    open_ = np.ascontiguousarray(bars["open"].to_numpy(dtype=np.float64))
    close = np.ascontiguousarray(bars["close"].to_numpy(dtype=np.float64))
    ck = np.asarray(checkpoints if checkpoints is not None else [], dtype=np.int64)
    n = len(combos)
    out = np.full((n, len(FUSED_STATS)), np.nan)
    ck_out = np.full((len(ck), n), np.nan)
    args = (fees, slippage, float(init_cash), ann_factor(bars.index), ck, out, ck_out)
    if n:
        if strategy == "sma_cross":
            ma, fi, si = _sma(owner, bars["close"], combos)
            sma_cross_kernel(open_, close, ma, fi, si, *args)
        elif strategy == "rsi_reversion":
            rsi, wi, lo, hi = _rsi(owner, bars["close"], combos)
            rsi_reversion_kernel(open_, close, rsi, wi, lo, hi, *args)
        else:
            upper, lower, ui, li = _donchian(owner, bars, combos)
            donchian_breakout_kernel(open_, close, upper, lower, ui, li, *args)
    stats = pd.DataFrame(out, columns=list(FUSED_STATS), index=combos.index)
    stats["trades"] = stats["trades"].astype(np.int64)
    return (stats, ck_out) if checkpoints is not None else stats

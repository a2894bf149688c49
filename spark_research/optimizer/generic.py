"""Generic sweep path: any strategy's own signals, every combination simulated in one numba kernel.

The fused kernels (:mod:`spark_research.optimizer.fused`) know the three shipped strategies.
A user's :class:`~spark_research.backtest.strategy.Strategy` is opaque, so a sweep of it
would otherwise build one vectorbt ``Portfolio`` per combination. Here the work is split in two:

1. **Signals** (:func:`pack_signals`): the strategy's own ``signals(frame, **params)`` per
   combination, on one frame built once, exactly as ``run_backtest`` calls it. Each signal
   series becomes the sorted positions of its ``True`` bars, all combinations packed in one
   CSR-like pair of arrays (``idx``, ``ptr``). Signals are sparse (tens to thousands of bars
   out of 100k), so positions cost a few kB per combination where a bars x combos boolean
   matrix would cost 100 kB (1M bars: 1 MB) per signal kind, and they let the kernel jump
   from event to event while the book is flat.
2. **Simulation** (:func:`simulate_signals_kernel`): one ``@njit`` pass per combination that
   reproduces ``vbt.Portfolio.from_signals`` as ``run_backtest`` calls it and accumulates
   every stat of :data:`~spark_research.backtest.STAT_FIELDS` on the way (no value series, no
   order records): flat stretches are skipped whole, in-position stretches between two signal
   bars are a tight loop over the closes (value, return, running sums, drawdown).

What the kernel reproduces, from vectorbt's ``portfolio/nb.py`` (``simulate_from_signals_nb``,
``signals_to_size_nb``, ``execute_order_nb``, ``buy_nb``/``sell_nb``) and its defaults:

* fills at the next bar's open (signals shifted one bar) or at the signal bar's close;
  ``fees`` and ``slippage`` proportional; ``min_size`` from vectorbt's settings (1e-8);
* sizing: all cash (``size=inf``, amount: buys spend ``cash / (1 + fees)``, short sells use
  the free cash) or a fixed value per entry (``size / price`` units; a buy larger than the
  cash is partially filled, a short sell of a fixed value is not limited by cash);
* directions: long-only and short-only (entries/exits of one side), and long/short signals
  (explicit ``short_entries``/``short_exits``, or ``direction="both"`` where exits are short
  entries and entries short exits). Defaults: no accumulation (an entry while in the same
  position is ignored), ``upon_long_conflict``/``upon_short_conflict="ignore"`` (an entry
  and an exit of one side on one bar cancel), ``upon_dir_conflict="ignore"`` (a long and a
  short entry on one bar cancel), ``upon_opposite_entry="reversereduce"`` (an opposite entry
  closes the position and opens the other side in ONE order: ``-position - size``, all cash
  meaning "close, then short with every free unit of cash");
* covering a short with too little cash fills partially (``buy_nb``'s cash limit), keeping
  vectorbt's debt and free-cash bookkeeping so a later all-cash short sizes identically;
* vectorbt's tolerance arithmetic (its own ``is_close_nb``/``add_nb``...: a sum zero up to
  1e-9 relative is zero) in the simulation, in the cash/asset series and in total profit;
* stats as ``BacktestResult.stats`` computes them: total return and final equity from the
  order records (``total_profit_nb``); per-bar returns of the value series
  ``cash + position * close`` against ``init_cash``; annualised return
  ``prod(1 + r) ** (ann / n_bars) - 1``; Sharpe ``mean / std(ddof=1) * sqrt(ann)``; Sortino
  ``mean * ann / (sqrt(mean(min(r, 0)^2)) * sqrt(ann))`` (``inf`` when the deviation is 0, NaN
  under 2 bars) with ``ann = 365 days / median bar spacing``; max drawdown of the cumulated
  returns; exit trades (a reversal splits into two trades; a partial cover is a trade of its
  own) counted with the open one, and win rate = trades with PnL > 0 over all trades, the open
  trade (valued at the last close, no exit fee) included, NaN without trades.

Sharpe's variance is accumulated in one pass (sum and sum of squares) where vectorbt takes two:
the two differ by rounding, up to ~1e-12 relative on market series (it would grow only for
per-bar returns that are nearly all equal, i.e. a price growing at a constant rate). Every other
stat follows vectorbt's operations in vectorbt's order and comes out bit for bit equal.

Example::

    >>> from spark_research.data import generate_bars
    >>> bars = generate_bars("BTCUSDT", n=2_000, seed=1)
    >>> out = evaluate_generic("sma_cross", bars, pd.DataFrame({"fast": [5, 10], "slow": [20, 40]}))
    >>> list(out.columns)
    ['total_return', 'cagr', 'sharpe', 'sortino', 'max_drawdown', 'win_rate', 'trades', 'final_equity']
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from vectorbt.utils.math_ import add_nb as _add
from vectorbt.utils.math_ import is_close_nb as _is_close
from vectorbt.utils.math_ import is_close_or_less_nb as _is_close_or_less
from vectorbt.utils.math_ import is_less_nb as _is_less

from spark_research.backtest.strategy import Signals, Strategy
from spark_research.optimizer.fused import ann_factor

#: Signal kinds, in the order of the packed arrays (vectorbt's long/short signal mode).
SIGNAL_KINDS = ("long_entries", "long_exits", "short_entries", "short_exits")

# vectorbt settings the kernel reproduces; any other value would change the simulation or the stats
_VBT_DEFAULTS = {
    ("portfolio", "fixed_fees"): 0.0, ("portfolio", "max_size"): np.inf,
    ("portfolio", "size_granularity"): np.nan, ("portfolio", "reject_prob"): 0.0,
    ("portfolio", "lock_cash"): False, ("portfolio", "allow_partial"): True,
    ("portfolio", "accumulate"): False, ("portfolio", "upon_long_conflict"): "ignore",
    ("portfolio", "upon_short_conflict"): "ignore", ("portfolio", "upon_dir_conflict"): "ignore",
    ("portfolio", "upon_opposite_entry"): "reversereduce", ("portfolio", "val_price"): np.inf,
    ("portfolio", "ffill_val_price"): True, ("portfolio", "sl_stop"): np.nan, ("portfolio", "tp_stop"): np.nan,
    ("portfolio", "fillna_close"): True, ("portfolio", "trades_type"): "exittrades",
    ("returns", "year_freq"): "365 days",
}

_BOTH, _LONG_ONLY, _SHORT_ONLY = 0, 1, 2  # order directions, as vectorbt's signals_to_size_nb sets them


# --------------------------------------------------------------------------- numba kernel


@njit(cache=True)
def _buy(cash, pos, debt, free, size, price, short_only, fees, slip, min_size):
    """vectorbt's ``buy_nb`` without lock_cash, fixed fees, max size or granularity.

    Returns ``(filled, cash, pos, debt, free_cash, order_size, order_price, order_fees)``.
    """
    adj_price = price * (1.0 + slip)
    cash_limit = cash
    if short_only:
        if pos == 0.0:
            return False, cash, pos, debt, free, 0.0, 0.0, 0.0
        adj_size = min(-pos, size)
    else:
        if cash_limit == 0.0:
            return False, cash, pos, debt, free, 0.0, 0.0, 0.0
        adj_size = size
    if adj_size == 0.0:
        return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    req_cash = adj_size * adj_price
    req_fees = req_cash * fees
    total_req = req_cash + req_fees
    if _is_close_or_less(total_req, cash_limit):
        final_size, fees_paid, final_req = adj_size, req_fees, total_req
    else:  # not enough cash: buy what the cash covers, fees included
        max_req = _add(cash_limit, -0.0) / (1.0 + fees)
        if max_req <= 0.0:
            return False, cash, pos, debt, free, 0.0, 0.0, 0.0
        final_size, fees_paid, final_req = max_req / adj_price, cash_limit - max_req, cash_limit
    if _is_close(adj_size, 0.0) or _is_less(final_size, min_size):
        return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    new_cash = _add(cash, -final_req)
    new_pos = _add(pos, final_size)
    if pos < 0.0:  # covering releases debt (at the short's average price) back into free cash
        short_size = final_size if new_pos < 0.0 else abs(pos)
        debt_diff = short_size * (debt / abs(pos))
        new_debt = _add(debt, -debt_diff)
        new_free = _add(free + 2 * debt_diff, -final_req)
    else:
        new_debt = debt
        new_free = _add(free, -final_req)
    return True, new_cash, new_pos, new_debt, new_free, final_size, adj_price, fees_paid


@njit(cache=True)
def _sell(cash, pos, debt, free, size, price, long_only, all_free_cash, fees, slip, min_size):
    """vectorbt's ``sell_nb`` without lock_cash, fixed fees, max size or granularity.

    ``all_free_cash``: the order was ``-inf`` units (vectorbt's 100 % percent short): sell
    the long position, then short with all free cash.
    """
    adj_price = price * (1.0 - slip)
    if long_only:
        size_limit = min(pos, size)
        if pos == 0.0:
            return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    elif all_free_cash:
        long_size = max(pos, 0.0)
        long_cash = long_size * adj_price * (1.0 - fees)
        total_free = _add(free, long_cash)
        if total_free <= 0.0:
            if pos <= 0.0:
                return False, cash, pos, debt, free, 0.0, 0.0, 0.0
            size_limit = long_size
        else:
            max_short = _add(total_free, -0.0) / (adj_price * (1.0 + fees))
            size_limit = _add(long_size, max_short)
            if size_limit <= 0.0:
                return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    else:
        size_limit = size
    if not long_only and np.isinf(size_limit):
        raise ValueError("Attempt to go in short direction infinitely")
    if _is_close(size_limit, 0.0) or _is_less(size_limit, min_size):
        return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    acq_cash = size_limit * adj_price
    fees_paid = acq_cash * fees
    final_acq = _add(acq_cash, -fees_paid)
    if final_acq < 0.0:
        return False, cash, pos, debt, free, 0.0, 0.0, 0.0
    new_cash = cash + final_acq
    new_pos = _add(pos, -size_limit)
    if new_pos < 0.0:  # the short part adds debt and locks twice its value out of free cash
        short_size = size_limit if pos < 0.0 else abs(new_pos)
        short_value = short_size * adj_price
        new_debt = debt + short_value
        new_free = _add(free, _add(final_acq, -2 * short_value))
    else:
        new_debt = debt
        new_free = free + final_acq
    return True, new_cash, new_pos, new_debt, new_free, size_limit, adj_price, fees_paid


@njit(cache=True)
def _execute(cash, pos, debt, free, order_size, is_value, direction, price, fees, slip, min_size):
    """vectorbt's ``execute_order_nb`` for the orders from_signals emits (amount or value size).

    Returns ``(filled, is_buy, cash, pos, debt, free_cash, order_size, order_price, order_fees)``.
    """
    # vectorbt's numerical hygiene: the state it keeps after any order attempt is this one
    if _is_close(cash, 0.0):
        cash = 0.0
    if _is_close(pos, 0.0):
        pos = 0.0
    if _is_close(debt, 0.0):
        debt = 0.0
    if _is_close(free, 0.0):
        free = 0.0
    if np.isnan(order_size) or np.isnan(price):
        return False, False, cash, pos, debt, free, 0.0, 0.0, 0.0
    if not np.isfinite(price) or price <= 0.0:
        raise ValueError("order.price must be finite and greater than 0")
    if is_value:  # value -> amount at the valuation price, which from_signals sets to the order price
        order_size /= price
    all_free_cash = False
    if direction != _LONG_ONLY and order_size < 0.0 and np.isinf(order_size):
        all_free_cash = True
    if order_size > 0.0:
        filled, cash, pos, debt, free, o_size, o_price, o_fees = _buy(
            cash, pos, debt, free, order_size, price, direction == _SHORT_ONLY, fees, slip, min_size)
        return filled, True, cash, pos, debt, free, o_size, o_price, o_fees
    filled, cash, pos, debt, free, o_size, o_price, o_fees = _sell(
        cash, pos, debt, free, -order_size, price, direction == _LONG_ONLY, all_free_cash, fees, slip, min_size)
    return filled, False, cash, pos, debt, free, o_size, o_price, o_fees


@njit(cache=True)
def _trade_pnl(size, entry_price, entry_fees, exit_price, exit_fees, is_long):
    # vectorbt's get_trade_stats_nb
    val_diff = _add(size * exit_price, -(size * entry_price))
    if val_diff != 0.0 and not is_long:
        val_diff *= -1
    return val_diff - entry_fees - exit_fees


@njit(cache=True)
def _next_event(sig_idx, p0, e0, p1, e1, p2, e2, p3, e3, shift, n):
    ev = n
    if p0 < e0:
        ev = min(ev, sig_idx[p0] + shift)
    if p1 < e1:
        ev = min(ev, sig_idx[p1] + shift)
    if p2 < e2:
        ev = min(ev, sig_idx[p2] + shift)
    if p3 < e3:
        ev = min(ev, sig_idx[p3] + shift)
    return ev


@njit(cache=True, inline="always")
def _account(t, value, prev_value, cnt, s1, s2, sn2, cumprod, peak, mdd, floor):
    """One bar of the returns stats: vectorbt's get_return_nb, then the sums behind mean, std,
    downside deviation, the cumulated return and its drawdown.

    Only bars where the value moved cost anything (an unchanged value is a return of exactly
    0), and the drawdown division is only taken below ``floor``, the level where it could set
    a new maximum drawdown (with a margin for rounding).
    """
    if value == prev_value:
        return cnt + 1, s1, s2, sn2, cumprod, peak, mdd, floor
    if prev_value == 0.0:
        r = np.inf * np.sign(value)
    else:
        r = (value - prev_value) / prev_value
        if prev_value < 0.0:
            r *= -1
    if np.isnan(r):
        return cnt, s1, s2, sn2, cumprod, peak, mdd, floor
    s1 += r
    s2 += r * r
    if r < 0.0:
        sn2 += r * r
    cumprod *= r + 1.0
    cum = cumprod * 100.0  # cum_returns_1d_nb(start_value=100)
    if t == 0 or cum > peak:
        peak = cum
        floor = peak * (1.0 + mdd) + 1e-12 * abs(peak)
    elif cum < floor:
        dd = cum / peak - 1.0
        if dd < mdd:
            mdd = dd
            floor = peak * (1.0 + mdd) + 1e-12 * abs(peak)
    return cnt + 1, s1, s2, sn2, cumprod, peak, mdd, floor


@njit(cache=True)
def _finish(out, k, n, init_cash, profit, cnt, s1, s2, sn2, cumprod, mdd, n_trades, n_wins, ann):
    """The stats row of one combination, with vectorbt's formulas and edge cases."""
    out[k, 0] = profit / init_cash
    out[k, 1] = cumprod ** (ann / n) - 1.0
    mean = s1 / cnt if cnt > 0 else np.nan
    if n < 2:
        out[k, 2] = np.nan
        out[k, 3] = np.nan
    else:
        std = np.nan
        if cnt > 1:  # nanstd with ddof=1, from the sums (vectorbt takes two passes)
            var = max(s2 - s1 * mean, 0.0) / cnt
            std = np.sqrt(var * cnt / (cnt - 1))
        out[k, 2] = np.inf if std == 0.0 else mean / std * np.sqrt(ann)
        downside = np.sqrt(sn2 / cnt if cnt > 0 else np.nan) * np.sqrt(ann)
        out[k, 3] = np.inf if downside == 0.0 else mean * ann / downside
    out[k, 4] = mdd
    out[k, 5] = n_wins / n_trades if n_trades > 0 else np.nan
    out[k, 6] = n_trades
    out[k, 7] = profit + init_cash


@njit(cache=True, nogil=True)
def simulate_signals_kernel(price, close, last_close, sig_idx, sig_ptr, shift, size, size_is_value, fees, slip,
                            min_size, init_cash, ann, ck_idx, out, ck_out):
    """Every combination of a step through vectorbt's from_signals rules, with its stats.

    ``sig_idx[sig_ptr[4k + j]:sig_ptr[4k + j + 1]]``: the signal bars of kind ``j``
    (:data:`SIGNAL_KINDS`) of combination ``k``, filled at bar ``+ shift``. ``price``: fill
    prices; ``close``: forward/backward-filled closes (valuation); ``last_close``: the raw last
    close (open trade). ``size``: ``inf`` (all cash) or a value per entry (``size_is_value``).
    Writes :data:`STAT_FIELDS` to ``out[k]`` and the value at bar ``ck_idx[c]`` to ``ck_out[c, k]``.
    """
    n = close.shape[0]
    n_ck = ck_idx.shape[0]
    for k in range(out.shape[0]):
        b = 4 * k
        p0, e0 = sig_ptr[b], sig_ptr[b + 1]
        p1, e1 = e0, sig_ptr[b + 2]
        p2, e2 = e1, sig_ptr[b + 3]
        p3, e3 = e2, sig_ptr[b + 4]
        # simulation state (vectorbt's ExecuteOrderState)
        cash, pos, debt, free = init_cash, 0.0, 0.0, init_cash
        # value series (cash_nb / assets_nb) and total profit (total_profit_nb), both from the order records
        s_cash, s_assets, tp_cash, tp_assets, n_orders = init_cash, 0.0, 0.0, 0.0, 0
        fresh = True  # the series still need add_nb(x, 0) on the next bar without an order
        # exit trades (get_exit_trades_nb)
        tr_open, tr_long, e_size, e_gross, e_fees, n_trades, n_wins = False, True, 0.0, 0.0, 0.0, 0, 0
        # returns stats
        prev_value, cnt, s1, s2, sn2, cumprod, peak, mdd = init_cash, 0, 0.0, 0.0, 0.0, 1.0, 100.0, 0.0
        floor = 100.0 + 1e-10
        c = 0
        next_ck = ck_idx[0] if n_ck > 0 else n
        ev = _next_event(sig_idx, p0, e0, p1, e1, p2, e2, p3, e3, shift, n)
        t = 0
        while t < n:
            if t != ev and not fresh:
                if s_assets == 0.0:
                    # flat: the value stays put (returns are exactly 0) until the next signal bar
                    cnt += ev - t
                    while next_ck < ev:
                        ck_out[c, k] = prev_value
                        c += 1
                        next_ck = ck_idx[c] if c < n_ck else n
                    t = ev
                    continue
                # in a position, no signal before bar ev: only the close moves the value
                while t < ev:
                    value = s_cash + close[t] * s_assets
                    cnt, s1, s2, sn2, cumprod, peak, mdd, floor = _account(
                        t, value, prev_value, cnt, s1, s2, sn2, cumprod, peak, mdd, floor)
                    prev_value = value
                    while next_ck == t:
                        ck_out[c, k] = value
                        c += 1
                        next_ck = ck_idx[c] if c < n_ck else n
                    t += 1
                continue
            filled = False
            if t == ev:
                le = lx = se = sx = False
                if p0 < e0 and sig_idx[p0] + shift == t:
                    le = True
                    p0 += 1
                if p1 < e1 and sig_idx[p1] + shift == t:
                    lx = True
                    p1 += 1
                if p2 < e2 and sig_idx[p2] + shift == t:
                    se = True
                    p2 += 1
                if p3 < e3 and sig_idx[p3] + shift == t:
                    sx = True
                    p3 += 1
                ev = _next_event(sig_idx, p0, e0, p1, e1, p2, e2, p3, e3, shift, n)
                if le or se:  # conflicts: ignore both signals (long, short, direction)
                    if le and lx:
                        le = lx = False
                    if se and sx:
                        se = sx = False
                    if le and se:
                        le = se = False
                # signals_to_size_nb, accumulation disabled, opposite entry = reverse
                o_size, o_value, o_dir = 0.0, False, _BOTH
                if pos > 0.0:
                    if se:
                        o_size = -abs(pos) - (size / price[t] if size_is_value else size)
                    elif lx:
                        o_size, o_dir = -abs(pos), _LONG_ONLY
                elif pos < 0.0:
                    if le:
                        o_size = abs(pos) + (size / price[t] if size_is_value else size)
                    elif sx:
                        o_size, o_dir = abs(pos), _SHORT_ONLY
                elif le:
                    o_size, o_value = size, size_is_value
                elif se:
                    o_size, o_value = -size, size_is_value
                if o_size != 0.0:
                    filled, buy, cash, pos, debt, free, r_size, r_price, r_fees = _execute(
                        cash, pos, debt, free, o_size, o_value, o_dir, price[t], fees, slip, min_size)
                    if filled:
                        signed = r_size if buy else -r_size
                        s_cash = _add(s_cash, _add(0.0, -signed * r_price - r_fees))
                        s_assets = _add(s_assets, _add(0.0, signed))
                        if buy:
                            tp_cash = _add(tp_cash, -(r_size * r_price + r_fees))
                        else:
                            tp_cash = _add(tp_cash, r_size * r_price - r_fees)
                        tp_assets = _add(tp_assets, signed)
                        n_orders += 1
                        fresh = True
                        # exit trades
                        if not tr_open:
                            tr_open, tr_long, e_size, e_gross, e_fees = True, buy, 0.0, 0.0, 0.0
                        if tr_long == buy:
                            e_size += r_size
                            e_gross += r_size * r_price
                            e_fees += r_fees
                        elif _is_close_or_less(r_size, e_size):
                            x_size = e_size if _is_close(r_size, e_size) else r_size
                            pnl = _trade_pnl(x_size, e_gross / e_size, x_size / e_size * e_fees, r_price, r_fees,
                                             tr_long)
                            n_trades += 1
                            n_wins += pnl > 0.0
                            if _is_close(r_size, e_size):
                                tr_open = False
                            else:
                                frac = (e_size - r_size) / e_size
                                e_size *= frac
                                e_gross *= frac
                                e_fees *= frac
                        else:  # reversal: close the trade, open the opposite one with the rest
                            cl_fees = e_size / r_size * r_fees
                            pnl = _trade_pnl(e_size, e_gross / e_size, e_size / e_size * e_fees, r_price, cl_fees,
                                             tr_long)
                            n_trades += 1
                            n_wins += pnl > 0.0
                            e_size = r_size - e_size
                            e_gross = e_size * r_price
                            e_fees = r_fees - cl_fees
                            tr_long = not tr_long
            if not filled and fresh:
                s_cash = _add(s_cash, 0.0)
                s_assets = _add(s_assets, 0.0)
                fresh = False
            value = s_cash + (close[t] * s_assets if s_assets != 0.0 else 0.0)
            cnt, s1, s2, sn2, cumprod, peak, mdd, floor = _account(
                t, value, prev_value, cnt, s1, s2, sn2, cumprod, peak, mdd, floor)
            prev_value = value
            while next_ck == t:
                ck_out[c, k] = value
                c += 1
                next_ck = ck_idx[c] if c < n_ck else n
            t += 1
        if tr_open and _is_less(-e_size, 0.0):  # the open trade, valued at the last close
            pnl = _trade_pnl(e_size, e_gross / e_size, e_size / e_size * e_fees, last_close, 0.0, tr_long)
            n_trades += 1
            n_wins += pnl > 0.0
        profit = tp_cash + tp_assets * close[n - 1] if n_orders > 0 else 0.0
        _finish(out, k, n, init_cash, profit, cnt, s1, s2, sn2, cumprod, mdd, n_trades, n_wins, ann)


# --------------------------------------------------------------------------- step 1: signals


@dataclass(frozen=True)
class PackedSignals:
    """The signal bars of every combination, CSR-packed.

    ``idx[ptr[4 * k + j]:ptr[4 * k + j + 1]]`` are the bars (ascending, before the fill shift)
    where signal kind ``j`` of :data:`SIGNAL_KINDS` is set for combination ``k``; ``shift``
    is 1 for next-open fills, 0 for close fills.
    """

    idx: np.ndarray
    ptr: np.ndarray
    shift: int
    n_bars: int

    @property
    def n_combos(self) -> int:
        return (len(self.ptr) - 1) // 4

    def bars(self, combo: int, kind: str) -> np.ndarray:
        """Fill bars of one signal kind of one combination (after the shift, inside the bars)."""
        j = 4 * combo + SIGNAL_KINDS.index(kind)
        fill = self.idx[self.ptr[j]:self.ptr[j + 1]] + self.shift
        return fill[fill < self.n_bars]


def _signal_kinds(sig: Signals, direction: str) -> tuple:
    """The four long/short signals vectorbt simulates, as ``run_backtest`` hands them over."""
    if direction == "both" and sig.short_entries is None:  # engine.strategy_signals: exits open shorts
        return sig.entries, sig.exits, sig.exits, sig.entries
    if sig.short_entries is not None or sig.short_exits is not None:  # explicit shorts: direction unused
        return sig.entries, sig.exits, sig.short_entries, sig.short_exits
    if direction == "shortonly":
        return None, None, sig.entries, sig.exits
    return sig.entries, sig.exits, None, None


def _true_bars(values: Any, n: int, what: str) -> np.ndarray:
    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{what}: expected {n} values (one per bar), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        # vectorbt reads a signal by truthiness: non-zero and NaN are set
        arr = arr != 0 if arr.dtype.kind in "iuf" else np.asarray(arr, dtype=bool)
    return np.flatnonzero(arr)


def pack_signals(strategy: type[Strategy], frame: pd.DataFrame, combos: pd.DataFrame,
                 direction: str = "longonly", fill: str = "next_open") -> PackedSignals:
    """Step 1 of :func:`evaluate_generic`: every combination's signal bars, packed.

    ``frame``: bars indexed by timestamp (``engine.to_frame``). Each combination is resolved
    (defaults, ranges, constraint: ``ParameterError`` names it) and passed to
    ``strategy().signals(frame, **params)``, the call ``run_backtest`` makes.

    Example::

        >>> from spark_research.backtest.engine import to_frame
        >>> from spark_research.backtest.strategies import get_strategy
        >>> from spark_research.data import generate_bars
        >>> frame = to_frame(generate_bars("BTCUSDT", n=1_000, seed=1))
        >>> packed = pack_signals(get_strategy("sma_cross"), frame, pd.DataFrame({"fast": [5], "slow": [20]}))
        >>> packed.n_combos, packed.shift, len(packed.bars(0, "long_entries")) > 0
        (1, 1, True)
    """
    n = len(frame)
    records = combos.to_dict("records")
    lengths = np.zeros(4 * len(records), dtype=np.int64)
    parts: list[np.ndarray] = []
    for k, params in enumerate(records):
        resolved = strategy.resolve(params)
        sig = strategy().signals(frame, **resolved)
        seen: dict[int, np.ndarray] = {}  # direction="both" uses each series twice
        for j, series in enumerate(_signal_kinds(sig, direction)):
            if series is None:
                continue
            if id(series) not in seen:
                seen[id(series)] = _true_bars(series, n, f"{strategy.name} {resolved}: {SIGNAL_KINDS[j]}")
            parts.append(seen[id(series)])
            lengths[4 * k + j] = len(parts[-1])
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    idx = np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, dtype=np.int64)
    return PackedSignals(idx=idx, ptr=ptr, shift=1 if fill == "next_open" else 0, n_bars=n)


# --------------------------------------------------------------------------- public entry points


def _is_default(value: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(value, float) and math.isnan(value)
    return bool(value == expected)


def _vectorbt_min_size() -> float:
    """vectorbt's ``min_size``, after checking the settings the kernel reproduces are the defaults."""
    from vectorbt._settings import settings

    for (section, key), expected in _VBT_DEFAULTS.items():
        value = settings[section][key]
        if not _is_default(value, expected):
            raise NotImplementedError(
                f"vectorbt setting {section}.{key} = {value!r} is not the default {expected!r} the generic "
                "sweep kernel reproduces; use run_backtest for this setting")
    return float(settings["portfolio"]["min_size"])


def _check_options(fees: float, slippage: float, init_cash: float, size: float | None, direction: str,
                   fill: str) -> None:
    from spark_research.backtest.engine import check_options

    check_options(fees=fees, slippage=slippage, init_cash=init_cash, direction=direction, fill=fill)
    if size and not (np.isfinite(size) and size > 0):
        raise ValueError(f"size must be a value > 0 in quote currency (or None for all cash), got {size!r}")


def evaluate_generic(
    strategy: str | type[Strategy] | Strategy,
    bars: pd.DataFrame,
    combos: pd.DataFrame,
    *,
    fees: float = 0.001,
    slippage: float = 0.0005,
    init_cash: float = 10_000.0,
    size: float | None = None,
    direction: str = "longonly",
    fill: str = "next_open",
    checkpoints: np.ndarray | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Every stat of ``run_backtest`` for each row of ``combos`` (parameter columns) on one symbol.

    Same options and same numbers as ``run_backtest(strategy, bars, combo, ...)`` (to 1e-9),
    for any strategy class, a registry name or an instance. Returns a frame with
    :data:`~spark_research.backtest.STAT_FIELDS` aligned with ``combos.index``. With
    ``checkpoints`` (increasing bar positions) also returns the portfolio value at each,
    shape ``(len(checkpoints), len(combos))``.

    Example::

        >>> from spark_research.backtest.strategy import Param, Signals, Strategy
        >>> from spark_research.data import generate_bars
        >>> class Dip(Strategy):
        ...     window = Param(20, low=5, high=200)
        ...     def signals(self, bars, window):
        ...         ma = bars["close"].rolling(window).mean()
        ...         return Signals(entries=bars["close"] < 0.99 * ma, exits=bars["close"] > ma)
        >>> bars = generate_bars("ETHUSDT", n=3_000, seed=2)
        >>> stats = evaluate_generic(Dip, bars, pd.DataFrame({"window": [10, 50]}), direction="both")
        >>> stats.shape, bool((stats["trades"] > 0).all())
        ((2, 8), True)
    """
    from spark_research.backtest.engine import STAT_FIELDS, to_frame
    from spark_research.backtest.strategies import get_strategy

    strat = get_strategy(strategy)
    _check_options(fees, slippage, init_cash, size, direction, fill)
    min_size = _vectorbt_min_size()
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        raise ValueError(f"evaluate_generic takes one symbol's bars, got {sorted(bars['symbol'].unique())}")
    frame = to_frame(bars)
    n = len(frame)
    if n == 0:
        raise ValueError("bars are empty")
    ck = np.array(checkpoints if checkpoints is not None else [], dtype=np.int64)  # a writeable copy
    if len(ck) and (ck[0] < 0 or ck[-1] >= n or np.any(np.diff(ck) < 0)):
        raise ValueError(f"checkpoints must be increasing bar positions in [0, {n}), got {ck.tolist()}")

    packed = pack_signals(strat, frame, combos, direction, fill)
    price_col = "open" if fill == "next_open" else "close"
    # writeable copies: pandas hands out read-only views, for which numba would compile a second kernel
    price = np.array(frame[price_col].to_numpy(dtype=np.float64))
    raw_close = frame["close"].to_numpy(dtype=np.float64)
    close = np.array(pd.Series(raw_close).ffill().bfill().to_numpy(), dtype=np.float64)  # vectorbt's fillna_close
    out = np.full((len(combos), len(STAT_FIELDS)), np.nan)
    ck_out = np.full((len(ck), len(combos)), np.nan)
    if len(combos):
        simulate_signals_kernel(price, close, float(raw_close[-1]), packed.idx, packed.ptr, packed.shift,
                                float(size) if size else np.inf, bool(size), float(fees), float(slippage),
                                min_size, float(init_cash), ann_factor(frame.index), ck, out, ck_out)
    stats = pd.DataFrame(out, columns=list(STAT_FIELDS), index=combos.index)
    stats["trades"] = stats["trades"].astype(np.int64)
    return (stats, ck_out) if checkpoints is not None else stats


def warm_generic() -> None:
    """Compile the generic kernel, or load it from numba's disk cache, on a tiny input.

    Meant for ``spark warm``, so that no test or notebook pays the cold compile (~5 s).

    Example::

        >>> warm_generic()
    """
    n = 8
    price = np.linspace(100.0, 107.0, n)
    idx = np.array([1, 5, 3, 6], dtype=np.int64)
    ptr = np.array([0, 1, 2, 3, 4], dtype=np.int64)
    out = np.full((1, 8), np.nan)
    ck = np.array([n - 1], dtype=np.int64)
    simulate_signals_kernel(price, price.copy(), 107.0, idx, ptr, 1, np.inf, False, 0.001, 0.0005, 1e-8,
                            10_000.0, 525_600.0, ck, out, np.full((1, 1), np.nan))

"""Trade → bar aggregation (1 s and 1 min by default) on exchange trade time.

A bar closes when the first trade of a later bucket arrives (event time, never the local
clock), so the same trades always give the same bars, live or replayed, before or after a
restart. Trades arrive in trade-id order; a trade whose time is earlier than the open bar
(never seen on Binance) is folded into the open bar rather than reopening a closed one.

Example::

    >>> from spark_research.streams.adapters import Trade
    >>> agg = BarAggregator("BTCUSDT", intervals={"1s": 1_000_000})
    >>> agg.add(Trade("BTCUSDT", 1, 10.0, 1.0, 0, 0, False))
    []
    >>> [b.close for b in agg.add(Trade("BTCUSDT", 2, 11.0, 1.0, 1_500_000, 1_500_000, False))]
    [10.0]
"""
from __future__ import annotations

import functools
import operator
import sys
from dataclasses import dataclass

from spark_research.streams.adapters import Trade

if sys.version_info < (3, 12):
    _add_up = sum  # float sum() adds left to right in doubles: the bits of adding one by one
else:  # sum() compensates rounding since 3.12; a bar must not depend on how its trades were batched
    def _add_up(values, start):
        return functools.reduce(operator.add, values, start)

#: Default bar intervals: name → length in microseconds.
INTERVALS: dict[str, int] = {"1s": 1_000_000, "1m": 60_000_000}


@dataclass(slots=True)
class Bar:
    """An OHLCV bar of ``interval`` starting at ``start_us`` (UTC epoch microseconds)."""

    symbol: str
    interval: str
    start_us: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    first_id: int
    last_id: int

    def as_row(self) -> dict:
        """The bar as a dict with a pandas UTC ``timestamp`` (bar schema of ``spark_research.data``)."""
        import pandas as pd

        return {"timestamp": pd.Timestamp(self.start_us * 1000, tz="UTC"), "open": self.open, "high": self.high,
                "low": self.low, "close": self.close, "volume": self.volume, "symbol": self.symbol}


class BarAggregator:
    """Keeps one open bar per interval and returns bars as they close."""

    def __init__(self, symbol: str, intervals: dict[str, int] | None = None):
        self.symbol = symbol
        self.intervals = dict(intervals or INTERVALS)
        for name, us in self.intervals.items():
            if us <= 0:
                raise ValueError(f"interval {name!r} length must be > 0 µs, got {us!r}")
        # per interval: [length_us, name, open bar or None, end_us of the open bar]; a list of
        # small lists because this runs once per trade per interval
        self._slots: list[list] = [[us, name, None, 0] for name, us in self.intervals.items()]

    @property
    def open_bars(self) -> dict[str, Bar]:
        """The bars still open, by interval name."""
        return {slot[1]: slot[2] for slot in self._slots if slot[2] is not None}

    def add(self, t: Trade) -> list[Bar]:
        """Fold trade ``t`` in; return the bars it closed (oldest first)."""
        closed: list[Bar] = []
        price, ts = t.price, t.time_us
        for slot in self._slots:
            bar = slot[2]
            if bar is not None and ts < slot[3]:  # same bucket (or a late trade: folded in)
                if price > bar.high:
                    bar.high = price
                elif price < bar.low:
                    bar.low = price
                bar.close = price
                bar.volume += t.qty
                bar.trades += 1
                bar.last_id = t.id
            else:
                if bar is not None:
                    closed.append(bar)
                length = slot[0]
                start = ts - ts % length
                slot[2] = Bar(self.symbol, slot[1], start, price, price, price, price, t.qty, 1, t.id, t.id)
                slot[3] = start + length
        return closed

    def add_run(self, ids: list[int], prices: list[float], qtys: list[float], times_us: list[int]) -> list[Bar]:
        """Fold a run of trades in (columns, in arrival order); the same bars as :meth:`add` one by one.

        While the run stays inside every open bar it is folded with one ``max``/``min``/sum per
        interval; a run that opens or crosses a bucket goes one by one until the rest fits.

        Example::

            >>> agg = BarAggregator("BTCUSDT", intervals={"1s": 1_000_000})
            >>> [b.close for b in agg.add_run([1, 2, 3], [10.0, 12.0, 11.0], [1.0, 1.0, 1.0], [0, 10, 1_200_000])]
            [12.0]
            >>> agg.open_bars["1s"].open, agg.open_bars["1s"].trades
            (11.0, 1)
        """
        closed: list[Bar] = []
        n = len(ids)
        i = 0
        while i < n:
            rest = times_us if i == 0 else times_us[i:]
            if self._fits(max(rest)):
                px = prices if i == 0 else prices[i:]
                qs = qtys if i == 0 else qtys[i:]
                hi, lo, last_px, last_id, k = max(px), min(px), px[-1], ids[-1], n - i
                for slot in self._slots:
                    bar = slot[2]
                    if hi > bar.high:
                        bar.high = hi
                    if lo < bar.low:
                        bar.low = lo
                    bar.close = last_px
                    bar.volume = _add_up(qs, bar.volume)
                    bar.trades += k
                    bar.last_id = last_id
                return closed
            # the trade at i opens or crosses a bucket: fold it alone; after two tries, go one by one
            stop = i + 1 if i == 0 else n
            for j in range(i, stop):
                closed.extend(self.add(Trade(self.symbol, ids[j], prices[j], qtys[j], times_us[j], times_us[j], False)))
            i = stop
        return closed

    def _fits(self, t_max: int) -> bool:
        """True when every interval has an open bar that a trade at ``t_max`` (or earlier) falls in."""
        for slot in self._slots:
            if slot[2] is None or t_max >= slot[3]:
                return False
        return True

    def restore(self, trades: list[Trade]) -> None:
        """Rebuild the open bars from the stored trades of the current buckets (after a restart)."""
        for slot in self._slots:
            slot[2], slot[3] = None, 0
        for t in trades:
            self.add(t)

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

from dataclasses import dataclass

from spark_research.streams.adapters import Trade

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
        self.open_bars: dict[str, Bar] = {}

    def add(self, t: Trade) -> list[Bar]:
        """Fold trade ``t`` in; return the bars it closed (oldest first)."""
        closed: list[Bar] = []
        for name, length in self.intervals.items():
            start = t.time_us - t.time_us % length
            bar = self.open_bars.get(name)
            if bar is None or start > bar.start_us:
                if bar is not None:
                    closed.append(bar)
                self.open_bars[name] = Bar(self.symbol, name, start, t.price, t.price, t.price, t.price,
                                           t.qty, 1, t.id, t.id)
            else:
                if t.price > bar.high:
                    bar.high = t.price
                if t.price < bar.low:
                    bar.low = t.price
                bar.close = t.price
                bar.volume += t.qty
                bar.trades += 1
                bar.last_id = t.id
        return closed

    def restore(self, trades: list[Trade]) -> None:
        """Rebuild the open bars from the stored trades of the current buckets (after a restart)."""
        self.open_bars.clear()
        for t in trades:
            self.add(t)

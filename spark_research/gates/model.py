"""Records crossing the paper/live boundary: :class:`Order` and :class:`Fill`.

Timestamps are integer nanoseconds since the epoch (UTC), like the bar schema.

Example::

    >>> from spark_research.gates.model import Fill
    >>> f = Fill("o1", "sma_cross", "BTCUSDT", 1_700_000_000_000_000_000, "buy", 0.5, 30_000.0, 15.0, "paper")
    >>> f.value
    15000.0
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

Side = Literal["buy", "sell"]
SIDES = ("buy", "sell")
#: Columns of a fills frame; the first six equal ``BacktestResult.orders``' columns.
FILL_COLUMNS = ["symbol", "timestamp", "side", "size", "price", "fees", "order_id", "strategy", "venue"]


@dataclass(frozen=True, slots=True)
class Order:
    """An order intent: ``size`` in base units at reference price ``ref_price`` (the paper fill price)."""

    order_id: str
    strategy: str
    symbol: str
    ts: int
    side: Side
    size: float
    ref_price: float


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution (possibly partial) of an order."""

    order_id: str
    strategy: str
    symbol: str
    ts: int
    side: Side
    size: float
    price: float
    fees: float
    venue: str

    @property
    def value(self) -> float:
        """Traded value in quote currency."""
        return self.size * self.price


def fills_frame(fills: list[Fill]) -> pd.DataFrame:
    """Fills as a frame with :data:`FILL_COLUMNS` (``timestamp`` as UTC datetimes)."""
    rows = [asdict(f) for f in fills]
    df = pd.DataFrame(rows, columns=["order_id", "strategy", "symbol", "ts", "side", "size", "price", "fees", "venue"])
    df["timestamp"] = pd.to_datetime(df["ts"].astype("int64"), utc=True)
    return df.drop(columns="ts")[FILL_COLUMNS]

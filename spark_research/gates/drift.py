"""Paper-vs-live drift: per fill (price units, bps, PnL delta) and over rolling windows.

Sign convention: ``price_drift`` is *adverse* drift, positive when live executed worse than
paper (bought higher / sold lower). ``pnl_delta`` is live PnL minus paper PnL for the live
quantity (price difference plus fee difference), so it is negative when live lost money
against paper.

Example::

    >>> from spark_research.gates.model import Fill
    >>> paper = Fill("o1", "sma_cross", "BTCUSDT", 0, "buy", 1.0, 100.0, 0.1, "paper")
    >>> live = Fill("o1", "sma_cross", "BTCUSDT", 0, "buy", 1.0, 100.05, 0.1, "sim")
    >>> d = fill_drift(paper, live)
    >>> round(d.price_drift_abs, 2), round(d.drift_bps, 1), round(d.pnl_delta, 2)
    (0.05, 5.0, -0.05)
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spark_research.gates.errors import InvalidMeasurementError
from spark_research.gates.model import Fill


@dataclass(frozen=True, slots=True)
class FillDrift:
    """Drift of one live fill against the paper fill of the same order."""

    strategy: str
    symbol: str
    order_id: str
    ts: int
    side: str
    size: float
    paper_price: float
    live_price: float
    price_drift: float  #: adverse drift, price units (positive = live worse)
    price_drift_abs: float  #: |live - paper|, price units
    drift_bps: float  #: |live - paper| / paper * 1e4
    pnl_delta: float  #: live PnL - paper PnL on this fill's size (quote currency)

    def check_finite(self) -> None:
        """Raise :class:`InvalidMeasurementError` naming the first non-finite field."""
        for name in ("size", "paper_price", "live_price", "price_drift_abs", "drift_bps", "pnl_delta"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InvalidMeasurementError(
                    f"{name} is {value!r} for order {self.order_id!r} of {self.strategy}/{self.symbol}")


def fill_drift(paper: Fill, live: Fill) -> FillDrift:
    """Drift of ``live`` (one, possibly partial, execution) against the ``paper`` fill of its order."""
    if paper.side != live.side:
        raise InvalidMeasurementError(f"side mismatch for order {live.order_id!r}: paper {paper.side!r}, live {live.side!r}")
    sign = 1.0 if live.side == "buy" else -1.0
    diff = live.price - paper.price
    paper_fee_per_unit = paper.fees / paper.size if paper.size else 0.0
    fee_delta = live.fees - paper_fee_per_unit * live.size
    return FillDrift(
        strategy=live.strategy, symbol=live.symbol, order_id=live.order_id, ts=live.ts, side=live.side,
        size=live.size, paper_price=paper.price, live_price=live.price,
        price_drift=sign * diff, price_drift_abs=abs(diff),
        drift_bps=abs(diff) / paper.price * 1e4 if paper.price else math.nan,
        pnl_delta=-sign * diff * live.size - fee_delta,
    )


class RollingDrift:
    """Rolling aggregates over the last ``window`` fills: mean |drift| bps and summed PnL delta.

    O(1) per update (running sums), so a gate can consult it on every fill.

    Example::

        >>> r = RollingDrift(window=2)
        >>> for bps, pnl in [(1.0, -1.0), (3.0, -2.0), (5.0, 0.5)]:
        ...     r.add(bps, pnl)
        >>> r.mean_bps, r.pnl_delta, r.count
        (4.0, -1.5, 2)
    """

    __slots__ = ("window", "_bps", "_pnl", "_sum_bps", "_sum_pnl")

    def __init__(self, window: int = 20):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self.window = window
        self._bps: deque[float] = deque()
        self._pnl: deque[float] = deque()
        self._sum_bps = 0.0
        self._sum_pnl = 0.0

    def add(self, drift_bps: float, pnl_delta: float) -> None:
        """Add one fill's drift."""
        self._bps.append(drift_bps)
        self._pnl.append(pnl_delta)
        self._sum_bps += drift_bps
        self._sum_pnl += pnl_delta
        if len(self._bps) > self.window:
            self._sum_bps -= self._bps.popleft()
            self._sum_pnl -= self._pnl.popleft()

    def clear(self) -> None:
        """Forget every fill (a gate starts probation on a clean window)."""
        self._bps.clear()
        self._pnl.clear()
        self._sum_bps = self._sum_pnl = 0.0

    @property
    def count(self) -> int:
        return len(self._bps)

    @property
    def mean_bps(self) -> float:
        return self._sum_bps / len(self._bps) if self._bps else 0.0

    @property
    def pnl_delta(self) -> float:
        return self._sum_pnl


def match_fills(paper: pd.DataFrame, live: pd.DataFrame, *, tolerance: str | pd.Timedelta = "5min") -> pd.DataFrame:
    """Drift table joining live fills to paper fills (vectorised, for offline analysis).

    When both frames carry ``order_id`` values in common, fills are matched on it; otherwise
    (an exchange export knows nothing of paper order ids) each live fill is matched to the most
    recent paper fill of the same symbol and side no more than ``tolerance`` earlier.
    Columns: those of :class:`FillDrift` plus ``timestamp``; unmatched live fills are dropped.

    Example::

        >>> from spark_research.gates.model import Fill, fills_frame
        >>> p = fills_frame([Fill("a", "s", "X", 0, "buy", 1.0, 100.0, 0.1, "paper")])
        >>> l = fills_frame([Fill("a", "s", "X", 10, "buy", 1.0, 101.0, 0.1, "csv")])
        >>> float(match_fills(p, l)["drift_bps"].iloc[0])
        100.0
    """
    need = ["symbol", "timestamp", "side", "size", "price", "fees"]
    for name, df in (("paper", paper), ("live", live)):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InvalidMeasurementError(f"{name} fills lack column(s) {missing}")
    p = paper.copy()
    live = live.copy()
    for df in (p, live):  # exports parse to us, engines produce ns: one resolution for merge_asof
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    p["paper_fee_per_unit"] = np.where(p["size"] > 0, p["fees"] / p["size"], 0.0)
    keep = ["symbol", "side", "price", "paper_fee_per_unit"]
    common = set()
    if "order_id" in paper.columns and "order_id" in live.columns:
        common = set(paper["order_id"].dropna()) & set(live["order_id"].dropna())
    if common:
        m = live.merge(p[keep + ["order_id", "strategy"] if "strategy" in p else keep + ["order_id"]]
                       .rename(columns={"price": "paper_price"}), on=["order_id", "symbol", "side"],
                       how="inner", suffixes=("", "_paper"))
    else:
        lv = live.sort_values("timestamp").reset_index(drop=True)
        pp = p.sort_values("timestamp")[keep + ["timestamp"] + (["strategy"] if "strategy" in p else [])]
        pp = pp.rename(columns={"price": "paper_price"})
        if "strategy" in lv.columns and "strategy" in pp.columns:
            pp = pp.drop(columns="strategy")
        m = pd.merge_asof(lv, pp, on="timestamp", by=["symbol", "side"], direction="backward",
                          tolerance=pd.Timedelta(tolerance)).dropna(subset=["paper_price"])
    sign = np.where(m["side"] == "buy", 1.0, -1.0)
    diff = m["price"].to_numpy() - m["paper_price"].to_numpy()
    out = pd.DataFrame({
        "timestamp": m["timestamp"].to_numpy(),
        "strategy": m["strategy"].to_numpy() if "strategy" in m else "",
        "symbol": m["symbol"].to_numpy(),
        "order_id": m["order_id"].to_numpy() if "order_id" in m else "",
        "side": m["side"].to_numpy(),
        "size": m["size"].to_numpy(),
        "paper_price": m["paper_price"].to_numpy(),
        "live_price": m["price"].to_numpy(),
        "price_drift": sign * diff,
        "price_drift_abs": np.abs(diff),
        "drift_bps": np.abs(diff) / m["paper_price"].to_numpy() * 1e4,
        "pnl_delta": -sign * diff * m["size"].to_numpy() - (m["fees"].to_numpy() - m["paper_fee_per_unit"].to_numpy() * m["size"].to_numpy()),
    })
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)

"""Shared helpers of the risk tests: an engine on a manual clock, orders, fills."""
from __future__ import annotations

import itertools

import pytest

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.model import Fill, Order
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import RiskEngine

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00 UTC
_ids = itertools.count(1)


class Clock:
    """A settable ns clock (the engine's time: token buckets and the trading day)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


def order(side: str = "buy", size: float = 1.0, price: float = 100.0, symbol: str = "BTCUSDT",
          strategy: str = "s1", order_id: str | None = None) -> Order:
    return Order(order_id or f"o{next(_ids)}", strategy, symbol, T0, side, size, price)


def fill_of(o: Order, price: float | None = None, size: float | None = None, fees: float = 0.0) -> Fill:
    return Fill(o.order_id, o.strategy, o.symbol, o.ts, o.side, o.size if size is None else size,
                o.ref_price if price is None else price, fees, "test")


def make_engine(doc: dict | None = None, *, clock: Clock | None = None, prices: dict | None = None, **kw) -> RiskEngine:
    eng = RiskEngine(RiskConfig.from_dict(doc or {}), audit=kw.pop("audit", MemoryAudit()),
                     clock=clock or Clock(), **kw)
    for sym, px in (prices if prices is not None else {"BTCUSDT": 100.0}).items():
        eng.on_price(sym, px)
    return eng


def trade(eng: RiskEngine, o: Order, price: float | None = None):
    """Check ``o`` and, if approved, fill it completely (a synchronous venue)."""
    out = eng.evaluate(o)
    if isinstance(out, Order):
        eng.on_fill(fill_of(out, price))
        eng.on_order_done(out.order_id)
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()

"""The risk engine inside a backtest: ``run_backtest(..., risk=...)`` shows what the limits would have done.

Bar by bar, in time order, each signal that would trade (an entry while flat, an exit while
long: vectorbt's ``from_signals`` rules, long only) becomes an :class:`~spark_research.gates.model.Order`
at the fill price and goes through the engine, on the engine's clock set to the bar's time (so
the order-rate throttle and the trading day follow the data, deterministically). A denied
signal is removed; an approved order that the lot/tick grid changed keeps its rounded size; the
approved fills are booked in the engine (fees and slippage as the backtest's), and every bar's
closes mark the book (equity, drawdown, loss breakers, VaR). vectorbt then simulates the
filtered signals, so the result's stats and trades are those of the strategy under the limits.
With limits that never bind, the orders equal a run without ``risk`` exactly.

Example::

    >>> from spark_research.backtest import run_backtest
    >>> from spark_research.data import generate_bars
    >>> from spark_research.risk.config import RiskConfig
    >>> bars = generate_bars("BTCUSDT", n=2_000, seed=1)
    >>> tight = RiskConfig.from_dict({"global": {"submit_rate": 1e-9, "submit_burst": 2}})  # 2 orders, ever
    >>> res = run_backtest("sma_cross", bars, {"fast": 10, "slow": 40}, risk=tight)
    >>> len(res.orders) <= 2, set(res.risk.denials["check"]) <= {"submit_rate"}
    (True, True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spark_research.gates.model import Fill, Order
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import Denial, RiskEngine

DENIAL_COLUMNS = ["timestamp", "symbol", "side", "size", "price", "check", "limit", "value", "message"]


@dataclass
class BacktestRisk:
    """What the limits did in one backtest: the engine (its book and states) and every denial."""

    engine: RiskEngine
    denials: pd.DataFrame  #: one row per denied signal (:data:`DENIAL_COLUMNS`)
    approved: int  #: signals that passed
    states: pd.DataFrame  #: the engine's state changes (audit entries), oldest first


class _BarClock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make_engine(risk: Any, init_cash: float) -> RiskEngine:
    """A fresh engine for a backtest from a :class:`RiskConfig`, a ``risk.yml`` path or an engine (used as is)."""
    if isinstance(risk, RiskEngine):
        return risk
    if isinstance(risk, (str, Path)):
        risk = RiskConfig.load(risk)
    if not isinstance(risk, RiskConfig):
        raise TypeError(f"risk must be a RiskConfig, a risk.yml path or a RiskEngine, got {type(risk).__name__}")
    cfg = dataclasses.replace(risk, portfolio=dataclasses.replace(risk.portfolio, cash=float(init_cash)))
    return RiskEngine(cfg, publish=False)


def apply_risk(risk: Any, strategy: str, close: pd.Series | pd.DataFrame, price: pd.Series | pd.DataFrame,
               signals: dict[str, Any], *, symbols: list[str], fees: float, slippage: float, init_cash: float,
               order_size: float,
               size_type: str) -> tuple[dict[str, Any], Any, Any, BacktestRisk]:
    """Filter ``signals`` (``entries``/``exits``, placed on their fill bar) through the engine.

    ``symbols``: the instrument of each column (one for a Series). Returns ``(signals, size,
    size_type, report)`` for ``Portfolio.from_signals``.
    """
    if set(signals) - {"entries", "exits", "direction"} or signals.get("direction", "longonly") != "longonly":
        raise ValueError(f"risk= supports direction='longonly' entries/exits, got direction="
                         f"{signals.get('direction')!r} and signals {sorted(k for k in signals if k != 'direction')}")
    engine = make_engine(risk, init_cash)
    clock = _BarClock()
    clock.now = int(close.index.asi8[0]) if len(close) else 0
    saved_clock = engine.clock
    engine.set_clock(clock)
    single = isinstance(close, pd.Series)
    if len(symbols) != (1 if single else close.shape[1]):
        raise ValueError(f"symbols must name each column of close, got {symbols!r}")
    as2d = (lambda x: np.asarray(x, dtype=float).reshape(-1, 1)) if single else (lambda x: np.asarray(x, dtype=float))
    entries = np.asarray(signals["entries"], dtype=bool).reshape(len(close), -1).copy()
    exits = np.asarray(signals["exits"], dtype=bool).reshape(len(close), -1).copy()
    closes, prices = as2d(close), as2d(price)
    size = np.full(entries.shape, float(order_size))
    sizes_changed = False
    times = close.index.asi8
    pos = np.zeros(len(symbols))
    cash = float(init_cash)
    rows: list[list[Any]] = []
    approved = 0
    try:
        for i in range(len(times)):
            ts = int(times[i])
            clock.now = ts
            for j, sym in enumerate(symbols):
                e, x = entries[i, j], exits[i, j]
                if not (e or x):
                    continue
                if e and x:  # vectorbt ignores a bar with both
                    continue
                p = prices[i, j]
                if not np.isfinite(p):
                    continue
                if e and pos[j] == 0:
                    fill_px = p * (1 + slippage)
                    if size_type == "amount":  # all cash (single symbol)
                        qty = (cash / (1 + fees)) / fill_px if np.isinf(order_size) else order_size
                    else:  # value per entry, capped by the cash left
                        qty = min(order_size, cash / (1 + fees)) / fill_px
                    side = "buy"
                elif x and pos[j] > 0:
                    fill_px, qty, side = p * (1 - slippage), pos[j], "sell"
                else:
                    continue
                if qty <= 0:
                    continue
                engine.on_price(sym, p)
                out = engine.evaluate(Order(f"bt-{sym}-{i}", strategy, sym, ts, side, float(qty), float(p)))
                if type(out) is Denial:
                    rows.append([ts, sym, side, qty, p, out.check, out.limit, out.value, out.message])
                    if side == "buy":
                        entries[i, j] = False
                    else:
                        exits[i, j] = False
                    continue
                approved += 1
                if side == "buy" and out.size != qty:
                    size[i, j], sizes_changed = out.size, True
                    qty = out.size
                fee = qty * fill_px * fees
                engine.on_fill(Fill(out.order_id, strategy, sym, ts, side, qty, fill_px, fee, "backtest"))
                engine.on_order_done(out.order_id)
                pos[j] = pos[j] + qty if side == "buy" else 0.0
                cash += -qty * fill_px - fee if side == "buy" else qty * fill_px - fee
            row = closes[i]
            engine.on_bars({sym: float(row[j]) for j, sym in enumerate(symbols) if np.isfinite(row[j])}, ts)
    finally:
        engine.set_clock(saved_clock)
    wrap = (lambda a: pd.Series(a[:, 0], index=close.index, name=close.name)) if single else \
        (lambda a: pd.DataFrame(a, index=close.index, columns=close.columns))
    out_signals = {"entries": wrap(entries), "exits": wrap(exits)}
    if "direction" in signals:
        out_signals["direction"] = signals["direction"]
    out_size: Any = order_size
    out_type: Any = size_type
    if sizes_changed:  # rounded entries are sent as amounts, the rest as before
        types = np.full(entries.shape, 0 if size_type == "amount" else 2, dtype=np.int64)  # SizeType.Amount/Value
        types[size != float(order_size)] = 0
        out_size, out_type = wrap(size), wrap(types)
    ts_utc = pd.to_datetime([r[0] for r in rows], utc=True)
    denials = pd.DataFrame(rows, columns=DENIAL_COLUMNS)
    denials["timestamp"] = ts_utc
    states = pd.DataFrame([{"timestamp": pd.Timestamp(e.ts_ns, unit="ns", tz="UTC"), "scope": e.gate,
                            "old_state": e.old_state, "new_state": e.new_state, "actor": e.actor, "reason": e.reason}
                           for e in engine.audit.entries() if e.kind == "risk_state"],
                          columns=["timestamp", "scope", "old_state", "new_state", "actor", "reason"])
    return out_signals, out_size, out_type, BacktestRisk(engine, denials, approved, states)

"""The paper engine: a backtest-library strategy run bar by bar on a live stream.

It reuses the very :class:`~spark_research.backtest.Strategy` classes of ``run_backtest`` and its
execution model, so research and paper trading share one code path:

* signals are computed by ``Strategy.signals`` on all bars seen so far; a signal at bar *t*'s
  close fills at bar *t+1*'s open (``fill="next_open"``);
* long-only, all-cash sizing; an entry while long and an exit while flat are ignored, an entry
  and an exit on the same bar cancel (vectorbt's defaults);
* costs as vectorbt's ``from_signals``: buy at ``open * (1 + slippage)``, sell at
  ``open * (1 - slippage)``, fee = ``fees`` x traded value.

On replayed history the paper fills equal ``BacktestResult.orders`` exactly (tests prove it).

Example::

    >>> from spark_research.data import generate_bars
    >>> bars = generate_bars("BTCUSDT", n=300, seed=1)
    >>> engine = PaperEngine("sma_cross", {"fast": 5, "slow": 20}, symbol="BTCUSDT")
    >>> fills = [f for bar in bars.to_dict("records") for f in engine.on_bar(bar)]
    >>> len(fills) > 0, fills[0].side
    (True, 'buy')
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from spark_research.backtest import Strategy, get_strategy
from spark_research.gates.errors import InvalidBarError
from spark_research.gates.model import Fill, Order, Side, fills_frame

_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class CostModel:
    """Fees and slippage as fractions, applied exactly like vectorbt's ``from_signals``.

    Example::

        >>> CostModel(fees=0.001, slippage=0.0005).buy_all(10_000.0, 100.0)[:2]
        (99.85017481269357, 100.05)
    """

    fees: float = 0.001
    slippage: float = 0.0005

    def __post_init__(self) -> None:
        for name in ("fees", "slippage"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v < 1):
                raise ValueError(f"{name} must be a fraction in [0, 1), got {v!r}")

    def buy_all(self, cash: float, price: float) -> tuple[float, float, float]:
        """``(size, fill_price, fees)`` spending all ``cash`` (vectorbt's buy with size=inf)."""
        adj_price = price * (1 + self.slippage)
        max_req_cash = cash / (1 + self.fees)
        return max_req_cash / adj_price, adj_price, cash - max_req_cash

    def sell(self, size: float, price: float) -> tuple[float, float, float]:
        """``(fill_price, fees, cash_in)`` of selling ``size``."""
        adj_price = price * (1 - self.slippage)
        acq_cash = size * adj_price
        fees_paid = acq_cash * self.fees
        return adj_price, fees_paid, acq_cash - fees_paid


def _bar_value(bar: Any, key: str) -> Any:
    if isinstance(bar, Mapping):
        if key not in bar:
            raise InvalidBarError(f"bar lacks field {key!r}: {dict(bar)!r}")
        return bar[key]
    if not hasattr(bar, key):
        raise InvalidBarError(f"bar lacks field {key!r}: {bar!r}")
    return getattr(bar, key)


def bar_timestamp_ns(value: Any) -> int:
    """A bar's timestamp (Timestamp, datetime64, ISO text or integer ns) as integer ns UTC."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidBarError(f"bar field 'timestamp' = {value!r} is not a time") from exc
    if ts is pd.NaT:
        raise InvalidBarError(f"bar field 'timestamp' = {value!r} is not a time")
    return int((ts if ts.tzinfo else ts.tz_localize("UTC")).value)


class PaperEngine:
    """Run ``strategy`` (name, class or instance) on one symbol's closed bars, paper-filling its signals.

    ``on_order(order)`` is called for every paper order when it fills (at the next bar's open),
    ``on_fill(fill)`` for every paper fill. A live side sends its own order earlier, when the
    signal forms: :attr:`pending_order` after the bar that gave it.
    """

    def __init__(self, strategy: str | type[Strategy] | Strategy, params: Mapping[str, Any] | None = None, *,
                 symbol: str, fees: float = 0.001, slippage: float = 0.0005, init_cash: float = 10_000.0,
                 on_order: Callable[[Order], None] | None = None, on_fill: Callable[[Fill], None] | None = None):
        self.strategy_cls = get_strategy(strategy)
        self.strategy = self.strategy_cls()
        self.params = self.strategy_cls.resolve(dict(params or {}))
        self.label = self.strategy_cls.name
        self.symbol = symbol
        self.costs = CostModel(fees, slippage)
        if not (math.isfinite(init_cash) and init_cash > 0):
            raise ValueError(f"init_cash must be > 0, got {init_cash!r}")
        self.init_cash = self.cash = float(init_cash)
        self.position = 0.0
        self.on_order, self.on_fill = on_order, on_fill
        self.fills: list[Fill] = []
        self.orders: dict[str, Order] = {}
        self._ts: list[int] = []
        self._cols: dict[str, list[float]] = {k: [] for k in _FIELDS}
        self._pending: Side | None = None
        self._pending_id: str | None = None
        self.orders_placed = 0  #: paper orders numbered so far (ids ``<label>-<symbol>-<n>``, n from 1)

    @property
    def bars_seen(self) -> int:
        return len(self._ts)

    @property
    def equity(self) -> float:
        """Cash plus the position valued at the last close."""
        return self.cash + (self.position * self._cols["close"][-1] if self._ts else 0.0)

    def _read(self, bar: Any) -> tuple[int, dict[str, float]]:
        ts = bar_timestamp_ns(_bar_value(bar, "timestamp"))
        if self._ts and ts <= self._ts[-1]:
            raise InvalidBarError(f"bar field 'timestamp' = {pd.Timestamp(ts, tz='UTC')} is not after the previous "
                                  f"bar {pd.Timestamp(self._ts[-1], tz='UTC')} for {self.symbol}")
        sym = bar.get("symbol", self.symbol) if isinstance(bar, Mapping) else getattr(bar, "symbol", self.symbol)
        if sym != self.symbol:
            raise InvalidBarError(f"bar field 'symbol' = {sym!r}, engine trades {self.symbol!r}")
        row = {}
        for k in _FIELDS:
            try:
                v = float(_bar_value(bar, k))
            except (TypeError, ValueError) as exc:
                raise InvalidBarError(f"bar field {k!r} = {_bar_value(bar, k)!r} is not a number") from exc
            if not math.isfinite(v) or (k != "volume" and v <= 0) or v < 0:
                raise InvalidBarError(f"bar field {k!r} = {v!r} at {pd.Timestamp(ts, tz='UTC')} is not a valid value")
            row[k] = v
        if not (row["low"] <= min(row["open"], row["close"]) and max(row["open"], row["close"]) <= row["high"]):
            raise InvalidBarError(f"bar at {pd.Timestamp(ts, tz='UTC')}: open/close outside [low, high] ({row})")
        return ts, row

    def on_bar(self, bar: Mapping[str, Any] | Any) -> list[Fill]:
        """Feed one closed bar; returns the paper fills it caused (at this bar's open)."""
        ts, row = self._read(bar)
        fills: list[Fill] = []
        if self._pending is not None:
            fill = self._execute(self._pending, ts, row["open"], self._pending_id)
            if fill is not None:
                fills.append(fill)
            self._pending = self._pending_id = None
        self._ts.append(ts)
        for k in _FIELDS:
            self._cols[k].append(row[k])
        self._pending = self._signal()
        if self._pending is not None:
            self.orders_placed += 1
            self._pending_id = f"{self.label}-{self.symbol}-{self.orders_placed}"
        return fills

    def warm(self, bar: Mapping[str, Any] | Any) -> None:
        """Add ``bar`` to the history without trading: a restarted engine re-reading bars it already traded on."""
        ts, row = self._read(bar)
        self._ts.append(ts)
        for k in _FIELDS:
            self._cols[k].append(row[k])
        self._pending = self._pending_id = None

    def restore(self, fills: list[Fill], orders_placed: int = 0) -> None:
        """Continue from the paper ``fills`` of an earlier run of this engine (oldest first): cash and
        position as they left them, order numbers after every one used (``orders_placed`` and the fills').

        Example::

            >>> e = PaperEngine("sma_cross", {"fast": 3, "slow": 10}, symbol="BTCUSDT")
            >>> e.restore([Fill("sma_cross-BTCUSDT-4", "sma_cross", "BTCUSDT", 1, "buy", 0.1, 30_000.0, 3.0, "paper")])
            >>> e.position, e.orders_placed
            (0.1, 4)
        """
        cash, position, highest = self.init_cash, 0.0, int(orders_placed)
        for f in fills:
            if f.side == "buy":
                cash, position = cash - f.size * f.price - f.fees, position + f.size
            else:
                cash, position = cash + f.size * f.price - f.fees, position - f.size
            tail = f.order_id.rsplit("-", 1)[-1]
            if tail.isdigit():
                highest = max(highest, int(tail))
        self.cash = 0.0 if abs(cash) < 1e-9 * self.init_cash else cash  # a buy spends all cash
        self.position = 0.0 if abs(position) < 1e-12 else position
        self.fills = list(fills)
        self.orders_placed = highest

    @property
    def pending_order(self) -> Order | None:
        """The order the last bar's signal placed, to fill at the next bar's open: the moment a
        live venue should get its own order. Its size is what the paper fill will take at
        today's close (the same as at the next open when the bars are continuous); its
        ``ref_price`` is that close. None when the last bar gave no signal.
        """
        if self._pending is None or not self._ts:
            return None
        close = self._cols["close"][-1]
        size = self.costs.buy_all(self.cash, close)[0] if self._pending == "buy" else self.position
        return Order(self._pending_id, self.label, self.symbol, self._ts[-1], self._pending, size, close)

    def run(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Replay ``bars`` (a frame of one symbol) through :meth:`on_bar`; returns all fills as a frame."""
        for bar in bars.to_dict("records"):
            self.on_bar(bar)
        return self.fills_frame()

    def fills_frame(self) -> pd.DataFrame:
        """Every paper fill so far (columns of ``BacktestResult.orders`` first)."""
        return fills_frame(self.fills)

    def _history(self) -> pd.DataFrame:
        index = pd.DatetimeIndex(np.asarray(self._ts, dtype="datetime64[ns]"), tz="UTC", name="timestamp")
        return pd.DataFrame({k: np.asarray(v) for k, v in self._cols.items()}, index=index)

    def _signal(self) -> Side | None:
        sig = self.strategy.signals(self._history(), **self.params)
        entry, exit_ = bool(sig.entries.iloc[-1]), bool(sig.exits.iloc[-1])
        if entry and exit_:  # vectorbt: upon_long_conflict="ignore"
            return None
        if entry and self.position == 0:
            return "buy"
        if exit_ and self.position > 0:
            return "sell"
        return None

    def _execute(self, side: Side, ts: int, open_price: float, oid: str) -> Fill | None:
        if side == "buy":
            if self.cash <= 0:
                return None
            size, price, fees = self.costs.buy_all(self.cash, open_price)
            self.cash, self.position = 0.0, self.position + size
        else:
            size = self.position
            price, fees, cash_in = self.costs.sell(size, open_price)
            self.cash, self.position = self.cash + cash_in, 0.0
        order = Order(oid, self.label, self.symbol, ts, side, size, open_price)
        fill = Fill(oid, self.label, self.symbol, ts, side, size, price, fees, "paper")
        self.fills.append(fill)
        self.orders[oid] = order
        if self.on_fill is not None:
            self.on_fill(fill)
        if self.on_order is not None:
            self.on_order(order)
        return fill

"""The live side: an :class:`ExecutionVenue` interface, a seeded execution simulator standing in
for the exchange, a gate guard in front of any venue, and an importer for exchange fill exports.

The simulator models what backtests never see: latency (the price moves while the order
travels), adverse slippage, partial fills split over several executions, and rejects. It is
seeded: the same config and orders give the same fills bit for bit.

Example::

    >>> from spark_research.gates.model import Order
    >>> venue = SimulatedVenue(SimulatorConfig(seed=1, partial_fill_prob=0.0))
    >>> fills = venue.submit(Order("o1", "sma_cross", "BTCUSDT", 0, "buy", 0.1, 30_000.0))
    >>> len(fills), fills[0].price > 30_000.0 * (1 - 0.01)
    (1, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from spark_research.gates.errors import FillsImportError, OrderRejectedError
from spark_research.gates.model import FILL_COLUMNS, Fill, Order


@runtime_checkable
class ExecutionVenue(Protocol):
    """Where live orders go. ``submit`` returns the order's fills or raises :class:`OrderRejectedError`."""

    name: str

    def submit(self, order: Order) -> list[Fill]: ...


@dataclass(frozen=True)
class SimulatorConfig:
    """Realism knobs of :class:`SimulatedVenue` (bps = 1/10000 of the reference price)."""

    latency_ms: float = 80.0  #: mean order-to-fill latency
    latency_jitter_ms: float = 40.0  #: std of the latency (truncated at 0)
    slippage_bps: float = 2.0  #: mean adverse slippage
    slippage_std_bps: float = 1.0  #: its std (truncated at 0: slippage is never favourable)
    vol_bps_per_sqrt_s: float = 3.0  #: price noise accumulated during latency (either sign)
    partial_fill_prob: float = 0.2  #: chance an order fills in several parts
    max_parts: int = 3  #: at most this many executions per order
    reject_prob: float = 0.0  #: chance the venue rejects an order
    fees: float = 0.001  #: fee rate on traded value
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_jitter_ms", "slippage_bps", "slippage_std_bps", "vol_bps_per_sqrt_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"SimulatorConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("partial_fill_prob", "reject_prob", "fees"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v < 1):
                raise ValueError(f"SimulatorConfig.{name} must be in [0, 1), got {v!r}")
        if self.max_parts < 1:
            raise ValueError(f"SimulatorConfig.max_parts must be >= 1, got {self.max_parts!r}")


class SimulatedVenue:
    """In-process execution simulator (the default live venue). Seeded and deterministic."""

    name = "sim"

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config or SimulatorConfig()
        self._rng = np.random.default_rng(self.config.seed)
        self.orders = 0
        self.rejects = 0

    def submit(self, order: Order) -> list[Fill]:
        """Execute ``order`` around its reference price; one or more fills, or a reject."""
        c, rng = self.config, self._rng
        if not (math.isfinite(order.size) and order.size > 0):
            raise OrderRejectedError(f"order {order.order_id!r}: size must be > 0, got {order.size!r}")
        if not (math.isfinite(order.ref_price) and order.ref_price > 0):
            raise OrderRejectedError(f"order {order.order_id!r}: ref_price must be > 0, got {order.ref_price!r}")
        self.orders += 1
        if c.reject_prob and rng.random() < c.reject_prob:
            self.rejects += 1
            raise OrderRejectedError(f"order {order.order_id!r} rejected by {self.name} (simulated venue error)")
        parts = 1
        if c.max_parts > 1 and rng.random() < c.partial_fill_prob:
            parts = int(rng.integers(2, c.max_parts + 1))
        fractions = rng.dirichlet(np.ones(parts)) if parts > 1 else np.ones(1)
        sign = 1.0 if order.side == "buy" else -1.0
        fills, t_ms, remaining = [], 0.0, order.size
        for i, frac in enumerate(fractions):
            t_ms += max(0.05, rng.normal(c.latency_ms, c.latency_jitter_ms))  # a wire is never instant
            slip = max(0.0, rng.normal(c.slippage_bps, c.slippage_std_bps))
            noise = c.vol_bps_per_sqrt_s * math.sqrt(t_ms / 1e3) * rng.standard_normal()
            price = order.ref_price * (1.0 + (sign * slip + noise) / 1e4)
            size = remaining if i == parts - 1 else order.size * float(frac)
            remaining -= size
            fills.append(Fill(order.order_id, order.strategy, order.symbol, order.ts + int(t_ms * 1e6), order.side,
                              size, price, size * price * c.fees, self.name))
        return fills


class GuardedVenue:
    """A venue behind a gate: refused while CLOSED, reduced size in HALF_OPEN.

    ``gate`` is any object with ``check_order(now_ns) -> size factor`` (a :class:`~spark_research.gates.gate.Gate`).
    """

    def __init__(self, venue: ExecutionVenue, gate):
        self.venue, self.gate = venue, gate
        self.name = venue.name

    def submit(self, order: Order) -> list[Fill]:
        """Check the gate (raises :class:`OrderRefusedError` while CLOSED), scale, forward."""
        factor = self.gate.check_order(order.ts)
        if factor != 1.0:
            order = Order(order.order_id, order.strategy, order.symbol, order.ts, order.side, order.size * factor,
                          order.ref_price)
        return self.venue.submit(order)


#: Accepted CSV header spellings (lower-cased) per field, Binance/Bybit/generic exports.
ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "time", "date(utc)", "date", "datetime", "exec_time", "ts"),
    "symbol": ("symbol", "pair", "market", "instrument"),
    "side": ("side", "direction", "type"),
    "price": ("price", "exec_price", "avg_price"),
    "size": ("size", "qty", "quantity", "executed", "amount", "exec_qty"),
    "fees": ("fees", "fee", "commission", "exec_fee"),
    "order_id": ("order_id", "client_order_id", "clientorderid", "orderid", "order id"),
}


def _number(series: pd.Series, field: str, path: Path) -> np.ndarray:
    # exchange exports write "0.01 BTC" or "1,234.5": keep the leading number
    text = series.astype(str).str.replace(",", "", regex=False).str.extract(r"^\s*([-+0-9.eE]+)")[0]
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise FillsImportError(f"{path}: row {i + 2}: field {field!r} = {series.iloc[i]!r} is not a number")
    return values


def load_fills_csv(path: str | Path, *, strategy: str = "", venue: str = "csv") -> pd.DataFrame:
    """Import real fills exported from an exchange (CSV) into a fills frame (:data:`FILL_COLUMNS`).

    Header names are matched case-insensitively against :data:`ALIASES`; timestamps may be ISO
    text (UTC assumed) or epoch milliseconds; side ``BUY``/``SELL`` in any case.

    Example::

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "fills.csv"
        >>> _ = p.write_text("Date(UTC),Pair,Side,Price,Executed,Fee\\n2024-01-01 00:01:00,BTCUSDT,BUY,30010.5,0.01,0.3\\n")
        >>> load_fills_csv(p)[["symbol", "side", "size", "price"]].to_dict("records")
        [{'symbol': 'BTCUSDT', 'side': 'buy', 'size': 0.01, 'price': 30010.5}]
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FillsImportError(f"{path}: cannot read fills CSV: {exc}") from exc
    cols = {c.strip().lower(): c for c in raw.columns}
    found: dict[str, str] = {}
    for field, names in ALIASES.items():
        for n in names:
            if n in cols:
                found[field] = cols[n]
                break
    missing = [f for f in ("timestamp", "symbol", "side", "price", "size") if f not in found]
    if missing:
        raise FillsImportError(f"{path}: missing column(s) {missing}; header is {list(raw.columns)}")
    ts_raw = raw[found["timestamp"]]
    if ts_raw.str.fullmatch(r"\d{12,13}").all():
        ts = pd.to_datetime(ts_raw.astype("int64"), unit="ms", utc=True)
    else:
        ts = pd.to_datetime(ts_raw, utc=True, errors="coerce", format="mixed")
    bad_ts = np.flatnonzero(ts.isna().to_numpy())
    if bad_ts.size:
        i = int(bad_ts[0])
        raise FillsImportError(f"{path}: row {i + 2}: field 'timestamp' = {ts_raw.iloc[i]!r} is not a time")
    side = raw[found["side"]].str.strip().str.lower()
    bad_side = np.flatnonzero(~side.isin(["buy", "sell"]).to_numpy())
    if bad_side.size:
        i = int(bad_side[0])
        raise FillsImportError(f"{path}: row {i + 2}: field 'side' = {raw[found['side']].iloc[i]!r} is not buy/sell")
    price, size = _number(raw[found["price"]], "price", path), _number(raw[found["size"]], "size", path)
    for field, values in (("price", price), ("size", size)):
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            i = int(bad[0])
            raise FillsImportError(f"{path}: row {i + 2}: field {field!r} = {float(values[i])!r} must be > 0")
    fees = _number(raw[found["fees"]], "fees", path) if "fees" in found else np.zeros(len(raw))
    df = pd.DataFrame({
        "symbol": raw[found["symbol"]].str.strip().str.upper().to_numpy(),
        "timestamp": ts.to_numpy() if hasattr(ts, "to_numpy") else ts,
        "side": side.to_numpy(), "size": size, "price": price, "fees": fees,
        "order_id": raw[found["order_id"]].to_numpy() if "order_id" in found else "",
        "strategy": strategy, "venue": venue,
    })
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df[FILL_COLUMNS].sort_values("timestamp", kind="stable").reset_index(drop=True)

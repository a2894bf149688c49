"""The live side: an :class:`ExecutionVenue` interface, a venue speaking Binance's spot REST API
(:class:`ExchangeVenue`: the embedded replay exchange, or a real one), a seeded in-process
execution simulator (:class:`SimulatedVenue`: notebooks, tests, offline demos), a gate guard in
front of any venue, and an importer for exchange fill exports.

Both model what backtests never see: latency (the price moves while the order travels), adverse
slippage, partial fills split over several executions, and rejects. The simulator is seeded: the
same config and orders give the same fills bit for bit.

Example::

    >>> from spark_research.gates.model import Order
    >>> venue = SimulatedVenue(SimulatorConfig(seed=1, partial_fill_prob=0.0))
    >>> fills = venue.submit(Order("o1", "sma_cross", "BTCUSDT", 0, "buy", 0.1, 30_000.0))
    >>> len(fills), fills[0].price > 30_000.0 * (1 - 0.01)
    (1, True)
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import math
import re
import threading
import time
import urllib.parse
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson
import pandas as pd

from spark_research.gates.errors import (ExchangeRejectedError, FillsImportError, OrderRejectedError,
                                         VenueUnavailableError)
from spark_research.gates.model import FILL_COLUMNS, Fill, Order

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ExchangeConfig:
    """How :class:`ExchangeVenue` talks to its exchange (which exchange: its ``base_url``).

    With ``api_key``/``api_secret`` set, requests carry the ``X-MBX-APIKEY`` header and a
    ``timestamp`` + HMAC-SHA256 ``signature`` as Binance's SIGNED endpoints require (the embedded
    replay exchange accepts and ignores them). The key and secret never show in the repr.

    Example::

        >>> ExchangeConfig(timeout_s=2.0, limit_bps=15, api_key="k", api_secret="s")
        ExchangeConfig(timeout_s=2.0, recover_timeout_s=10.0, poll_s=0.02, keepalive_s=10.0, limit_bps=15, \
price_decimals=2, recv_window_ms=5000, client_prefix=None)
    """

    timeout_s: float = 5.0  #: wait this long for an order's answer, then look the order up
    recover_timeout_s: float = 10.0  #: look an order up for this long before giving up on it
    poll_s: float = 0.02  #: first pause between two look-ups (doubles up to 0.5 s)
    keepalive_s: float = 10.0  #: reuse a connection idle for less than this, else open a new one
    limit_bps: float | None = None  #: None: MARKET orders; else LIMIT IOC this far beyond the reference price
    price_decimals: int = 2  #: tick of LIMIT prices (BTCUSDT: 0.01)
    recv_window_ms: int = 5_000
    api_key: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)
    client_prefix: str | None = None  #: prefix of clientOrderIds (None: 6 random hex digits and "-" per venue)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "recover_timeout_s", "poll_s", "keepalive_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"ExchangeConfig.{name} must be a finite number > 0, got {v!r}")
        if self.limit_bps is not None and not (math.isfinite(self.limit_bps) and self.limit_bps >= 0):
            raise ValueError(f"ExchangeConfig.limit_bps must be None or a finite number >= 0, got {self.limit_bps!r}")
        if self.client_prefix is not None and not re.fullmatch(r"[a-zA-Z0-9_-]{0,12}", self.client_prefix):
            raise ValueError(f"ExchangeConfig.client_prefix must be 0-12 of [a-zA-Z0-9_-], got {self.client_prefix!r}")


@dataclass(frozen=True)
class OrderReport:
    """What happened to one order sent by :class:`ExchangeVenue` (``venue.reports``)."""

    order_id: str  #: the session's order id
    client_order_id: str
    exchange_order_id: int | None
    status: str  #: FILLED | EXPIRED as the exchange said; ERROR: refused or not sent; UNKNOWN: lost and not found
    round_trip_ms: float  #: send to final answer, look-ups included
    exec_delay_ms: float | None  #: send to the exchange's ``transactTime`` (clamped to the round trip)
    recovered: bool  #: the answer was lost and the order was found by a look-up
    fills: int


class _NotSent(Exception):
    """The request never left (no connection): safe to report as not sent."""


class _Lost(Exception):
    """The request may have arrived but no answer came back: the outcome is unknown."""


_FINAL = ("FILLED", "EXPIRED", "CANCELED", "REJECTED", "EXPIRED_IN_MATCH")


class ExchangeVenue:
    """Live orders over a Binance-spot REST API: the embedded replay exchange, or a real venue.

    ``submit`` sends a MARKET order (LIMIT IOC with :attr:`ExchangeConfig.limit_bps`) and maps
    the FULL answer to :class:`~spark_research.gates.model.Fill` objects: the venue's prices,
    quantities and commissions; times in the session's clock (``order.ts`` plus the venue's
    execution delay). Every order carries a ``newClientOrderId``; when the answer is lost (timeout,
    dropped connection, 5xx) the order is looked up by it and never sent twice. An exchange error
    raises :class:`~spark_research.gates.errors.ExchangeRejectedError`, an unreachable exchange
    (or an order whose fate stays unknown) :class:`~spark_research.gates.errors.VenueUnavailableError`;
    both are :class:`OrderRejectedError`, which a session counts in its gate's error rate.

    Example::

        >>> from spark_research.streams.replay import ReplayExchange
        >>> from spark_research.streams.orders import OrderConfig
        >>> ex = ReplayExchange(n=200, rate=10_000, orders=OrderConfig(latency_ms=5, partial_fill_prob=0)).start()
        >>> venue = ExchangeVenue(ex.rest_url)
        >>> fills = venue.submit(Order("o1", "sma_cross", "BTCUSDT", 0, "buy", 0.1, 30_000.0))
        >>> len(fills), fills[0].size, fills[0].venue, venue.reports[-1].status
        (1, 0.1, 'exchange', 'FILLED')
        >>> venue.close(); ex.stop()
    """

    def __init__(self, base_url: str, config: ExchangeConfig | None = None, *, name: str = "exchange"):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.config = config or ExchangeConfig()
        self.name = name
        self._host, self._https = url.hostname, url.scheme == "https"
        self._port = url.port or (443 if self._https else 80)
        prefix = self.config.client_prefix
        self._prefix = prefix if prefix is not None else uuid.uuid4().hex[:6] + "-"
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0
        self._lock = threading.Lock()
        self.orders = 0  #: orders submitted (including those refused or lost)
        self.rejects = 0  #: orders that ended in an exception
        self.reports: deque[OrderReport] = deque(maxlen=10_000)  #: the latest orders, oldest first
        #: clientOrderIds whose outcome could not be established (reconcile them with the venue)
        self.unresolved: list[str] = []

    # ------------------------------------------------------------------ orders
    def client_order_id(self, order: Order) -> str:
        """The ``newClientOrderId`` of ``order``: stable, so a look-up finds it (Binance: 1-36 of [a-zA-Z0-9-_])."""
        cid = f"{self._prefix}{re.sub(r'[^a-zA-Z0-9_-]', '_', order.order_id)}"
        if len(cid) > 36:
            cid = f"{self._prefix}{hashlib.sha1(order.order_id.encode()).hexdigest()}"[:36]
        return cid

    def submit(self, order: Order) -> list[Fill]:
        """Send ``order``; its fills (none when it expired unfilled), or an :class:`OrderRejectedError`."""
        units = math.floor(order.size * 1e8 + 1e-4) if math.isfinite(order.size) else 0
        if order.side not in ("buy", "sell"):
            raise OrderRejectedError(f"order {order.order_id!r}: side must be 'buy' or 'sell', got {order.side!r}")
        if units <= 0:
            raise OrderRejectedError(f"order {order.order_id!r}: size must be >= 1e-8, got {order.size!r}")
        cid = self.client_order_id(order)
        params = {"symbol": order.symbol, "side": order.side.upper(), "quantity": f"{units / 1e8:.8f}",
                  "newClientOrderId": cid, "newOrderRespType": "FULL"}
        if self.config.limit_bps is None:
            params["type"] = "MARKET"
        else:
            if not (math.isfinite(order.ref_price) and order.ref_price > 0):
                raise OrderRejectedError(f"order {order.order_id!r}: ref_price must be > 0 for a LIMIT order, "
                                         f"got {order.ref_price!r}")
            sign = 1.0 if order.side == "buy" else -1.0
            tick = 10.0 ** -self.config.price_decimals
            raw = order.ref_price * (1.0 + sign * self.config.limit_bps / 1e4) / tick
            price = (math.floor(raw + 1e-9) if sign > 0 else math.ceil(raw - 1e-9)) * tick
            params.update(type="LIMIT", timeInForce="IOC", price=f"{price:.{self.config.price_decimals}f}")
        with self._lock:
            self.orders += 1
            try:
                return self._submit(order, cid, params)
            except OrderRejectedError:
                self.rejects += 1
                raise

    def _submit(self, order: Order, cid: str, params: dict[str, str]) -> list[Fill]:
        wall0, t0 = time.time_ns(), time.perf_counter()
        recovered = False
        try:
            status, body = self._request("POST", "/api/v3/order", params, self.config.timeout_s)
        except _NotSent as exc:
            self._report(order, cid, None, "ERROR", t0, None, False, 0)
            raise VenueUnavailableError(f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) not sent: "
                                        f"cannot connect to {self.base_url}: {exc}", client_order_id=cid) from None
        except _Lost as exc:
            log.warning("%s: no answer to order %s (%s): looking it up", self.name, cid, exc)
            status, body, recovered = 0, None, True
        answer = None
        if recovered:
            pass
        elif status >= 500:  # Binance: "the execution status is UNKNOWN and could have been a success"
            log.warning("%s: HTTP %d to order %s: looking it up", self.name, status, cid)
        elif status != 200:
            code, msg = _error(body)
            self._report(order, cid, None, "ERROR", t0, None, False, 0)
            raise ExchangeRejectedError(f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) rejected: "
                                        f"HTTP {status} code {code}: {msg}", code=code, status=status)
        else:
            answer = _json(body)
        try:
            if not isinstance(answer, dict) or answer.get("status") not in _FINAL:
                answer = self._recover(order, cid)  # lost, 5xx, unreadable, or not final yet
                recovered = True
            rows = answer.get("fills")
            if rows is None:  # a look-up, or a venue answering RESULT: the executions are in myTrades
                rows = self._trades(order, cid, answer) if float(answer.get("executedQty", 0)) > 0 else []
        except VenueUnavailableError:
            self._report(order, cid, None, "UNKNOWN", t0, None, recovered, 0)
            raise
        rtt_ns = int((time.perf_counter() - t0) * 1e9)
        transact_ms = answer.get("transactTime") or answer.get("updateTime")
        delay_ns = min(max(int(transact_ms) * 1_000_000 - wall0, 0), rtt_ns) if transact_ms else rtt_ns
        fills = [self._fill(order, row, order.ts + delay_ns) for row in rows]
        self._report(order, cid, answer.get("orderId"), str(answer.get("status")), t0, delay_ns / 1e6, recovered,
                     len(fills))
        return fills

    def _fill(self, order: Order, row: dict[str, Any], ts: int) -> Fill:
        price, qty = float(row["price"]), float(row["qty"])
        fee, asset = float(row.get("commission", 0.0)), str(row.get("commissionAsset", ""))
        if asset and order.symbol.startswith(asset) and not order.symbol.endswith(asset):
            fee *= price  # charged in the base asset: the project keeps fees in quote currency
        elif asset and not order.symbol.endswith(asset):
            log.warning("%s: commission of order %s in %s cannot be valued in quote currency; recorded as 0",
                        self.name, order.order_id, asset)
            fee = 0.0
        return Fill(order.order_id, order.strategy, order.symbol, ts, order.side, qty, price, fee, self.name)

    def _report(self, order: Order, cid: str, oid, status: str, t0: float, delay_ms: float | None,
                recovered: bool, n: int) -> None:
        self.reports.append(OrderReport(order.order_id, cid, oid, status, (time.perf_counter() - t0) * 1e3,
                                        delay_ms, recovered, n))

    def _recover(self, order: Order, cid: str) -> dict[str, Any]:
        """Look ``cid`` up until it is final; never resend it (an absent order is an error, not a retry)."""
        deadline = time.monotonic() + self.config.recover_timeout_s
        pause, absent, last = self.config.poll_s, 0, "no answer"
        while True:
            try:
                status, body = self._request("GET", "/api/v3/order", {"symbol": order.symbol,
                                                                      "origClientOrderId": cid}, self.config.timeout_s)
            except (_NotSent, _Lost) as exc:
                last = f"look-up failed: {exc}"
            else:
                answer = _json(body) if status == 200 else None
                if isinstance(answer, dict):
                    if answer.get("status") in _FINAL:
                        return answer
                    last = f"still {answer.get('status')}"
                else:
                    code, msg = _error(body)
                    if code == -2013:
                        absent += 1
                        if absent >= 3:  # asked three times: it never arrived
                            raise VenueUnavailableError(
                                f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) got no answer and "
                                f"the exchange at {self.base_url} has no such order: not resent", client_order_id=cid)
                    last = f"HTTP {status} code {code}: {msg}"
            if time.monotonic() + pause > deadline:
                self.unresolved.append(cid)
                raise VenueUnavailableError(
                    f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) outcome unknown after "
                    f"{self.config.recover_timeout_s:g} s of look-ups at {self.base_url} ({last}); not resent: "
                    f"reconcile it on the venue", client_order_id=cid)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _trades(self, order: Order, cid: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The executions of a final order (``GET /api/v3/myTrades``); if they cannot be read, one
        fill at the order's average price (fee unknown: 0), so the position stays right."""
        deadline = time.monotonic() + self.config.recover_timeout_s
        params = {"symbol": order.symbol, "orderId": str(answer.get("orderId"))}
        while time.monotonic() < deadline:
            try:
                status, body = self._request("GET", "/api/v3/myTrades", params, self.config.timeout_s)
            except (_NotSent, _Lost):
                time.sleep(self.config.poll_s)
                continue
            rows = _json(body) if status == 200 else None
            if isinstance(rows, list):
                return rows
            break
        qty, quote = float(answer["executedQty"]), float(answer.get("cummulativeQuoteQty", 0.0))
        log.warning("%s: executions of %s unreadable: one fill of %s at the average price", self.name, cid, qty)
        return [{"price": quote / qty, "qty": qty, "commission": 0.0, "commissionAsset": ""}]

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]:
        """One request on the kept-alive connection; raises :class:`_NotSent` or :class:`_Lost`."""
        c = self.config
        headers = {"Accept": "application/json"}
        if c.api_secret:
            params = {**params, "recvWindow": str(c.recv_window_ms), "timestamp": str(time.time_ns() // 1_000_000)}
            query = urllib.parse.urlencode(params)
            query += "&signature=" + sign_query(query, c.api_secret)
        else:
            query = urllib.parse.urlencode(params)
        if c.api_key:
            headers["X-MBX-APIKEY"] = c.api_key
        if method == "POST":
            url, body = path, query.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            url, body = f"{path}?{query}", None
        if self._conn is not None and time.monotonic() - self._used > c.keepalive_s:
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=timeout)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise _NotSent(f"{type(exc).__name__}: {exc}") from None
            self._conn = conn
        conn = self._conn
        conn.sock.settimeout(timeout)
        try:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _Lost(f"{type(exc).__name__}: {exc}") from None
        self._used = time.monotonic()
        if resp.will_close:
            self.close()
        return resp.status, data

    def close(self) -> None:
        """Close the kept-alive connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def sign_query(query: str, secret: str) -> str:
    """Binance's SIGNED-endpoint signature: hex HMAC-SHA256 of the query string with the API secret.

    Example (the vector of Binance's documentation)::

        >>> sign_query("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        ...            "&recvWindow=5000&timestamp=1499827319559",
        ...            "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
        'c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71'
    """
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def _json(body: bytes | None) -> Any:
    try:
        return orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return None


def _error(body: bytes | None) -> tuple[int | None, str]:
    """``(code, msg)`` of a Binance error body (or the raw text when it is not one)."""
    try:
        obj = orjson.loads(body or b"")
        return int(obj["code"]), str(obj["msg"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, (body or b"").decode("utf-8", "replace")[:200]


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

"""Live orders on any ccxt exchange (:class:`CcxtVenue`), keeping the contract of
:class:`~spark_research.gates.venue.ExchangeVenue`.

* Every order carries a client order id (ccxt's unified ``clientOrderId`` parameter), stable per
  ``Order.order_id``, so a look-up finds it.
* When the answer is lost (timeout, dropped connection, 5xx), the order is looked up by that id
  (``fetch_order(None, symbol, {"clientOrderId": ...})``) until it is final — and never sent twice.
  An order the venue still does not know after three look-ups, or whose fate stays unknown for
  :attr:`CcxtVenueConfig.recover_timeout_s`, is a :class:`~spark_research.gates.errors.VenueUnavailableError`
  naming the client order id (listed in ``venue.unresolved`` for reconciliation).
* ``submit(order) -> list[Fill]``: the venue's executions (``order["trades"]``, else
  ``fetch_order_trades``), fees in the quote currency, times in the session's clock (``order.ts``
  plus the venue's execution delay).
* Errors: the exchange refusing an order is an :class:`~spark_research.gates.errors.ExchangeRejectedError`
  (its ``code`` as the venue sent it when it sends one), an unreachable venue (nothing sent) a
  :class:`~spark_research.gates.errors.VenueUnavailableError`; both are ``OrderRejectedError``.

Order symbols are the store's (``BTCUSDT``): a venue market matches by its id, its ccxt symbol, or
the store's name of it (``BTC/USDT`` → ``BTCUSDT``).

Example (against the embedded replay exchange, which speaks Binance's REST API)::

    >>> from spark_research.data.download import ccxt_exchange
    >>> from spark_research.gates.model import Order
    >>> from spark_research.streams.orders import OrderConfig
    >>> from spark_research.streams.replay import ReplayExchange
    >>> ex = ReplayExchange(n=200, rate=10_000, orders=OrderConfig(latency_ms=5, partial_fill_prob=0)).start()
    >>> binance = ccxt_exchange("binance", api_base=ex.rest_url, apiKey="demo-key", secret="demo-secret",
    ...                         options={"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
    ...                                  "fetchMargins": False})
    >>> venue = CcxtVenue(binance)
    >>> fills = venue.submit(Order("o1", "sma_cross", "BTCUSDT", 0, "buy", 0.1, 30_000.0))
    >>> len(fills), fills[0].size, fills[0].venue, venue.reports[-1].status
    (1, 0.1, 'binance', 'FILLED')
    >>> ex.stop()
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from spark_research.data.download import store_symbol_for
from spark_research.gates.errors import ExchangeRejectedError, OrderRejectedError, VenueUnavailableError
from spark_research.gates.model import Fill, Order
from spark_research.gates.venue import OrderReport

log = logging.getLogger(__name__)

#: ccxt's unified order statuses after which nothing more executes, and the names reports use
_FINAL = {"closed": "FILLED", "expired": "EXPIRED", "canceled": "CANCELED", "cancelled": "CANCELED",
          "rejected": "REJECTED"}
_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)')


@dataclass(frozen=True)
class CcxtVenueConfig:
    """How :class:`CcxtVenue` sends orders and recovers lost answers.

    Example::

        >>> CcxtVenueConfig(timeout_s=2.0, limit_bps=15).limit_bps
        15
    """

    timeout_s: float = 5.0  #: wait this long for an order's answer, then look the order up
    recover_timeout_s: float = 10.0  #: look an order up for this long before giving up on it
    poll_s: float = 0.02  #: first pause between two look-ups (doubles up to 0.5 s)
    limit_bps: float | None = None  #: None: market orders; else limit IOC this far beyond the reference price
    client_prefix: str | None = None  #: prefix of client order ids (None: 6 random hex digits and "-" per venue)
    max_client_id_len: int = 32  #: the venue's longest client order id (Binance 36, OKX 32, Bybit 36)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "recover_timeout_s", "poll_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CcxtVenueConfig.{name} must be a finite number > 0, got {v!r}")
        if self.limit_bps is not None and not (math.isfinite(self.limit_bps) and self.limit_bps >= 0):
            raise ValueError(f"CcxtVenueConfig.limit_bps must be None or a finite number >= 0, got {self.limit_bps!r}")
        if self.client_prefix is not None and not re.fullmatch(r"[a-zA-Z0-9]{0,12}", self.client_prefix):
            raise ValueError(f"CcxtVenueConfig.client_prefix must be 0-12 of [a-zA-Z0-9], got {self.client_prefix!r}")
        if not (isinstance(self.max_client_id_len, int) and 16 <= self.max_client_id_len <= 64):
            raise ValueError(f"CcxtVenueConfig.max_client_id_len must be an integer in [16, 64], "
                             f"got {self.max_client_id_len!r}")


class _Lost(Exception):
    """The request may have reached the venue but no usable answer came back."""


class CcxtVenue:
    """Live orders on a ccxt exchange instance (see the module docstring for the contract).

    ``exchange`` is a configured ccxt exchange (keys, options, URLs: see
    :func:`~spark_research.data.download.ccxt_exchange`); ``name`` defaults to its id. Its markets are
    loaded on the first order. Thread-safe: orders go one at a time.
    """

    def __init__(self, exchange, config: CcxtVenueConfig | None = None, *, name: str | None = None):
        self.exchange = exchange
        self.config = config or CcxtVenueConfig()
        self.name = name or exchange.id
        prefix = self.config.client_prefix
        # letters and digits only: every venue's client id alphabet allows them (OKX allows nothing else)
        self._prefix = prefix if prefix is not None else "s" + uuid.uuid4().hex[:5]
        self._symbols: dict[str, str] = {}
        self._lock = threading.Lock()
        self._status: int | None = None  # HTTP status of the latest answer (ccxt keeps none)
        original = exchange.on_rest_response

        def on_rest_response(code, reason, url, method, headers, body, *args):
            self._status = int(code) if code is not None else None
            return original(code, reason, url, method, headers, body, *args)

        exchange.on_rest_response = on_rest_response
        self.orders = 0  #: orders submitted (including those refused or lost)
        self.rejects = 0  #: orders that ended in an exception
        self.reports: deque[OrderReport] = deque(maxlen=10_000)  #: the latest orders, oldest first
        #: client order ids whose outcome could not be established (reconcile them with the venue)
        self.unresolved: list[str] = []

    # ------------------------------------------------------------------ orders
    def client_order_id(self, order: Order) -> str:
        """The client order id of ``order``: stable (a look-up finds it), letters and digits only,
        at most :attr:`CcxtVenueConfig.max_client_id_len` long.

        Example::

            >>> import ccxt
            >>> v = CcxtVenue(ccxt.binance(), CcxtVenueConfig(client_prefix="t"))
            >>> v.client_order_id(Order("sma7", "sma", "BTCUSDT", 0, "buy", 1.0, 1.0))
            't0sma7'
            >>> v.client_order_id(Order("sma_cross-BTCUSDT-7", "sma", "BTCUSDT", 0, "buy", 1.0, 1.0))
            't10c29dc0cbab828eadac6636c01d52f'
        """
        cid = f"{self._prefix}0{order.order_id}"
        if not order.order_id.isascii() or not order.order_id.isalnum() or len(cid) > self.config.max_client_id_len:
            # another alphabet or too long: a digest ("1" keeps it apart from the readable form)
            cid = f"{self._prefix}1{hashlib.sha1(order.order_id.encode()).hexdigest()}"
        return cid[: self.config.max_client_id_len]

    def submit(self, order: Order) -> list[Fill]:
        """Send ``order``; its fills (none when it expired unfilled), or an :class:`OrderRejectedError`."""
        if order.side not in ("buy", "sell"):
            raise OrderRejectedError(f"order {order.order_id!r}: side must be 'buy' or 'sell', got {order.side!r}")
        if not (math.isfinite(order.size) and order.size > 0):
            raise OrderRejectedError(f"order {order.order_id!r}: size must be > 0, got {order.size!r}")
        with self._lock:
            self.orders += 1
            try:
                return self._submit(order)
            except OrderRejectedError:
                self.rejects += 1
                raise

    def _submit(self, order: Order) -> list[Fill]:
        import ccxt

        ex, c = self.exchange, self.config
        cid = self.client_order_id(order)
        t0 = time.perf_counter()
        symbol = self._symbol(order, cid)
        amount_text = self._precise(ex.amount_to_precision, symbol, order.size, order, "size")
        amount = float(amount_text)
        if amount <= 0:
            raise OrderRejectedError(f"order {order.order_id!r}: size {order.size!r} rounds to 0 at {self.name}'s "
                                     f"lot size for {symbol}")
        params: dict[str, Any] = {"clientOrderId": cid}
        price = None
        if c.limit_bps is None:
            kind = "market"
        else:
            if not (math.isfinite(order.ref_price) and order.ref_price > 0):
                raise OrderRejectedError(f"order {order.order_id!r}: ref_price must be > 0 for a limit order, "
                                         f"got {order.ref_price!r}")
            sign = 1.0 if order.side == "buy" else -1.0
            price = float(self._precise(ex.price_to_precision, symbol,
                                        order.ref_price * (1.0 + sign * c.limit_bps / 1e4), order, "ref_price"))
            kind = "limit"
            params["timeInForce"] = "IOC"
        wall0 = time.time_ns()
        ex.timeout = int(c.timeout_s * 1000)
        answer: dict[str, Any] | None = None
        recovered = False
        try:
            answer = ex.create_order(symbol, kind, order.side, amount, price, params)
        except ccxt.NetworkError as exc:  # timeouts, dropped connections, 5xx, 429
            if _never_left(exc):
                self._report(order, cid, None, "ERROR", t0, None, False, 0)
                raise VenueUnavailableError(f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) not "
                                            f"sent: cannot connect to {self.name}: {exc}",
                                            client_order_id=cid) from None
            log.warning("%s: no answer to order %s (%s: %s): looking it up", self.name, cid, type(exc).__name__, exc)
            recovered = True
        except ccxt.BaseError as exc:  # the exchange answered: refused
            self._report(order, cid, None, "ERROR", t0, None, False, 0)
            code = _code(exc)
            raise ExchangeRejectedError(f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) rejected: "
                                        f"HTTP {self._status} code {code}: {exc}", code=code,
                                        status=self._status) from None
        try:
            if recovered or str(answer.get("status")) not in _FINAL:
                answer = self._recover(order, symbol, cid)
                recovered = True
            trades = answer.get("trades") or []
            if not trades and float(answer.get("filled") or 0) > 0:
                trades = self._trades(order, symbol, cid, answer)
        except VenueUnavailableError:
            self._report(order, cid, None, "UNKNOWN", t0, None, recovered, 0)
            raise
        rtt_ns = int((time.perf_counter() - t0) * 1e9)
        done_ms = answer.get("lastTradeTimestamp") or answer.get("timestamp")
        delay_ns = min(max(int(done_ms) * 1_000_000 - wall0, 0), rtt_ns) if done_ms else rtt_ns
        market = ex.market(symbol)
        fills = [self._fill(order, market, t, order.ts + delay_ns) for t in trades]
        self._report(order, cid, answer.get("id"), _FINAL[str(answer["status"])], t0, delay_ns / 1e6, recovered,
                     len(fills))
        return fills

    def _symbol(self, order: Order, cid: str) -> str:
        """The venue's ccxt symbol for ``order.symbol`` (markets loaded on first use)."""
        import ccxt

        if order.symbol in self._symbols:
            return self._symbols[order.symbol]
        ex = self.exchange
        if not ex.markets:
            try:
                ex.load_markets()
            except ccxt.BaseError as exc:
                raise VenueUnavailableError(f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) not "
                                            f"sent: cannot load {self.name}'s markets: {type(exc).__name__}: {exc}",
                                            client_order_id=cid) from None
        matches = [m for m in ex.markets.values()
                   if order.symbol in (m.get("id"), m.get("symbol"), store_symbol_for(m.get("symbol") or ""))]
        matches.sort(key=lambda m: not m.get("spot"))  # the spot market first, as the store's names are spot's
        if not matches:
            raise OrderRejectedError(f"order {order.order_id!r}: symbol {order.symbol!r} is not a market of "
                                     f"{self.name} ({len(ex.markets)} markets)")
        self._symbols[order.symbol] = matches[0]["symbol"]
        return matches[0]["symbol"]

    @staticmethod
    def _precise(fn, symbol: str, value: float, order: Order, field: str) -> str:
        import ccxt

        try:
            return fn(symbol, value)
        except (ccxt.BaseError, ValueError, TypeError) as exc:
            raise OrderRejectedError(f"order {order.order_id!r}: {field} {value!r} is not valid on {symbol}: "
                                     f"{exc}") from None

    def _recover(self, order: Order, symbol: str, cid: str) -> dict[str, Any]:
        """Look ``cid`` up until it is final; never resend it (an absent order is an error, not a retry)."""
        import ccxt

        c = self.config
        deadline = time.monotonic() + c.recover_timeout_s
        pause, absent, last = c.poll_s, 0, "no answer"
        for _ in range(10_000):  # bounded by the deadline long before this count
            try:
                answer = self.exchange.fetch_order(None, symbol, {"clientOrderId": cid})
            except ccxt.OrderNotFound as exc:
                absent += 1
                last = f"{type(exc).__name__}: {exc}"
                if absent >= 3:  # asked three times: it never arrived
                    raise VenueUnavailableError(
                        f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) got no answer and "
                        f"{self.name} has no such order: not resent", client_order_id=cid) from None
            except ccxt.BaseError as exc:
                last = f"look-up failed: {type(exc).__name__}: {exc}"
            else:
                if str(answer.get("status")) in _FINAL:
                    return answer
                last = f"still {answer.get('status')}"
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        self.unresolved.append(cid)
        raise VenueUnavailableError(
            f"{self.name}: order {order.order_id!r} (clientOrderId {cid!r}) outcome unknown after "
            f"{c.recover_timeout_s:g} s of look-ups ({last}); not resent: reconcile it on the venue",
            client_order_id=cid)

    def _trades(self, order: Order, symbol: str, cid: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The executions of a final order (``fetch_order_trades``, else ``fetch_my_trades`` filtered by
        order id); if they cannot be read, one fill at the order's average price (fee unknown: 0),
        so the position stays right."""
        import ccxt

        ex, oid = self.exchange, answer.get("id")
        deadline = time.monotonic() + self.config.recover_timeout_s
        for _ in range(1_000):
            if time.monotonic() > deadline:
                break
            try:
                if ex.has.get("fetchOrderTrades"):
                    return list(ex.fetch_order_trades(oid, symbol))
                if ex.has.get("fetchMyTrades"):
                    return [t for t in ex.fetch_my_trades(symbol, answer.get("timestamp")) if t.get("order") == oid]
                break
            except ccxt.NetworkError:
                time.sleep(self.config.poll_s)
            except ccxt.BaseError:
                break
        filled = float(answer["filled"])
        avg = answer.get("average") or (float(answer.get("cost") or 0) / filled)
        log.warning("%s: executions of %s unreadable: one fill of %s at the average price", self.name, cid, filled)
        return [{"price": avg, "amount": filled, "fee": None}]

    def _fill(self, order: Order, market: dict[str, Any], trade: dict[str, Any], ts: int) -> Fill:
        price, qty = float(trade["price"]), float(trade["amount"])
        fee_obj = trade.get("fee") or {}
        fee, currency = float(fee_obj.get("cost") or 0.0), fee_obj.get("currency")
        if currency and currency == market.get("base") and currency != market.get("quote"):
            fee *= price  # charged in the base asset: the project keeps fees in quote currency
        elif currency and currency != market.get("quote"):
            log.warning("%s: fee of order %s in %s cannot be valued in quote currency; recorded as 0",
                        self.name, order.order_id, currency)
            fee = 0.0
        return Fill(order.order_id, order.strategy, order.symbol, ts, order.side, qty, price, fee, self.name)

    def _report(self, order: Order, cid: str, oid: object, status: str, t0: float, delay_ms: float | None,
                recovered: bool, n: int) -> None:
        oid = int(oid) if isinstance(oid, str) and oid.isdigit() else oid
        self.reports.append(OrderReport(order.order_id, cid, oid, status, (time.perf_counter() - t0) * 1e3,
                                        delay_ms, recovered, n))

    def close(self) -> None:
        """Close the ccxt session's connections."""
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()


def _never_left(exc: BaseException) -> bool:
    """True when the request provably never reached the venue (the connection was never made)."""
    import requests
    import urllib3

    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        seen += 1
        if isinstance(cause, (requests.exceptions.ConnectTimeout, urllib3.exceptions.NewConnectionError,
                              urllib3.exceptions.ConnectTimeoutError)):
            return True
        if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
            reason = getattr(cause.args[0], "reason", None)
            if isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)):
                return True
        cause = cause.__cause__ or cause.__context__
    return False


def _code(exc: BaseException) -> int | None:
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


__all__ = ["CcxtVenue", "CcxtVenueConfig"]

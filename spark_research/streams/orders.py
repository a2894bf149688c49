"""Order entry of the replay exchange: Binance spot ``/api/v3/order`` against the replayed tape.

The exchange fills MARKET and LIMIT/IOC orders the way a venue does and a backtest never sees:
after a latency (the tape keeps moving meanwhile), at the exchange's *current* price (the last
trade it published when the order executes) plus slippage against the taker, possibly in several
fills, possibly leaving part of the order unfilled (``EXPIRED``, as an IOC remainder does), or
rejecting it. Every random draw of an order is made from one seeded generator when the order
arrives, so the same seed and the same order sequence give the same fills at the same tape position.

Endpoints (Binance spot shapes, so a client written for the real venue works unchanged; the
``timestamp``, ``recvWindow`` and ``signature`` parameters and the ``X-MBX-APIKEY`` header are
accepted and ignored):

* ``POST /api/v3/order``: ``symbol, side (BUY|SELL), type (MARKET|LIMIT), timeInForce (IOC, LIMIT
  only), quantity, price (LIMIT only), newClientOrderId, newOrderRespType (ACK|RESULT|FULL)``
  → the order (``status`` FILLED or EXPIRED), with its ``fills`` for FULL (the default)
* ``GET /api/v3/order?symbol=&origClientOrderId=`` (or ``orderId``) → the order's status, ``NEW``
  while it travels: how a client whose POST timed out learns whether it exists
* ``GET /api/v3/myTrades?symbol=&orderId=`` → the order's executions
* ``GET /api/v3/exchangeInfo`` → the traded symbol and its filters (ccxt's ``load_markets`` reads it)

Errors are HTTP 400 ``{"code": ..., "msg": ...}`` with Binance's codes (-1102 missing parameter,
-1100 malformed, -1013 invalid quantity/price, -1111 too precise, -1115/-1116/-1117 bad enum,
-1121 bad symbol, -2010 rejected or duplicate ``newClientOrderId``, -2013 no such order); each
message names the parameter and its value. A rejected order does not exist afterwards, as on Binance.

Example::

    >>> import urllib.parse, urllib.request, orjson
    >>> from spark_research.streams.replay import ReplayExchange
    >>> cfg = OrderConfig(latency_ms=0, latency_jitter_ms=0, partial_fill_prob=0)
    >>> ex = ReplayExchange(n=100, rate=10_000, orders=cfg).start()
    >>> body = urllib.parse.urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
    ...                                "quantity": "0.01", "newClientOrderId": "doc-1"}).encode()
    >>> r = orjson.loads(urllib.request.urlopen(ex.rest_url + "/api/v3/order", data=body).read())
    >>> r["status"], r["executedQty"], len(r["fills"]), ex.status()["orders"]["filled"]
    ('FILLED', '0.01000000', 1, 1)
    >>> ex.stop()
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import orjson
import tornado.web

#: Quantities are integers of this many units per base unit (Binance's 8 decimals).
QTY_SCALE = 100_000_000
_NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
_FINAL = ("FILLED", "EXPIRED")
_ZERO = "0.00000000"


@dataclass(frozen=True)
class OrderConfig:
    """How the replay exchange executes orders (bps = 1/10000 of the price).

    Example::

        >>> cfg = OrderConfig.parse("latency_ms=20, slippage_bps=3")
        >>> cfg.latency_ms, cfg.slippage_bps, cfg.partial_fill_prob
        (20.0, 3.0, 0.2)
    """

    latency_ms: float = 80.0  #: mean delay from arrival to execution (the tape moves meanwhile)
    latency_jitter_ms: float = 40.0  #: its std (truncated at 0)
    slippage_bps: float = 2.0  #: mean slippage against the taker, per fill
    slippage_std_bps: float = 1.0  #: its std (truncated at 0: slippage is never favourable)
    partial_fill_prob: float = 0.2  #: chance an order executes in several fills
    max_parts: int = 3  #: at most this many fills per order
    expire_prob: float = 0.0  #: chance only part of the quantity finds liquidity (rest EXPIRED)
    reject_prob: float = 0.0  #: chance the exchange rejects a valid order (-2010)
    fee_rate: float = 0.001  #: commission on traded value, charged in the quote asset
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_jitter_ms", "slippage_bps", "slippage_std_bps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"OrderConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("partial_fill_prob", "expire_prob", "reject_prob", "fee_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1):
                raise ValueError(f"OrderConfig.{name} must be in [0, 1), got {v!r}")
        if not (isinstance(self.max_parts, int) and self.max_parts >= 1):
            raise ValueError(f"OrderConfig.max_parts must be an integer >= 1, got {self.max_parts!r}")

    @classmethod
    def parse(cls, spec: str) -> "OrderConfig":
        """Build from ``"latency_ms=50,slippage_bps=3"`` (the CLI and ``SPARK_STREAM_ORDERS`` form)."""
        kwargs: dict[str, float | int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = (s.strip() for s in part.partition("="))
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"unknown order setting {key!r}; known: {sorted(cls.__dataclass_fields__)}")
            try:
                kwargs[key] = int(value) if key in ("max_parts", "seed") else float(value)
            except ValueError:
                raise ValueError(f"order setting {key!r} = {value!r} is not a number") from None
        return cls(**kwargs)


@dataclass
class OrderCounters:
    """What the order entry did (``/replay/status`` → ``orders``)."""

    received: int = 0  #: POST /api/v3/order requests
    filled: int = 0
    expired: int = 0  #: executed in part or not at all (IOC remainder, ``expire_prob``)
    rejected: int = 0  #: answered with an error (bad parameter, duplicate, simulated reject)
    dropped: int = 0  #: connections dropped after execution (``Faults.order_drop_every``)
    stalled: int = 0  #: responses held back (``Faults.order_stall_every``)
    queries: int = 0  #: GET /api/v3/order and /api/v3/myTrades requests


class OrderError(Exception):
    """An order or query refused with Binance's error ``code`` (answered as HTTP 400)."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass(frozen=True)
class NewOrder:
    """A validated ``POST /api/v3/order`` request."""

    symbol: str
    side: str  #: BUY | SELL
    type: str  #: MARKET | LIMIT
    time_in_force: str  #: IOC for LIMIT; GTC is what Binance echoes for MARKET
    qty: int  #: in 1e-8 base units
    price: float | None  #: limit price (LIMIT only)
    price_text: str
    client_id: str | None
    resp_type: str  #: ACK | RESULT | FULL


@dataclass
class ExchangeOrder:
    """One order as the exchange records it, with its execution plan (drawn on arrival)."""

    order_id: int
    seq: int  #: 1-based count of accepted orders (the order fault knobs count these)
    request: NewOrder
    client_id: str
    time_ms: int
    latency_s: float
    parts: list[tuple[float, float]]  #: (fraction of the executed quantity, slippage bps) per fill
    filled_frac: float  #: 1.0, or the fraction that finds liquidity when an expiry was drawn
    status: str = "NEW"
    update_ms: int = 0
    executed: int = 0
    quote: float = 0.0
    fills: list[dict[str, Any]] = field(default_factory=list)

    def _common(self) -> dict[str, Any]:
        r = self.request
        return {"symbol": r.symbol, "orderId": self.order_id, "orderListId": -1, "clientOrderId": self.client_id}

    def _amounts(self) -> dict[str, Any]:
        r = self.request
        return {"price": r.price_text, "origQty": _qty(r.qty), "executedQty": _qty(self.executed),
                "origQuoteOrderQty": _ZERO, "cummulativeQuoteQty": f"{self.quote:.8f}", "status": self.status,
                "timeInForce": r.time_in_force, "type": r.type, "side": r.side}

    def response(self) -> dict[str, Any]:
        """The ``POST`` answer in the requested ``newOrderRespType`` shape."""
        out = {**self._common(), "transactTime": self.update_ms}
        if self.request.resp_type == "ACK":
            return out
        out.update(self._amounts(), workingTime=self.update_ms, selfTradePreventionMode="EXPIRE_MAKER")
        if self.request.resp_type == "FULL":
            out["fills"] = [{k: f[k] for k in ("price", "qty", "commission", "commissionAsset", "tradeId")}
                            for f in self.fills]
        return out

    def query(self) -> dict[str, Any]:
        """The ``GET /api/v3/order`` answer."""
        return {**self._common(), **self._amounts(), "stopPrice": _ZERO, "icebergQty": _ZERO, "time": self.time_ms,
                "updateTime": self.update_ms or self.time_ms, "isWorking": True, "workingTime": self.time_ms,
                "selfTradePreventionMode": "EXPIRE_MAKER"}

    def trades(self) -> list[dict[str, Any]]:
        """The ``GET /api/v3/myTrades`` rows of this order."""
        buyer = self.request.side == "BUY"
        return [{"symbol": self.request.symbol, "id": f["tradeId"], "orderId": self.order_id, "orderListId": -1,
                 "price": f["price"], "qty": f["qty"], "quoteQty": f["quoteQty"], "commission": f["commission"],
                 "commissionAsset": f["commissionAsset"], "time": self.update_ms, "isBuyer": buyer,
                 "isMaker": False, "isBestMatch": True} for f in self.fills]


def _qty(units: int) -> str:
    return f"{units // QTY_SCALE}.{units % QTY_SCALE:08d}"


def _mandatory(name: str, value: str | None) -> str:
    if value is None or value == "":
        raise OrderError(-1102, f"Mandatory parameter {name!r} was not sent, was empty/null, or malformed "
                                f"(got {value!r}).")
    return value


def _decimal(name: str, text: str) -> tuple[int, int]:
    """``(integer value, decimals)`` of a decimal text at 1e-8 resolution, or -1100/-1111."""
    m = _NUMBER.match(text)
    if m is None:
        raise OrderError(-1100, f"Illegal characters found in parameter {name!r}; legal range is "
                                f"'^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$' (got {text!r}).")
    frac = (m.group(2) or ".")[1:].rstrip("0")
    if len(frac) > 8:
        raise OrderError(-1111, f"Precision is over the maximum defined for this asset: parameter {name!r} = "
                                f"{text!r} has more than 8 decimals.")
    return int(m.group(1)) * QTY_SCALE + int(frac.ljust(8, "0")), len(frac)


def parse_new_order(get: Callable[[str], str | None], symbol: str, price_decimals: int) -> NewOrder:
    """Validate the parameters of ``POST /api/v3/order`` (``get(name)`` reads one); raises :class:`OrderError`.

    Example::

        >>> p = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.5"}
        >>> parse_new_order(p.get, "BTCUSDT", 2).qty
        50000000
        >>> parse_new_order({**p, "quantity": "0"}.get, "BTCUSDT", 2)
        Traceback (most recent call last):
        ...
        spark_research.streams.orders.OrderError: Invalid quantity: parameter 'quantity' = '0' must be > 0.
    """
    sym = _mandatory("symbol", get("symbol")).upper()
    if sym != symbol:
        raise OrderError(-1121, f"Invalid symbol: parameter 'symbol' = {sym!r} (this exchange trades {symbol}).")
    side = _mandatory("side", get("side")).upper()
    if side not in ("BUY", "SELL"):
        raise OrderError(-1117, f"Invalid side: parameter 'side' = {side!r} (BUY or SELL).")
    type_ = _mandatory("type", get("type")).upper()
    if type_ not in ("MARKET", "LIMIT"):
        raise OrderError(-1116, f"Invalid orderType: parameter 'type' = {type_!r} (this exchange executes "
                                f"MARKET and LIMIT with timeInForce=IOC).")
    qty_text = _mandatory("quantity", get("quantity"))
    qty, _ = _decimal("quantity", qty_text)
    if qty <= 0:
        raise OrderError(-1013, f"Invalid quantity: parameter 'quantity' = {qty_text!r} must be > 0.")
    price_text, price = get("price"), None
    tif = (get("timeInForce") or "").upper()
    if type_ == "MARKET":
        if price_text not in (None, ""):
            raise OrderError(-1106, f"Parameter 'price' sent when not required (type MARKET, got {price_text!r}).")
        if tif:
            raise OrderError(-1106, f"Parameter 'timeInForce' sent when not required (type MARKET, got {tif!r}).")
        tif, price_text = "GTC", _ZERO  # what Binance echoes for market orders
    else:
        tif = _mandatory("timeInForce", tif)
        if tif != "IOC":
            raise OrderError(-1115, f"Invalid timeInForce: parameter 'timeInForce' = {tif!r} (this exchange "
                                    f"keeps no resting orders: LIMIT needs IOC).")
        price_text = _mandatory("price", price_text)
        units, decimals = _decimal("price", price_text)
        if units <= 0:
            raise OrderError(-1013, f"Invalid price: parameter 'price' = {price_text!r} must be > 0.")
        if decimals > price_decimals:
            raise OrderError(-1013, f"Filter failure: PRICE_FILTER: parameter 'price' = {price_text!r} is not a "
                                    f"multiple of the tick size {10.0 ** -price_decimals:.{price_decimals}f}.")
        price = units / QTY_SCALE
        price_text = f"{price:.8f}"
    cid = get("newClientOrderId")
    if cid is not None and cid != "" and not _CLIENT_ID.match(cid):
        raise OrderError(-1100, f"Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                f"'^[a-zA-Z0-9-_]{{1,36}}$' (got {cid!r}).")
    resp = (get("newOrderRespType") or "FULL").upper()
    if resp not in ("ACK", "RESULT", "FULL"):
        raise OrderError(-1100, f"Illegal characters found in parameter 'newOrderRespType'; legal range is "
                                f"'ACK, RESULT, FULL' (got {resp!r}).")
    return NewOrder(sym, side, type_, tif, qty, price, price_text, cid or None, resp)


class OrderDesk:
    """The exchange's orders: seeded execution plans, executions and the records queries read.

    Not thread-safe: the exchange calls it on its own event loop only.
    """

    def __init__(self, config: OrderConfig, symbol: str, price_decimals: int):
        self.symbol, self.decimals = symbol, price_decimals
        self.counters = OrderCounters()
        self.by_id: dict[int, ExchangeOrder] = {}
        self.by_client: dict[str, ExchangeOrder] = {}
        self._accepted = 0
        self._open = 0  # accepted, not executed yet (a count: status() may be read from another thread)
        self._next_trade = 1
        self.configure(config)

    def configure(self, config: OrderConfig) -> None:
        """Use ``config`` from the next order on (the generator restarts from its seed)."""
        self.config = config
        self._rng = np.random.default_rng(config.seed)

    def accept(self, req: NewOrder, now_ms: int) -> ExchangeOrder:
        """Register ``req`` as NEW with its execution plan; -2010 for a duplicate or a simulated reject."""
        if req.client_id is not None and req.client_id in self.by_client:
            known = self.by_client[req.client_id]
            raise OrderError(-2010, f"Duplicate order sent: newClientOrderId {req.client_id!r} is already order "
                                    f"{known.order_id} ({known.status}).")
        c, rng = self.config, self._rng
        if c.reject_prob and rng.random() < c.reject_prob:
            raise OrderError(-2010, f"Order rejected by the exchange: newClientOrderId {req.client_id!r} "
                                    f"(simulated venue reject, OrderConfig.reject_prob={c.reject_prob}).")
        latency_ms = max(0.0, rng.normal(c.latency_ms, c.latency_jitter_ms)) if c.latency_jitter_ms else c.latency_ms
        n = 1
        if c.max_parts > 1 and rng.random() < c.partial_fill_prob:
            n = int(rng.integers(2, c.max_parts + 1))
        fractions = rng.dirichlet(np.ones(n)) if n > 1 else np.ones(1)
        slips = [max(0.0, rng.normal(c.slippage_bps, c.slippage_std_bps)) for _ in range(n)]
        filled = float(rng.uniform(0.1, 0.9)) if c.expire_prob and rng.random() < c.expire_prob else 1.0
        self._accepted += 1
        order_id = len(self.by_id) + 1
        order = ExchangeOrder(order_id, self._accepted, req, req.client_id or f"replay-{order_id}", now_ms,
                              latency_ms / 1e3, list(zip(map(float, fractions), slips)), filled)
        self.by_id[order_id] = order
        self.by_client[order.client_id] = order
        self._open += 1
        return order

    def execute(self, order: ExchangeOrder, last_price: float, now_ms: int) -> None:
        """Fill ``order`` around ``last_price`` by its plan; FILLED, or EXPIRED with what did fill."""
        req, c = order.request, self.config
        sign = 1 if req.side == "BUY" else -1
        tick = 10.0 ** -self.decimals
        total = int(req.qty * order.filled_frac) if order.filled_frac < 1.0 else req.qty
        left = total
        for i, (frac, slip) in enumerate(order.parts):
            units = left if i == len(order.parts) - 1 else min(left, int(total * frac))
            if units <= 0:
                continue
            raw = last_price * (1.0 + sign * slip / 1e4)
            # the tick against the taker: a buy never executes below, a sell never above, the slipped price
            price = (math.ceil(raw / tick - 1e-9) if sign > 0 else math.floor(raw / tick + 1e-9)) * tick
            price = round(max(price, tick), self.decimals)
            if req.price is not None and (price > req.price if sign > 0 else price < req.price):
                break  # IOC: the rest would trade through the limit
            qty = units / QTY_SCALE
            value = qty * price
            self._fill(order, units, price, value, c.fee_rate)
            left -= units
        order.status = "FILLED" if order.executed == req.qty else "EXPIRED"
        order.update_ms = now_ms
        self._open -= 1
        if order.status == "FILLED":
            self.counters.filled += 1
        else:
            self.counters.expired += 1

    def _fill(self, order: ExchangeOrder, units: int, price: float, value: float, fee_rate: float) -> None:
        order.fills.append({"price": f"{price:.8f}", "qty": _qty(units), "quoteQty": f"{value:.8f}",
                            "commission": f"{value * fee_rate:.8f}", "commissionAsset": quote_asset(self.symbol),
                            "tradeId": self._next_trade})
        self._next_trade += 1
        order.executed += units
        order.quote += value

    def find(self, order_id: str | None, client_id: str | None) -> ExchangeOrder:
        """The order by ``orderId`` or ``origClientOrderId``; -1102 if neither is given, -2013 if unknown."""
        if order_id:
            try:
                order = self.by_id.get(int(order_id))
            except ValueError:
                raise OrderError(-1100, f"Illegal characters found in parameter 'orderId'; legal range is "
                                        f"'^[0-9]{{1,20}}$' (got {order_id!r}).") from None
            if order is None:
                raise OrderError(-2013, f"Order does not exist: orderId {order_id!r}.")
            return order
        if client_id:
            if client_id not in self.by_client:
                raise OrderError(-2013, f"Order does not exist: origClientOrderId {client_id!r}.")
            return self.by_client[client_id]
        raise OrderError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null "
                                f"(got origClientOrderId={client_id!r}, orderId={order_id!r}).")

    def status(self) -> dict[str, Any]:
        """Counters, orders still travelling, and the execution config."""
        return {**asdict(self.counters), "open": self._open, "config": asdict(self.config)}


def quote_asset(symbol: str) -> str:
    """The quote asset of a spot symbol (``BTCUSDT`` → ``USDT``), which commissions are charged in."""
    for q in ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "EUR", "BTC", "ETH", "BNB"):
        if symbol.endswith(q) and len(symbol) > len(q):
            return q
    return symbol[-3:]


# --------------------------------------------------------------------------- HTTP handlers
class _OrderApi(tornado.web.RequestHandler):
    """Shared by the order handlers: ``exchange`` is the :class:`~spark_research.streams.replay.ReplayExchange`."""

    def initialize(self, exchange) -> None:
        self.exchange = exchange
        self.desk: OrderDesk = exchange.desk

    def reply(self, obj: object) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(orjson.dumps(obj))

    def error(self, exc: OrderError) -> None:
        self.set_status(400)
        self.reply({"code": exc.code, "msg": exc.msg})

    def arg(self, name: str) -> str | None:
        # query string and form body alike, as Binance reads them
        return self.get_argument(name, None)

    def check_symbol(self) -> None:
        sym = _mandatory("symbol", self.arg("symbol")).upper()
        if sym != self.exchange.symbol:
            raise OrderError(-1121, f"Invalid symbol: parameter 'symbol' = {sym!r} "
                                    f"(this exchange trades {self.exchange.symbol}).")


class _OrderHandler(_OrderApi):
    async def post(self) -> None:
        ex, desk = self.exchange, self.desk
        desk.counters.received += 1
        try:
            req = parse_new_order(self.arg, ex.symbol, ex.decimals)
            order = desk.accept(req, _now_ms())
        except OrderError as exc:
            desk.counters.rejected += 1
            return self.error(exc)
        if order.latency_s > 0:
            await asyncio.sleep(order.latency_s)  # the tape keeps publishing meanwhile
        desk.execute(order, ex.last_price(), _now_ms())
        faults = ex.faults
        if faults.order_stall_every and order.seq % faults.order_stall_every == 0:
            desk.counters.stalled += 1
            await asyncio.sleep(faults.order_stall_ms / 1000.0)
        if faults.order_drop_every and order.seq % faults.order_drop_every == 0:
            desk.counters.dropped += 1
            self.set_status(444, "connection dropped (order fault)")  # what the access log shows
            self.request.connection.stream.close()  # executed, but the client never hears of it
            return
        if self.request.connection.stream.closed():  # the client gave up while we stalled
            return
        self.reply(order.response())

    def get(self) -> None:
        self.desk.counters.queries += 1
        try:
            self.check_symbol()
            order = self.desk.find(self.arg("orderId"), self.arg("origClientOrderId"))
        except OrderError as exc:
            return self.error(exc)
        self.reply(order.query())


class _MyTradesHandler(_OrderApi):
    def get(self) -> None:
        self.desk.counters.queries += 1
        try:
            self.check_symbol()
            order_id = self.arg("orderId")
            if order_id:
                orders = [self.desk.find(order_id, None)]
            else:
                orders = list(self.desk.by_id.values())
        except OrderError as exc:
            return self.error(exc)
        self.reply([t for o in orders for t in o.trades()][-1000:])


class _ExchangeInfoHandler(_OrderApi):
    """``GET /api/v3/exchangeInfo``: the symbol this exchange trades with its tick and lot filters, in
    Binance's shape (what ccxt's ``load_markets`` reads before its first order)."""

    def get(self) -> None:
        ex = self.exchange
        quote = quote_asset(ex.symbol)
        tick = f"{10.0 ** -ex.decimals:.8f}"
        self.reply({"timezone": "UTC", "serverTime": _now_ms(), "rateLimits": [], "exchangeFilters": [], "symbols": [{
            "symbol": ex.symbol, "status": "TRADING", "baseAsset": ex.symbol[: -len(quote)], "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False,
            "ocoAllowed": False, "quoteOrderQtyMarketAllowed": False, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "10000000.00000000",
                         "tickSize": tick},
                        {"filterType": "LOT_SIZE", "minQty": _qty(1), "maxQty": "90000000.00000000",
                         "stepSize": _qty(1)}],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"]}]})


def order_routes(exchange) -> list[tuple]:
    """The order entry routes of ``exchange`` (a :class:`~spark_research.streams.replay.ReplayExchange`)."""
    return [(r"/api/v3/order", _OrderHandler, {"exchange": exchange}),
            (r"/api/v3/myTrades", _MyTradesHandler, {"exchange": exchange}),
            (r"/api/v3/exchangeInfo", _ExchangeInfoHandler, {"exchange": exchange})]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000

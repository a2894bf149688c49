"""Kraken spot WebSocket v2 (``wss://ws.kraken.com/v2``): ``trade``, ``book`` with its CRC32 checksum.

Wire format (docs.kraken.com, WebSocket v2):

* subscribe ``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10,
  "snapshot":true},"req_id":3}`` → ``{"method":"subscribe","result":{...},"success":true,"req_id":3,
  "time_in":...,"time_out":...}``; ``{"method":"ping","req_id":n}`` → ``{"method":"pong",...}``;
  the venue sends ``{"channel":"heartbeat"}`` every second and a ``status`` frame on connect.
* ``instrument`` snapshot: ``price_precision`` / ``qty_precision`` per pair, needed for the checksum
  because v2 sends prices and quantities as JSON *numbers*.
* ``trade``: ``{"channel":"trade","type":"update","data":[{"symbol","side","price","qty","ord_type",
  "trade_id","timestamp"}]}`` — ``trade_id`` is an integer per pair, ``timestamp`` RFC 3339 (µs),
  ``side`` the taker side.
* ``book``: ``type`` ``snapshot``/``update``, ``data[0]`` with ``bids``/``asks`` lists of
  ``{"price","qty"}`` (qty 0 removes a level), ``checksum`` and (updates) ``timestamp``. The client
  truncates to the subscribed depth after each update (no removal is sent for a level pushed out).
* Checksum: top 10 asks (low → high) then top 10 bids (high → low); each price and qty formatted
  with the pair's precision, ``.`` removed, leading zeros stripped, concatenated; CRC32 (unsigned).
* REST backfill: ``GET /0/public/Trades?pair=BTCUSD&since=<ns>&count=1000`` →
  ``{"error":[],"result":{"<pair>":[[price, volume, time_s, "b"/"s", "m"/"l", misc, trade_id]],
  "last":"<ns>"}}`` (time in float seconds). No book REST is needed: a resubscribe gives a snapshot.

Example::

    >>> k = KrakenProtocol(precisions={"BTC/USD": (1, 8)})
    >>> f = k.parse(b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",'
    ...             b'"price":30000.1,"qty":0.5,"ord_type":"market","trade_id":7,'
    ...             b'"timestamp":"2023-09-25T07:48:36.925533Z"}]}')
    >>> (f.trades[0].symbol, f.trades[0].id, f.trades[0].side)
    ('BTCUSD', 7, 'sell')
"""
from __future__ import annotations

import itertools
import zlib
from urllib.parse import urlencode

import orjson

from spark_research.streams.adapters import MalformedMessage, Trade, TradeBatch
from spark_research.streams.timeunits import UnitGuard, rfc3339_us, us_to_rfc3339
from spark_research.streams.venues.base import (
    BookMsg,
    CONTROL,
    Frame,
    HttpGet,
    VenueBook,
    VenueProtocol,
    by_symbol,
    canonical,
    frame_trades,
    id_column,
    malformed_guard,
    positive,
    positive_column,
    rfc3339_column,
    side_column,
    trade_id,
)

DEPTH = 10
QTY_PRECISION = 8
_BUYER_MAKER = {"buy": False, "sell": True}


def _strip(s: str) -> str:
    return s.replace(".", "").lstrip("0")


def kraken_checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """CRC32 of the top 10 asks (low → high) and bids (high → low), as formatted strings.

    Example (Kraken's documented step: ``45285.2``/``0.00100000`` → ``452852100000``)::

        >>> kraken_checksum([("45285.2", "0.00100000")], []) == zlib.crc32(b"452852100000")
        True
    """
    text = "".join(_strip(p) + _strip(q) for p, q in asks[:10]) + "".join(_strip(p) + _strip(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


class KrakenProtocol(VenueProtocol):
    """Client side of Kraken WebSocket v2. ``precisions``: ``{"BTC/USD": (price, qty)}`` known up front."""

    name = "kraken"
    ws_path = "/v2"
    depth = DEPTH
    ping_interval_s = 10.0
    has_checksum = True

    def __init__(self, precisions: dict[str, tuple[int, int]] | None = None):
        super().__init__()
        self.precisions: dict[str, tuple[int, int]] = {canonical(k): v for k, v in (precisions or {}).items()}
        self._req = itertools.count(1)
        self.rest_guard = UnitGuard(self.name, "rest.time", "s")

    def native_of(self, base: str, quote: str) -> str:
        return f"{base}/{quote}"

    def ping_message(self) -> str:
        return orjson.dumps({"method": "ping", "req_id": next(self._req)}).decode()

    def _sub(self, method: str, params: dict) -> str:
        return orjson.dumps({"method": method, "params": params, "req_id": next(self._req)}).decode()

    def subscribe_messages(self, natives: list[str], depth: bool = True) -> list[str]:
        out = [self._sub("subscribe", {"channel": "instrument", "snapshot": True}),
               self._sub("subscribe", {"channel": "trade", "symbol": natives, "snapshot": False})]
        if depth:
            out.append(self._sub("subscribe", {"channel": "book", "symbol": natives, "depth": DEPTH, "snapshot": True}))
        return out

    def book_resubscribe_messages(self, native: str) -> list[str]:
        # the checksum needs the pair's precision: ask for the instrument again if it never came
        again = [] if canonical(native) in self.precisions else [
            self._sub("subscribe", {"channel": "instrument", "snapshot": True})]
        return again + [self._sub("unsubscribe", {"channel": "book", "symbol": [native], "depth": DEPTH}),
                self._sub("subscribe", {"channel": "book", "symbol": [native], "depth": DEPTH, "snapshot": True})]

    @malformed_guard
    def parse(self, raw: bytes | str) -> Frame:
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        if type(m) is not dict:
            raise MalformedMessage("schema", f"frame is a {type(m).__name__}, expected an object")
        ch = m.get("channel")
        if ch == "trade":
            trades, batches = frame_trades(m["data"], _trade_columns, _trades_one_by_one)
            return Frame(trades, [], None, None, batches)
        if ch == "book":
            snap = m["type"] == "snapshot"
            books = []
            for d in m["data"]:
                sym = canonical(d["symbol"])
                pp, qp = self.precisions.get(sym, (None, None))
                ev = rfc3339_us(d["timestamp"]) if "timestamp" in d else 0
                books.append(BookMsg(sym, snap, _levels(d["bids"], pp, qp, "bids"), _levels(d["asks"], pp, qp, "asks"),
                                     None, None, int(d["checksum"]), ev))
            return Frame([], books)
        if ch == "instrument":
            for p in m["data"].get("pairs", ()):
                self.precisions[canonical(p["symbol"])] = (int(p["price_precision"]), int(p["qty_precision"]))
            return Frame([], [], None, "instrument")
        if ch in ("heartbeat", "status"):
            return Frame([], [], None, ch)
        method = m.get("method")
        if method == "pong":
            return Frame([], [], None, "pong")
        if method in ("subscribe", "unsubscribe"):
            if m.get("success") is False:
                raise MalformedMessage("rejected", f"{method} failed: {m.get('error')!r}")
            return Frame([], [], None, "subscribed")
        if ch is not None or method is not None:
            return CONTROL
        raise MalformedMessage("schema", f"no 'channel' or 'method' in {sorted(m)[:6]}")

    def checksum(self, book: VenueBook) -> int | None:
        pp, qp = self.precisions.get(book.symbol, (None, None))
        if pp is None:
            return None  # precision unknown: the instrument snapshot has not arrived
        bids, asks = book.top(DEPTH)
        return kraken_checksum([(f"{p:.{pp}f}", f"{book.asks[p]:.{qp}f}") for p in asks],
                               [(f"{p:.{pp}f}", f"{book.bids[p]:.{qp}f}") for p in bids])

    # ----------------------------------------------------------------- REST
    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int, since_us: int | None = None) -> str:
        q = {"pair": symbol, "count": min(limit, 1000)}
        if since_us is not None:
            q["since"] = str(max(0, since_us - 1) * 1000)  # nanoseconds; exclusive, so one µs earlier
        return f"{rest_base.rstrip('/')}/0/public/Trades?{urlencode(q)}"

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        m = orjson.loads(body)
        if m.get("error"):
            raise ValueError(f"kraken Trades error: {m['error']!r}")
        res = m["result"]
        rows = next(v for k, v in res.items() if k != "last")
        g = self.rest_guard
        return sorted((Trade(symbol, int(r[6]), positive(r[0], "price"), positive(r[1], "volume"), g.to_us(r[2]),
                             g.to_us(r[2]), r[3] == "s") for r in rows), key=lambda t: t.id)

    async def fetch_trades(self, get: HttpGet, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until=None) -> list[Trade]:
        rows = self.parse_trades_rest(await get(self.trades_from_url(rest_base, symbol, from_id, limit, since_us)),
                                      symbol)
        return [t for t in rows if t.id >= from_id]


def _trade_columns(data: list) -> list[TradeBatch] | None:
    ids = id_column([d["trade_id"] for d in data])
    px = positive_column([d["price"] for d in data])
    qty = positive_column([d["qty"] for d in data])
    bm = side_column([d["side"] for d in data], _BUYER_MAKER)
    if ids is None or px is None or qty is None:
        return None
    return by_symbol([d["symbol"] for d in data], ids, px, qty, rfc3339_column([d["timestamp"] for d in data]), bm)


def _trades_one_by_one(data: list) -> list[Trade]:
    out = []
    for d in data:
        sym = canonical(d["symbol"])
        t = rfc3339_us(d["timestamp"])
        out.append(Trade(sym, trade_id(d["trade_id"], "trade_id"), positive(d["price"], "price"),
                         positive(d["qty"], "qty"), t, t, _side(d["side"]) == "sell"))
    return out


def _side(s: str) -> str:
    if s not in ("buy", "sell"):
        raise MalformedMessage("invalid", f"field 'side' = {s!r} must be 'buy' or 'sell'")
    return s


def _levels(raw: list, pp: int | None, qp: int | None, field: str) -> tuple:
    out = []
    for lvl in raw:
        p, q = lvl["price"], lvl["qty"]
        p, q = float(p), float(q)
        if not (0.0 < p < float("inf") and 0.0 <= q < float("inf")):
            raise MalformedMessage("invalid", f"field {field!r} level {lvl!r}: price must be > 0, qty >= 0")
        out.append((p, q, f"{p:.{pp}f}" if pp is not None else repr(p), f"{q:.{qp}f}" if qp is not None else repr(q)))
    return tuple(out)


# ===================================================================== replay side
class KrakenWire:
    """What the replay exchange sends as Kraken v2 (see :mod:`spark_research.streams.venues.replay`)."""

    name = "kraken"
    ws_path = "/v2"
    depth = DEPTH
    heartbeat_s = 1.0
    qty_decimals = QTY_PRECISION

    def __init__(self, replay):
        self.replay = replay

    def on_connect(self, conn) -> None:
        self.replay.send(conn, orjson.dumps({"channel": "status", "type": "update", "data": [{
            "version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": conn.id}]}))

    def on_client(self, conn, raw) -> None:
        try:
            m = orjson.loads(raw)
            method = m["method"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self.replay.send(conn, orjson.dumps({"error": "Malformed request", "method": None,
                                                        "success": False}))
        req = m.get("req_id")
        now = us_to_rfc3339(self.replay.now_us())
        if method == "ping":
            return self.replay.send(conn, orjson.dumps({"method": "pong", "req_id": req, "time_in": now, "time_out": now}))
        params = m.get("params") or {}
        ch = params.get("channel")
        syms = params.get("symbol") or []
        unknown = [s for s in syms if s not in self.replay.by_native]
        if method not in ("subscribe", "unsubscribe") or ch not in ("trade", "book", "instrument") or unknown:
            return self.replay.send(conn, orjson.dumps({
                "error": f"Currency pair not supported {unknown[0]}" if unknown else "Event(s) not found",
                "method": method, "req_id": req, "success": False, "time_in": now, "time_out": now}))
        for s in syms or [None]:
            key = ("book" if ch == "book" else ch, s)
            result = {"channel": ch, "snapshot": params.get("snapshot", True)}
            if s is not None:
                result["symbol"] = s
            if ch == "book":
                result["depth"] = params.get("depth", DEPTH)
            self.replay.send(conn, orjson.dumps({"method": method, "result": result, "success": True,
                                                 "time_in": now, "time_out": now, "req_id": req}))
            if method == "unsubscribe":
                conn.subs.discard(key)
                continue
            conn.subs.add(key)
            if ch == "instrument":
                self.replay.send(conn, self._instrument())
            elif ch == "book" and params.get("snapshot", True):
                self.replay.send(conn, self.book_frame(conn, self.replay.by_native[s], *self.replay.view(s), True))

    def _instrument(self) -> bytes:
        pairs = [{"symbol": mk.native, "base": mk.native.split("/")[0], "quote": mk.native.split("/")[1],
                  "status": "online", "qty_precision": QTY_PRECISION, "qty_increment": 10.0 ** -QTY_PRECISION,
                  "price_precision": mk.decimals, "price_increment": 10.0 ** -mk.decimals, "cost_precision": 5,
                  "marginable": False, "has_index": True, "qty_min": 0.0001, "tick_size": 10.0 ** -mk.decimals}
                 for mk in self.replay.markets]
        return orjson.dumps({"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": pairs}})

    def qty(self, q: float) -> str:
        return f"{q:.{QTY_PRECISION}f}"

    def trade_frame(self, conn, mk, start: int, stop: int) -> bytes:
        rows = b",".join(
            b'{"symbol":"%s","side":"%s","price":%s,"qty":%s,"ord_type":"market","trade_id":%d,"timestamp":"%s"}' % (
                mk.native.encode(), b"sell" if mk.maker[i] else b"buy", mk.prices[i].encode(),
                self.qty(float(mk.qtys[i])).encode(), mk.ids[i], us_to_rfc3339(int(mk.times_us[i])).encode())
            for i in range(start, stop))
        return b'{"channel":"trade","type":"update","data":[' + rows + b"]}"

    def checksum(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
        return kraken_checksum(asks, bids)

    def book_frame(self, conn, mk, bids, asks, snapshot: bool, checksum: int | None = None) -> bytes:
        """``bids``/``asks``: ``(price, qty)`` strings; for a snapshot the venue's top-``DEPTH`` view."""
        if checksum is None:
            checksum = self.checksum(*self.replay.view(mk.native))
        lv = lambda side: b",".join(b'{"price":%s,"qty":%s}' % (p.encode(), q.encode()) for p, q in side)  # noqa: E731
        ts = b"" if snapshot else b',"timestamp":"%s"' % us_to_rfc3339(self.replay.now_us()).encode()
        return b'{"channel":"book","type":"%s","data":[{"symbol":"%s","bids":[%s],"asks":[%s],"checksum":%d%s}]}' % (
            b"snapshot" if snapshot else b"update", mk.native.encode(), lv(bids), lv(asks), checksum, ts)

    def heartbeat(self, conn) -> bytes | None:
        return b'{"channel":"heartbeat"}' if conn.subs else None

    def rest_trades(self, args: dict) -> tuple[int, bytes]:
        pair = args.get("pair", "")
        mk = self.replay.by_canonical.get(canonical(pair))
        if mk is None:
            return 200, orjson.dumps({"error": [f"EQuery:Unknown asset pair {pair!r}"]})
        try:
            since = int(args.get("since", "0"))
            count = int(args.get("count", "1000"))
        except ValueError as exc:
            return 200, orjson.dumps({"error": [f"EGeneral:Invalid arguments: {exc}"]})
        count = max(1, min(count, 1000))
        rows, last = [], since
        for i in mk.published_after_us(since // 1000 if since else -1, count):
            t_us = int(mk.times_us[i])
            rows.append(b'["%s","%s",%d.%06d,"%s","m","",%d]' % (
                mk.prices[i].encode(), self.qty(float(mk.qtys[i])).encode(), t_us // 1_000_000, t_us % 1_000_000,
                b"s" if mk.maker[i] else b"b", mk.ids[i]))
            last = t_us * 1000
        return 200, b'{"error":[],"result":{"%s":[%s],"last":"%d"}}' % (
            ("X" + mk.native.replace("/", "Z")).encode(), b",".join(rows), last)

    def routes(self) -> list[tuple[str, str]]:
        return [(r"/0/public/Trades", "rest_trades")]

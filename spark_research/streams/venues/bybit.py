"""Bybit v5 public spot WebSocket (``wss://stream.bybit.com/v5/public/spot``): ``publicTrade``, ``orderbook.50``.

Wire format (bybit-exchange.github.io/docs/v5/websocket/public):

* subscribe ``{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}``
  (spot: at most 10 args per request) → ``{"success":true,"ret_msg":"subscribe","conn_id":"...",
  "req_id":"1","op":"subscribe"}``. Keep-alive ``{"req_id":"..","op":"ping"}`` every 20 s →
  ``{"success":true,"ret_msg":"pong","conn_id":"...","req_id":"..","op":"ping"}``.
* ``publicTrade.<S>``: ``{"topic","type":"snapshot","ts","data":[{"T","s","S":"Buy"|"Sell","v","p","L",
  "i","BT","seq"}]}`` — ``T``/``ts`` in milliseconds, ``S`` the taker side, ``i`` the trade id (a
  numeric string on spot).
* ``orderbook.50.<S>``: ``{"topic","type":"snapshot"|"delta","ts","data":{"s","b":[[p,q]],"a":[[p,q]],
  "u","seq"},"cts"}``; qty ``"0"`` removes a level. ``u`` grows by one per message: a delta whose
  ``u`` is not the last + 1 means a lost message (resubscribe for a snapshot); ``u`` = 1 is a
  snapshot after a service restart and resets the book. No checksum.
* REST backfill: ``GET /v5/market/recent-trade?category=spot&symbol=&limit=60`` (spot keeps only
  the last 60 trades: a longer outage on Bybit spot cannot be fully backfilled; the gap is logged).

Example::

    >>> b = BybitProtocol()
    >>> f = b.parse(b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1672304484978,"data":{"s":"BTCUSDT",'
    ...             b'"b":[["16493.50","0"]],"a":[["16611.00","0.029"]],"u":18521288,"seq":7961638724},'
    ...             b'"cts":1672304484976}')
    >>> (f.books[0].seq, f.books[0].bids[0][:2])
    (18521288, (16493.5, 0.0))
"""
from __future__ import annotations

import itertools
from urllib.parse import urlencode

import orjson

from spark_research.streams.adapters import MalformedMessage, Trade, TradeBatch
from spark_research.streams.timeunits import UnitGuard
from spark_research.streams.venues.base import (
    BookMsg,
    Frame,
    HttpGet,
    VenueBook,
    VenueProtocol,
    by_symbol,
    canonical,
    frame_trades,
    id_column,
    level,
    malformed_guard,
    positive,
    positive_column,
    side_column,
    time_column,
    trade_id,
)

DEPTH = 50
REST_LIMIT = 60
ARGS_PER_REQUEST = 10
_BUYER_MAKER = {"Buy": False, "Sell": True}


class BybitProtocol(VenueProtocol):
    """Client side of Bybit v5 public spot market data."""

    name = "bybit"
    ws_path = "/v5/public/spot"
    depth = DEPTH
    ping_interval_s = 20.0
    rest_limit = REST_LIMIT

    def __init__(self) -> None:
        super().__init__()
        self._req = itertools.count(1)
        self.units = {f: UnitGuard(self.name, f, "ms") for f in ("publicTrade.T", "orderbook.ts", "rest.time")}

    def native_of(self, base: str, quote: str) -> str:
        return f"{base}{quote}"

    def ping_message(self) -> str:
        return orjson.dumps({"req_id": str(next(self._req)), "op": "ping"}).decode()

    def _op(self, op: str, args: list[str]) -> list[str]:
        return [orjson.dumps({"req_id": str(next(self._req)), "op": op, "args": args[i:i + ARGS_PER_REQUEST]}).decode()
                for i in range(0, len(args), ARGS_PER_REQUEST)]

    def subscribe_messages(self, natives: list[str], depth: bool = True) -> list[str]:
        args = [f"publicTrade.{s}" for s in natives]
        if depth:
            args += [f"orderbook.{DEPTH}.{s}" for s in natives]
        return self._op("subscribe", args)

    def book_resubscribe_messages(self, native: str) -> list[str]:
        return self._op("unsubscribe", [f"orderbook.{DEPTH}.{native}"]) + self._op("subscribe", [f"orderbook.{DEPTH}.{native}"])

    @malformed_guard
    def parse(self, raw: bytes | str) -> Frame:
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        if type(m) is not dict:
            raise MalformedMessage("schema", f"frame is a {type(m).__name__}, expected an object")
        topic = m.get("topic")
        if topic is not None:
            if topic.startswith("publicTrade."):
                trades, batches = frame_trades(m["data"], self._trade_columns, self._trades_one_by_one)
                return Frame(trades, [], None, None, batches)
            if topic.startswith("orderbook."):
                d = m["data"]
                u = int(d["u"])
                snap = m["type"] == "snapshot" or u == 1  # u == 1: the venue restarted, this is a snapshot
                return Frame([], [BookMsg(canonical(d["s"]), snap, tuple(level(b[0], b[1], "b") for b in d["b"]),
                                          tuple(level(a[0], a[1], "a") for a in d["a"]), u, None, None,
                                          self.units["orderbook.ts"].to_us(m["ts"]))])
            raise MalformedMessage("schema", f"unexpected topic {topic!r}")
        op = m.get("op")
        if op is not None:
            if m.get("success") is False:
                raise MalformedMessage("rejected", f"{op} failed: {m.get('ret_msg')!r}")
            return Frame([], [], None, "pong" if op in ("ping", "pong") else "subscribed")
        raise MalformedMessage("schema", f"no 'topic' or 'op' in {sorted(m)[:6]}")

    def _trade_columns(self, data: list) -> list[TradeBatch] | None:
        ids = id_column([d["i"] for d in data])
        px = positive_column([d["p"] for d in data])
        qty = positive_column([d["v"] for d in data])
        bm = side_column([d["S"] for d in data], _BUYER_MAKER)
        ts = [d["T"] for d in data]
        if ids is None or px is None or qty is None or set(map(type, ts)) != {int}:
            return None
        return by_symbol([d["s"] for d in data], ids, px, qty, time_column(self.units["publicTrade.T"], ts), bm)

    def _trades_one_by_one(self, data: list) -> list[Trade]:
        g = self.units["publicTrade.T"]
        out = []
        for d in data:
            sym, tid, px, qty = canonical(d["s"]), trade_id(d["i"], "i"), positive(d["p"], "p"), positive(d["v"], "v")
            t = g.to_us(d["T"])
            out.append(Trade(sym, tid, px, qty, t, t, _side(d["S"]) == "Sell"))
        return out

    def book_check(self, book: VenueBook, msg: BookMsg) -> str:
        last = book.last_update_id
        if msg.seq <= last:
            return "stale"
        return "apply" if msg.seq == last + 1 else "gap"

    # ----------------------------------------------------------------- REST
    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int) -> str:
        q = {"category": "spot", "symbol": self.natives.get(symbol, symbol), "limit": min(limit, REST_LIMIT)}
        return f"{rest_base.rstrip('/')}/v5/market/recent-trade?{urlencode(q)}"

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        m = orjson.loads(body)
        if m.get("retCode") != 0:
            raise ValueError(f"bybit recent-trade error {m.get('retCode')!r}: {m.get('retMsg')!r}")
        g = self.units["rest.time"]
        return sorted((Trade(symbol, int(d["execId"]), positive(d["price"], "price"), positive(d["size"], "size"),
                             g.to_us(int(d["time"])), g.to_us(int(d["time"])), d["side"] == "Sell")
                       for d in m["result"]["list"]), key=lambda t: t.id)

    async def fetch_trades(self, get: HttpGet, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until=None) -> list[Trade]:
        rows = self.parse_trades_rest(await get(self.trades_from_url(rest_base, symbol, from_id, REST_LIMIT)), symbol)
        return [t for t in rows if t.id >= from_id]


def _side(s: str) -> str:
    if s not in ("Buy", "Sell"):
        raise MalformedMessage("invalid", f"field 'S' = {s!r} must be 'Buy' or 'Sell'")
    return s


# ===================================================================== replay side
class BybitWire:
    """What the replay exchange sends as Bybit v5 public spot."""

    name = "bybit"
    ws_path = "/v5/public/spot"
    depth = DEPTH
    heartbeat_s = None

    def __init__(self, replay):
        self.replay = replay

    def on_connect(self, conn) -> None:
        pass

    def on_client(self, conn, raw) -> None:
        try:
            m = orjson.loads(raw)
            op = m["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self.replay.send(conn, orjson.dumps({"success": False, "ret_msg": "error:request not json",
                                                        "conn_id": conn.id, "op": ""}))
        req = m.get("req_id", "")
        if op == "ping":
            return self.replay.send(conn, orjson.dumps({"success": True, "ret_msg": "pong", "conn_id": conn.id,
                                                        "req_id": req, "op": "ping"}))
        args = m.get("args") or []
        parsed = []
        for a in args:
            parts = a.split(".")
            if parts[0] == "publicTrade" and len(parts) == 2 and parts[1] in self.replay.by_native:
                parsed.append(("trade", parts[1]))
            elif parts[0] == "orderbook" and len(parts) == 3 and parts[1] == str(DEPTH) and parts[2] in self.replay.by_native:
                parsed.append(("book", parts[2]))
            else:
                parsed = None
                break
        if op not in ("subscribe", "unsubscribe") or parsed is None or len(args) > ARGS_PER_REQUEST:
            return self.replay.send(conn, orjson.dumps({"success": False, "ret_msg": f"error:handler not found or "
                                                        f"bad args {args!r:.100}", "conn_id": conn.id, "req_id": req,
                                                        "op": op}))
        self.replay.send(conn, orjson.dumps({"success": True, "ret_msg": op if op == "subscribe" else "", "conn_id": conn.id,
                                             "req_id": req, "op": op}))
        for key in parsed:
            if op == "unsubscribe":
                conn.subs.discard(key)
                continue
            conn.subs.add(key)
            if key[0] == "book":
                mk = self.replay.by_native[key[1]]
                self.replay.send(conn, self.book_frame(conn, mk, *self.replay.view(key[1]), True))

    def trade_frame(self, conn, mk, start: int, stop: int) -> bytes:
        ts = self.replay.now_us() // 1000
        rows = b",".join(b'{"i":"%d","T":%d,"p":"%s","v":"%s","S":"%s","s":"%s","BT":false,"seq":%d}' % (
            mk.ids[i], int(mk.times_us[i]) // 1000, mk.prices[i].encode(), mk.qtys[i].encode(),
            b"Sell" if mk.maker[i] else b"Buy", mk.native.encode(), 1_000_000 + mk.ids[i]) for i in range(start, stop))
        return b'{"topic":"publicTrade.%s","ts":%d,"type":"snapshot","data":[%s]}' % (mk.native.encode(), ts, rows)

    def checksum(self, bids, asks) -> None:
        return None

    def book_frame(self, conn, mk, bids, asks, snapshot: bool, checksum: int | None = None) -> bytes:
        lv = lambda side: b",".join(b'["%s","%s"]' % (p.encode(), q.encode()) for p, q in side)  # noqa: E731
        ts = self.replay.now_us() // 1000
        return (b'{"topic":"orderbook.%d.%s","type":"%s","ts":%d,"data":{"s":"%s","b":[%s],"a":[%s],"u":%d,"seq":%d},'
                b'"cts":%d}' % (DEPTH, mk.native.encode(), b"snapshot" if snapshot else b"delta", ts, mk.native.encode(),
                                lv(bids), lv(asks), mk.u, mk.seq, ts))

    def heartbeat(self, conn) -> bytes | None:
        return None

    def rest_trades(self, args: dict) -> tuple[int, bytes]:
        mk = self.replay.by_native.get(args.get("symbol", ""))
        if args.get("category") != "spot" or mk is None:
            return 200, orjson.dumps({"retCode": 10001, "retMsg": f"params error: symbol {args.get('symbol')!r} / "
                                      f"category {args.get('category')!r}", "result": {}, "retExtInfo": {}, "time": 0})
        try:
            limit = max(1, min(int(args.get("limit", "60")), REST_LIMIT))
        except ValueError as exc:
            return 200, orjson.dumps({"retCode": 10001, "retMsg": f"params error: limit {exc}", "result": {}})
        idx = mk.published_before_id(None, limit)  # the most recent, newest first
        rows = [{"execId": str(int(mk.ids[i])), "symbol": mk.native, "price": mk.prices[i], "size": mk.qtys[i],
                 "side": "Sell" if mk.maker[i] else "Buy", "time": str(int(mk.times_us[i]) // 1000),
                 "isBlockTrade": False} for i in idx]
        return 200, orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": rows},
                                  "retExtInfo": {}, "time": self.replay.now_us() // 1000})

    def routes(self) -> list[tuple[str, str]]:
        return [(r"/v5/market/recent-trade", "rest_trades")]

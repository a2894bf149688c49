"""Coinbase Advanced Trade market data (``wss://advanced-trade-ws.coinbase.com``): ``market_trades``, ``level2``.

Wire format (docs.cdp.coinbase.com, Advanced Trade WebSocket channels):

* one subscribe frame per channel: ``{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}``;
  the venue confirms with a ``subscriptions`` message. ``heartbeats`` (one per second) keeps
  quiet connections open and proves the feed is alive.
* every message: ``{"channel","client_id","timestamp","sequence_num","events":[...]}``;
  ``sequence_num`` counts the messages of the *connection* (all channels): a jump means a message
  was lost, and since any product's book may be affected every book is resubscribed (a fresh
  ``snapshot``). The level2 channel carries ``l2_data`` events ``{"type":"snapshot"|"update",
  "product_id","updates":[{"side":"bid"|"offer","event_time","price_level","new_quantity"}]}``
  (quantity 0 removes the level). No checksum.
* ``market_trades`` events ``{"type":"snapshot"|"update","trades":[{"trade_id","product_id","price",
  "size","side","time"}]}``: ``trade_id`` a numeric string per product, ``time`` RFC 3339, ``side``
  the *maker* order's side (Coinbase's long-standing convention: ``BUY`` = the buyer was the maker).
* REST backfill: ``GET /api/v3/brokerage/market/products/{product_id}/ticker?limit=&start=&end=``
  (UNIX seconds; newest first). Coinbase has no trade-id paging: the window starts at the last
  stored trade's second and ends at the first buffered one's.

Example::

    >>> c = CoinbaseProtocol()
    >>> f = c.parse(b'{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",'
    ...             b'"sequence_num":4,"events":[{"type":"update","trades":[{"trade_id":"12345","product_id":"BTC-USD",'
    ...             b'"price":"21921.7","size":"0.06","side":"BUY","time":"2023-02-09T20:19:35.342Z"}]}]}')
    >>> (f.conn_seq, f.trades[0].id, f.trades[0].side)
    (4, 12345, 'sell')
"""
from __future__ import annotations

import time
from urllib.parse import urlencode

import orjson

from spark_research.streams.adapters import MalformedMessage, Trade, TradeBatch
from spark_research.streams.timeunits import rfc3339_us, us_to_rfc3339
from spark_research.streams.venues.base import (
    BookMsg,
    Frame,
    HttpGet,
    VenueProtocol,
    by_symbol,
    canonical,
    frame_trades,
    id_column,
    level,
    malformed_guard,
    positive,
    positive_column,
    rfc3339_column,
    side_column,
    trade_id,
)

REST_LIMIT = 1000
_BUYER_MAKER = {"BUY": True, "SELL": False}  # the maker's side (see the module docstring)


class CoinbaseProtocol(VenueProtocol):
    """Client side of Coinbase Advanced Trade public market data."""

    name = "coinbase"
    ws_path = "/"
    depth = None
    ping_interval_s = None  # the heartbeats channel keeps the connection alive
    conn_sequenced = True

    def native_of(self, base: str, quote: str) -> str:
        return f"{base}-{quote}"

    def ws_url(self, ws_base: str) -> str:
        return ws_base.rstrip("/") + "/"

    def subscribe_messages(self, natives: list[str], depth: bool = True) -> list[str]:
        out = [orjson.dumps({"type": "subscribe", "channel": "heartbeats"}).decode(),
               orjson.dumps({"type": "subscribe", "product_ids": natives, "channel": "market_trades"}).decode()]
        if depth:
            out.append(orjson.dumps({"type": "subscribe", "product_ids": natives, "channel": "level2"}).decode())
        return out

    def book_resubscribe_messages(self, native: str) -> list[str]:
        return [orjson.dumps({"type": t, "product_ids": [native], "channel": "level2"}).decode()
                for t in ("unsubscribe", "subscribe")]

    @malformed_guard
    def parse(self, raw: bytes | str) -> Frame:
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        if type(m) is not dict:
            raise MalformedMessage("schema", f"frame is a {type(m).__name__}, expected an object")
        if m.get("type") == "error":
            raise MalformedMessage("rejected", f"{m.get('message')!r}")
        ch = m["channel"]
        seq = m["sequence_num"]
        if type(seq) is not int:
            raise MalformedMessage("invalid", f"field 'sequence_num' = {seq!r} must be an integer")
        if ch == "market_trades":
            events = m["events"]
            data = events[0]["trades"] if len(events) == 1 else [d for ev in events for d in ev["trades"]]
            trades, batches = frame_trades(data, _trade_columns, _trades_one_by_one)
            return Frame(trades, [], seq, None, batches)
        if ch == "l2_data":
            ev_us = rfc3339_us(m["timestamp"])
            books = []
            for ev in m["events"]:
                bids, asks = [], []
                for u in ev["updates"]:
                    side = u["side"]
                    if side == "bid":
                        bids.append(level(u["price_level"], u["new_quantity"], "bid"))
                    elif side == "offer":
                        asks.append(level(u["price_level"], u["new_quantity"], "offer"))
                    else:
                        raise MalformedMessage("invalid", f"field 'side' = {side!r} must be 'bid' or 'offer'")
                books.append(BookMsg(canonical(ev["product_id"]), ev["type"] == "snapshot", tuple(bids), tuple(asks),
                                     None, None, None, ev_us))
            return Frame([], books, seq)
        if ch in ("heartbeats", "subscriptions"):
            return Frame([], [], seq, ch)
        raise MalformedMessage("schema", f"unexpected channel {ch!r}")

    # ----------------------------------------------------------------- REST
    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int, start_s: int | None = None,
                        end_s: int | None = None) -> str:
        q: dict = {"limit": min(limit, REST_LIMIT)}
        if start_s is not None:
            q["start"] = str(start_s)
        if end_s is not None:
            q["end"] = str(end_s)
        pid = self.natives.get(symbol, symbol)
        return f"{rest_base.rstrip('/')}/api/v3/brokerage/market/products/{pid}/ticker?{urlencode(q)}"

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        m = orjson.loads(body)
        out = []
        for d in m["trades"]:
            t = rfc3339_us(d["time"])
            out.append(Trade(symbol, int(d["trade_id"]), positive(d["price"], "price"), positive(d["size"], "size"), t, t,
                             d["side"] == "BUY"))
        return sorted(out, key=lambda t: t.id)

    async def fetch_trades(self, get: HttpGet, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until=None) -> list[Trade]:
        start = since_us // 1_000_000 if since_us is not None else None
        end = until.time_us // 1_000_000 + 1 if until is not None else None
        rows = self.parse_trades_rest(await get(self.trades_from_url(rest_base, symbol, from_id, REST_LIMIT, start, end)),
                                      symbol)
        return [t for t in rows if t.id >= from_id]


def _trade_columns(data: list) -> list[TradeBatch] | None:
    ids = id_column([d["trade_id"] for d in data])
    px = positive_column([d["price"] for d in data])
    size = positive_column([d["size"] for d in data])
    bm = side_column([d["side"] for d in data], _BUYER_MAKER)
    if ids is None or px is None or size is None:
        return None
    return by_symbol([d["product_id"] for d in data], ids, px, size, rfc3339_column([d["time"] for d in data]), bm)


def _trades_one_by_one(data: list) -> list[Trade]:
    out = []
    for d in data:
        t = rfc3339_us(d["time"])
        out.append(Trade(canonical(d["product_id"]), trade_id(d["trade_id"], "trade_id"), positive(d["price"], "price"),
                         positive(d["size"], "size"), t, t, _side(d["side"]) == "BUY"))
    return out


def _side(s: str) -> str:
    if s not in ("BUY", "SELL"):
        raise MalformedMessage("invalid", f"field 'side' = {s!r} must be 'BUY' or 'SELL'")
    return s


# ===================================================================== replay side
class CoinbaseWire:
    """What the replay exchange sends as Coinbase Advanced Trade (``sequence_num`` per connection)."""

    name = "coinbase"
    ws_path = "/"
    depth = None
    heartbeat_s = 1.0

    def __init__(self, replay):
        self.replay = replay

    def _env(self, conn, channel: bytes, events: bytes) -> bytes:
        seq = conn.seq
        conn.seq += 1
        return b'{"channel":"%s","client_id":"","timestamp":"%s","sequence_num":%d,"events":[%s]}' % (
            channel, us_to_rfc3339(self.replay.now_us(), 9).encode(), seq, events)

    def on_connect(self, conn) -> None:
        conn.seq = 0
        conn.heartbeats = 0

    def on_client(self, conn, raw) -> None:
        try:
            m = orjson.loads(raw)
            typ, ch = m["type"], m["channel"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self.replay.send(conn, orjson.dumps({"type": "error", "message": "Failed to parse subscription"}))
        pids = m.get("product_ids") or []
        unknown = [p for p in pids if p not in self.replay.by_native]
        if typ not in ("subscribe", "unsubscribe") or ch not in ("level2", "market_trades", "heartbeats") or unknown:
            return self.replay.send(conn, orjson.dumps({"type": "error",
                                                        "message": f"unknown channel or product {ch!r} {unknown!r}"}))
        kind = {"level2": "book", "market_trades": "trade", "heartbeats": "heartbeat"}[ch]
        keys = [(kind, p) for p in pids] if pids else [(kind, None)]
        for key in keys:
            if typ == "unsubscribe":
                conn.subs.discard(key)
            else:
                conn.subs.add(key)
        subs: dict[str, list] = {}
        for k, p in sorted(conn.subs, key=str):
            name = {"book": "level2", "trade": "market_trades", "heartbeat": "heartbeats"}[k]
            subs.setdefault(name, []).append(p or "heartbeats")
        self.replay.send(conn, self._env(conn, b"subscriptions", orjson.dumps({"subscriptions": subs})))
        if typ == "subscribe" and kind == "book":
            for p in pids:
                self.replay.send(conn, self.book_frame(conn, self.replay.by_native[p], *self.replay.view(p), True))

    def trade_frame(self, conn, mk, start: int, stop: int) -> bytes:
        rows = b",".join(b'{"trade_id":"%d","product_id":"%s","price":"%s","size":"%s","side":"%s","time":"%s"}' % (
            mk.ids[i], mk.native.encode(), mk.prices[i].encode(), mk.qtys[i].encode(),
            b"BUY" if mk.maker[i] else b"SELL", us_to_rfc3339(int(mk.times_us[i])).encode()) for i in range(start, stop))
        return self._env(conn, b"market_trades", b'{"type":"update","trades":[%s]}' % rows)

    def checksum(self, bids, asks) -> None:
        return None

    def book_frame(self, conn, mk, bids, asks, snapshot: bool, checksum: int | None = None) -> bytes:
        et = us_to_rfc3339(self.replay.now_us()).encode()
        ups = [b'{"side":"bid","event_time":"%s","price_level":"%s","new_quantity":"%s"}' % (et, p.encode(), q.encode())
               for p, q in bids]
        ups += [b'{"side":"offer","event_time":"%s","price_level":"%s","new_quantity":"%s"}' % (et, p.encode(), q.encode())
                for p, q in asks]
        return self._env(conn, b"l2_data", b'{"type":"%s","product_id":"%s","updates":[%s]}' % (
            b"snapshot" if snapshot else b"update", mk.native.encode(), b",".join(ups)))

    def heartbeat(self, conn) -> bytes | None:
        if ("heartbeat", None) not in conn.subs:
            return None
        conn.heartbeats += 1
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        return self._env(conn, b"heartbeats", b'{"current_time":"%s.000000000 +0000 UTC m=+1.000000001",'
                                              b'"heartbeat_counter":%d}' % (now.encode(), conn.heartbeats))

    def rest_trades(self, args: dict, product_id: str) -> tuple[int, bytes]:
        mk = self.replay.by_native.get(product_id)
        if mk is None:
            return 404, orjson.dumps({"error": "NOT_FOUND", "message": f"product {product_id!r} not found"})
        try:
            limit = max(1, min(int(args.get("limit", "100")), REST_LIMIT))
            start = int(args["start"]) * 1_000_000 if "start" in args else None
            end = int(args["end"]) * 1_000_000 if "end" in args else None
        except ValueError as exc:
            return 400, orjson.dumps({"error": "INVALID_ARGUMENT", "message": f"limit/start/end: {exc}"})
        idx = mk.published_in_window(start, end, limit)  # newest first
        trades = [{"trade_id": str(int(mk.ids[i])), "product_id": mk.native, "price": mk.prices[i], "size": mk.qtys[i],
                   "time": us_to_rfc3339(int(mk.times_us[i])), "side": "BUY" if mk.maker[i] else "SELL",
                   "exchange": "coinbase"} for i in idx]
        return 200, orjson.dumps({"trades": trades, "best_bid": "", "best_ask": ""})

    def routes(self) -> list[tuple[str, str]]:
        return [(r"/api/v3/brokerage/market/products/([^/]+)/ticker", "rest_trades")]

"""OKX v5 public WebSocket (``wss://ws.okx.com:8443/ws/v5/public``): ``trades``, ``books`` with seqId and checksum.

Wire format (okx.com/docs-v5, order book trading → market data):

* subscribe ``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}`` → one
  ``{"event":"subscribe","arg":{...},"connId":"..."}`` per arg; errors
  ``{"event":"error","code":"60018","msg":"...","connId":"..."}``. Keep-alive: the client sends the
  text ``ping`` (the venue drops a connection silent for 30 s) and gets ``pong``.
* ``trades``: ``{"arg":{"channel":"trades","instId":...},"data":[{"instId","tradeId","px","sz","side",
  "ts","count","source"}]}`` — numbers as strings, ``ts`` in milliseconds, ``side`` the taker side.
* ``books``: ``{"arg":{...},"action":"snapshot"|"update","data":[{"asks":[[px,sz,"0",orders]],"bids":[...],
  "ts","checksum","prevSeqId","seqId"}]}``. An update continues the book when its ``prevSeqId``
  equals the last ``seqId`` (a snapshot has ``prevSeqId`` -1); otherwise a message was lost.
* Checksum: the best 25 bids and asks interleaved ``bid1px:bid1sz:ask1px:ask1sz:...`` (a shorter side
  simply runs out) over the strings as received, CRC32 as a *signed* 32-bit integer.
* REST backfill: ``GET /api/v5/market/history-trades?instId=&type=1&after=<tradeId>&limit=100``
  (records older than ``after``, newest first), paged backwards until the wanted id.

Example::

    >>> o = OkxProtocol()
    >>> f = o.parse(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
    ...             b'"tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897",'
    ...             b'"count":"3"}]}')
    >>> (f.trades[0].id, f.trades[0].time_us, f.trades[0].side)
    (130639474, 1630048897897000, 'buy')
"""
from __future__ import annotations

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
    crc32_signed,
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

CHECKSUM_LEVELS = 25
REST_LIMIT = 100
_BUYER_MAKER = {"buy": False, "sell": True}


def okx_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's signed CRC32 of the best 25 bids (high → low) and asks (low → high), interleaved.

    Example: ``okx_checksum([("3366.1", "7")], [("3366.8", "9")])`` is the CRC32 of ``3366.1:7:3366.8:9``.
    """
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    return crc32_signed(":".join(parts))


class OkxProtocol(VenueProtocol):
    """Client side of OKX v5 public market data."""

    name = "okx"
    ws_path = "/ws/v5/public"
    depth = None  # ``books`` is the full 400-level book
    ping_interval_s = 20.0
    has_checksum = True
    rest_limit = REST_LIMIT

    def __init__(self) -> None:
        super().__init__()
        self.units = {f: UnitGuard(self.name, f, "ms") for f in ("trades.ts", "books.ts", "rest.ts")}

    def native_of(self, base: str, quote: str) -> str:
        return f"{base}-{quote}"

    def ping_message(self) -> str:
        return "ping"

    def subscribe_messages(self, natives: list[str], depth: bool = True) -> list[str]:
        args = [{"channel": "trades", "instId": s} for s in natives]
        if depth:
            args += [{"channel": "books", "instId": s} for s in natives]
        return [orjson.dumps({"op": "subscribe", "args": args}).decode()]

    def book_resubscribe_messages(self, native: str) -> list[str]:
        arg = [{"channel": "books", "instId": native}]
        return [orjson.dumps({"op": "unsubscribe", "args": arg}).decode(),
                orjson.dumps({"op": "subscribe", "args": arg}).decode()]

    @malformed_guard
    def parse(self, raw: bytes | str) -> Frame:
        if raw == "pong" or raw == b"pong":
            return Frame([], [], None, "pong")
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        if type(m) is not dict:
            raise MalformedMessage("schema", f"frame is a {type(m).__name__}, expected an object")
        if "data" in m:
            ch = m["arg"]["channel"]
            if ch == "trades":
                trades, batches = frame_trades(m["data"], self._trade_columns, self._trades_one_by_one)
                return Frame(trades, [], None, None, batches)
            if ch == "books":
                sym = canonical(m["arg"]["instId"])
                snap = m["action"] == "snapshot"
                g = self.units["books.ts"]
                return Frame([], [BookMsg(sym, snap, tuple(level(b[0], b[1], "bids") for b in d["bids"]),
                                          tuple(level(a[0], a[1], "asks") for a in d["asks"]), int(d["seqId"]),
                                          int(d["prevSeqId"]), int(d["checksum"]), g.to_us(int(d["ts"])))
                                  for d in m["data"]])
            raise MalformedMessage("schema", f"unexpected channel {ch!r}")
        ev = m.get("event")
        if ev in ("subscribe", "unsubscribe"):
            return Frame([], [], None, "subscribed")
        if ev == "error":
            raise MalformedMessage("rejected", f"code {m.get('code')!r}: {m.get('msg')!r}")
        raise MalformedMessage("schema", f"no 'data' or 'event' in {sorted(m)[:6]}")

    def _trade_columns(self, data: list) -> list[TradeBatch] | None:
        ids = id_column([d["tradeId"] for d in data])
        px = positive_column([d["px"] for d in data])
        sz = positive_column([d["sz"] for d in data])
        bm = side_column([d["side"] for d in data], _BUYER_MAKER)
        if ids is None or px is None or sz is None:
            return None
        ts = [d["ts"] for d in data]
        return by_symbol([d["instId"] for d in data], ids, px, sz, time_column(self.units["trades.ts"], ts), bm)

    def _trades_one_by_one(self, data: list) -> list[Trade]:
        g = self.units["trades.ts"]
        out = []
        for d in data:
            sym, tid = canonical(d["instId"]), trade_id(d["tradeId"], "tradeId")
            px, sz = positive(d["px"], "px"), positive(d["sz"], "sz")
            t = g.to_us(int(d["ts"]))
            out.append(Trade(sym, tid, px, sz, t, t, _side(d["side"]) == "sell"))
        return out

    def book_check(self, book: VenueBook, msg: BookMsg) -> str:
        last = book.last_update_id
        if msg.seq <= last and msg.prev_seq < last:
            return "stale"
        return "apply" if msg.prev_seq == last else "gap"

    def checksum(self, book: VenueBook) -> int | None:
        bids, asks = book.top(CHECKSUM_LEVELS)
        return okx_checksum([book.bid_wire[p] for p in bids], [book.ask_wire[p] for p in asks])

    # ----------------------------------------------------------------- REST
    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int, after: int | None = None) -> str:
        q = {"instId": self.natives.get(symbol, symbol), "type": 1, "limit": min(limit, REST_LIMIT)}
        if after is not None:
            q["after"] = after
        return f"{rest_base.rstrip('/')}/api/v5/market/history-trades?{urlencode(q)}"

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        m = orjson.loads(body)
        if m.get("code") != "0":
            raise ValueError(f"okx history-trades error {m.get('code')!r}: {m.get('msg')!r}")
        g = self.units["rest.ts"]
        return [Trade(symbol, int(d["tradeId"]), positive(d["px"], "px"), positive(d["sz"], "sz"), g.to_us(int(d["ts"])),
                      g.to_us(int(d["ts"])), d["side"] == "sell") for d in m["data"]]

    async def fetch_trades(self, get: HttpGet, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until=None) -> list[Trade]:
        # Page backwards from the first trade still missing (or from the newest) to ``from_id``.
        after = until.id if until is not None else None
        got: dict[int, Trade] = {}
        for _ in range(1000):  # at most 100k trades per call (bounded)
            rows = self.parse_trades_rest(await get(self.trades_from_url(rest_base, symbol, from_id, REST_LIMIT, after)),
                                          symbol)
            if not rows:
                break
            for t in rows:
                got[t.id] = t
            oldest = min(t.id for t in rows)
            if oldest <= from_id or len(rows) < REST_LIMIT:
                break
            after = oldest
        return [got[i] for i in sorted(got) if i >= from_id]


def _side(s: str) -> str:
    if s not in ("buy", "sell"):
        raise MalformedMessage("invalid", f"field 'side' = {s!r} must be 'buy' or 'sell'")
    return s


# ===================================================================== replay side
class OkxWire:
    """What the replay exchange sends as OKX v5 public."""

    name = "okx"
    ws_path = "/ws/v5/public"
    depth = None
    heartbeat_s = None

    def __init__(self, replay):
        self.replay = replay

    def on_connect(self, conn) -> None:
        pass

    def on_client(self, conn, raw) -> None:
        if raw in ("ping", b"ping"):
            return self.replay.send(conn, b"pong")
        try:
            m = orjson.loads(raw)
            op, args = m["op"], m["args"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self.replay.send(conn, orjson.dumps({"event": "error", "code": "60012",
                                                        "msg": f"Invalid request: {raw!r:.100}", "connId": conn.id}))
        for a in args:
            ch, inst = a.get("channel"), a.get("instId")
            if op not in ("subscribe", "unsubscribe") or ch not in ("trades", "books") or inst not in self.replay.by_native:
                self.replay.send(conn, orjson.dumps({
                    "event": "error", "code": "60018",
                    "msg": f"Wrong URL or channel:{ch},instId:{inst} doesn't exist.", "connId": conn.id}))
                continue
            self.replay.send(conn, orjson.dumps({"event": op, "arg": {"channel": ch, "instId": inst}, "connId": conn.id}))
            key = ("book" if ch == "books" else "trade", inst)
            if op == "unsubscribe":
                conn.subs.discard(key)
                continue
            conn.subs.add(key)
            if ch == "books":
                mk = self.replay.by_native[inst]
                self.replay.send(conn, self.book_frame(conn, mk, *self.replay.view(inst), True))

    def trade_frame(self, conn, mk, start: int, stop: int) -> bytes:
        rows = b",".join(
            b'{"instId":"%s","tradeId":"%d","px":"%s","sz":"%s","side":"%s","ts":"%d","count":"1","source":"0"}' % (
                mk.native.encode(), mk.ids[i], mk.prices[i].encode(), mk.qtys[i].encode(),
                b"sell" if mk.maker[i] else b"buy", int(mk.times_us[i]) // 1000) for i in range(start, stop))
        return b'{"arg":{"channel":"trades","instId":"%s"},"data":[%s]}' % (mk.native.encode(), rows)

    def checksum(self, bids, asks) -> int:
        return okx_checksum(bids, asks)

    def book_frame(self, conn, mk, bids, asks, snapshot: bool, checksum: int | None = None) -> bytes:
        if checksum is None:
            checksum = self.checksum(*self.replay.view(mk.native))
        lv = lambda side: b",".join(b'["%s","%s","0","1"]' % (p.encode(), q.encode()) for p, q in side)  # noqa: E731
        prev = -1 if snapshot else mk.prev_seq
        return (b'{"arg":{"channel":"books","instId":"%s"},"action":"%s","data":[{"asks":[%s],"bids":[%s],'
                b'"ts":"%d","checksum":%d,"prevSeqId":%d,"seqId":%d}]}' % (
                    mk.native.encode(), b"snapshot" if snapshot else b"update", lv(asks), lv(bids),
                    self.replay.now_us() // 1000, checksum, prev, mk.seq))

    def heartbeat(self, conn) -> bytes | None:
        return None

    def rest_trades(self, args: dict) -> tuple[int, bytes]:
        mk = self.replay.by_native.get(args.get("instId", ""))
        if mk is None:
            return 200, orjson.dumps({"code": "51001", "msg": f"Instrument ID {args.get('instId')!r} doesn't exist.",
                                      "data": []})
        try:
            limit = max(1, min(int(args.get("limit", "100")), REST_LIMIT))
            after = int(args["after"]) if "after" in args else None
        except ValueError as exc:
            return 400, orjson.dumps({"code": "50014", "msg": f"Parameter after/limit invalid: {exc}", "data": []})
        idx = mk.published_before_id(after, limit)  # newest first
        data = [{"instId": mk.native, "side": "sell" if mk.maker[i] else "buy", "sz": mk.qtys[i], "px": mk.prices[i],
                 "source": "0", "tradeId": str(int(mk.ids[i])), "ts": str(int(mk.times_us[i]) // 1000)} for i in idx]
        return 200, orjson.dumps({"code": "0", "msg": "", "data": data})

    def routes(self) -> list[tuple[str, str]]:
        return [(r"/api/v5/market/history-trades", "rest_trades")]


"""The replay exchange speaking Coinbase, Kraken, OKX or Bybit on 127.0.0.1, for many symbols at once.

One :class:`VenueReplay` is one venue: the venue's WebSocket path (subscription handshake, acks,
pings/heartbeats, trade and book frames with the venue's sequence numbers and checksums) and the
REST endpoint its clients backfill trades from, on a single loopback port. It replays one seeded
tape per symbol, published round-robin at ``rate`` trade messages per second in total, as a live
market would (times stamped at publication; what a client missed is only in REST). Each symbol's
seeded order book (the same one :class:`~spark_research.streams.replay.ReplayExchange` uses)
evolves beside its tape; subscribers get the venue's view of it (``depth`` levels, snapshot on
subscribe, then updates).

Faults (:class:`~spark_research.streams.replay.Faults`) act per connection on every frame sent,
exactly as for the Binance replay (skip, duplicate, reorder, malformed, stall, drop, refuse),
plus ``checksum_every``: every Nth book update carries a wrong checksum (Kraken, OKX).

Example::

    >>> ex = VenueReplay("okx", ["BTC-USDT", "ETH-USDT"], n=200, rate=5_000).start()
    >>> ex.ws_url.startswith("ws://127.0.0.1:"), ex.wait_finished(10)
    (True, True)
    >>> ex.stop()
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import orjson
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from spark_research.config import settings
from spark_research.data.synthetic import SYMBOLS, generate_trades
from spark_research.streams.replay import Faults, ReplayCounters, _Book, _Conn
from spark_research.streams.venues.base import canonical

log = logging.getLogger(__name__)


def _wire_class(venue: str):
    from spark_research.streams.venues import bybit, coinbase, kraken, okx

    wires = {"coinbase": coinbase.CoinbaseWire, "kraken": kraken.KrakenWire, "okx": okx.OkxWire, "bybit": bybit.BybitWire}
    try:
        return wires[venue]
    except KeyError:
        raise ValueError(f"venue {venue!r} has no replay; known: {sorted(wires)}") from None


@dataclass
class VenueCounters(ReplayCounters):
    """:class:`~spark_research.streams.replay.ReplayCounters` plus the venue-only faults."""

    bad_checksums: int = 0
    book_updates: int = 0


class Market:
    """One symbol of the replay: its tape, publication times and order book (exchange's loop only)."""

    def __init__(self, native: str, tape, seed: int, book_levels: int, qty_decimals: int):
        self.native, self.symbol = native, canonical(native)
        tick = SYMBOLS.get(self.symbol, (100.0, 0.01))[1]
        self.decimals = max(0, int(round(-np.log10(tick))))
        self.qty_decimals = qty_decimals
        self.ids = tape["seq"].to_numpy(dtype="int64")
        self.prices = [f"{p:.{self.decimals}f}" for p in tape["price"].to_numpy()]
        self.qtys = [f"{q:.6f}" for q in tape["qty"].to_numpy()]
        self.maker = (tape["side"].to_numpy() == "sell").tolist()
        self.times_us = np.zeros(len(self.ids), dtype="int64")
        self.published = 0
        self.book = _Book(seed, tick, book_levels, self.decimals, float(self.prices[0]))
        self.seq = self.prev_seq = self.book.update_id  #: OKX seqId / prevSeqId
        self.u = 100  #: Bybit ``u``: one per book message (1 would mean a venue restart)

    def published_after_us(self, t_us: int, count: int) -> range:
        """Indices of published trades with time > ``t_us``, oldest first, at most ``count``."""
        i = int(np.searchsorted(self.times_us[: self.published], t_us, side="right"))
        return range(i, min(i + count, self.published))

    def published_before_id(self, before_id: int | None, limit: int) -> range:
        """Indices of published trades with id < ``before_id`` (all if None), newest first, at most ``limit``."""
        j = self.published if before_id is None else int(np.searchsorted(self.ids[: self.published], before_id, "left"))
        return range(j - 1, max(0, j - limit) - 1, -1)

    def published_in_window(self, start_us: int | None, end_us: int | None, limit: int) -> range:
        """Indices of published trades with ``start <= time < end``, newest first, at most ``limit``."""
        t = self.times_us[: self.published]
        i = 0 if start_us is None else int(np.searchsorted(t, start_us, "left"))
        j = self.published if end_us is None else int(np.searchsorted(t, end_us, "left"))
        return range(j - 1, max(i, j - limit) - 1, -1)


class _VenueHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, replay: "VenueReplay") -> None:
        self.replay = replay
        self.conn: _Conn | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def prepare(self):
        ex = self.replay
        refuse = ex.faults.refuse_connections > ex.counters.refused or (
            time.monotonic() - ex._started_mono < ex.faults.refuse_for_s)
        if refuse:
            ex.counters.refused += 1
            raise tornado.web.HTTPError(503, reason="replay exchange refusing connections")

    def open(self, *args) -> None:
        ex = self.replay
        self.set_nodelay(True)
        conn = self.conn = _Conn(self, "venue", False)
        conn.subs = set()
        conn.id = f"{next(ex._conn_ids):08x}"
        conn.seq = 0
        ex.counters.connections += 1
        ex._conns.add(conn)
        conn.task = asyncio.ensure_future(conn.run(ex.faults, ex.counters))
        ex._conn_tasks.add(conn.task)
        conn.task.add_done_callback(ex._conn_tasks.discard)
        ex.wire.on_connect(conn)

    def on_message(self, message) -> None:
        if self.conn is not None and not self.conn.closed:
            self.replay.wire.on_client(self.conn, message)

    def drop(self) -> None:
        """Close the TCP socket without a close frame (what a network fault looks like)."""
        if self.ws_connection is not None and self.ws_connection.stream is not None:
            self.ws_connection.stream.close()
        self.on_close()

    def on_close(self) -> None:
        if self.conn is not None:
            self.conn.closed = True
            self.conn.wake.set()
            self.replay._conns.discard(self.conn)


class _RestHandler(tornado.web.RequestHandler):
    def initialize(self, replay: "VenueReplay", method: str) -> None:
        self.replay, self.method = replay, method

    def get(self, *groups) -> None:
        args = {k: self.get_query_argument(k) for k in self.request.arguments}
        status, body = getattr(self.replay.wire, self.method)(args, *groups)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(body)


class _StatusHandler(tornado.web.RequestHandler):
    def initialize(self, replay: "VenueReplay") -> None:
        self.replay = replay

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(orjson.dumps(self.replay.status()))


class VenueReplay:
    """A replay exchange for ``venue`` (coinbase, kraken, okx, bybit) and ``symbols`` (see module docstring).

    ``n`` trades per symbol; ``rate`` trade messages per second over all symbols; ``depth_every``
    trades of a symbol between two of its book updates (default: about 10 book updates per
    second per symbol); ``min_clients`` holds the tape until that many connections subscribed
    to the trades of every symbol. ``tapes`` (canonical symbol → a tape with
    :func:`~spark_research.data.synthetic.generate_trades`' columns) replaces a symbol's
    generated tape, e.g. one continuing after the ids a journal already stored.
    """

    def __init__(self, venue: str, symbols: list[str], *, n: int = 2_000, seed: int = 42, rate: float = 1_000.0,
                 faults: Faults | None = None, host: str | None = None, port: int = 0, depth_every: int | None = None,
                 book_levels: int = 20, min_clients: int = 0, tapes: dict | None = None):
        if not 1 <= rate <= 1_000_000:
            raise ValueError(f"rate must be in 1..1_000_000 msg/s, got {rate!r}")
        if not symbols:
            raise ValueError("symbols: at least one symbol is needed")
        if n < 1:
            raise ValueError(f"n must be >= 1 trades per symbol, got {n!r}")
        self.venue = venue
        self.wire = _wire_class(venue)(self)
        from spark_research.streams.venues import get_venue

        proto = get_venue(venue)
        self.markets: list[Market] = []
        for k, s in enumerate(symbols):
            native = proto.native(s)
            tape = (tapes or {}).get(canonical(native))
            if tape is None:
                tape = generate_trades(canonical(native), n=n, seed=seed + k, first_seq=1)
            self.markets.append(Market(native, tape, seed + k, book_levels, getattr(self.wire, "qty_decimals", 6)))
        if len({m.symbol for m in self.markets}) != len(self.markets):
            raise ValueError(f"symbols: duplicates in {symbols!r}")
        self.by_native = {m.native: m for m in self.markets}
        self.by_canonical = {m.symbol: m for m in self.markets}
        self.rate = float(rate)
        self.faults = faults or Faults()
        self.host = host or settings().host
        self.port = port
        per_symbol = self.rate / len(self.markets)
        self.depth_every = int(depth_every or max(1, round(per_symbol / 10)))
        self.min_clients = min_clients
        self.counters = VenueCounters()
        self._conns: set[_Conn] = set()
        self._conn_tasks: set[asyncio.Task] = set()
        self._conn_ids = itertools.count(1)
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._started_mono = time.monotonic()
        self._finished = threading.Event()

    # ----------------------------------------------------------------- addresses and reads
    @property
    def ws_url(self) -> str:
        """Base WebSocket URL (``ws://127.0.0.1:PORT``); the venue's path goes after it."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base REST URL (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def finished(self) -> bool:
        """True once every tape is published."""
        return self._finished.is_set()

    def source_ids(self, symbol: str) -> np.ndarray:
        """Every trade id of ``symbol``'s tape (any spelling)."""
        return self.by_canonical[canonical(symbol)].ids.copy()

    def now_us(self) -> int:
        """Wall-clock epoch microseconds (the replay stamps times at publication)."""
        return time.time_ns() // 1000

    def view(self, native: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The venue's view of ``native``'s book: best ``depth`` bids (high → low) and asks, as wire strings."""
        mk = self.by_native[native]
        b = mk.book
        n = self.wire.depth
        bids = sorted(b.bids.items(), reverse=True)[:n] if n else sorted(b.bids.items(), reverse=True)
        asks = sorted(b.asks.items())[:n] if n else sorted(b.asks.items())
        pf, qd = f"{{:.{mk.decimals}f}}", mk.qty_decimals
        return ([(pf.format(p), f"{q:.{qd}f}") for p, q in bids], [(pf.format(p), f"{q:.{qd}f}") for p, q in asks])

    def book(self, symbol: str) -> tuple[int, dict[float, float], dict[float, float], int | None]:
        """``(update id, bids, asks, checksum)`` of the venue's view of ``symbol``'s book (thread-safe)."""
        mk = self.by_canonical[canonical(symbol)]

        def read():
            vb, va = self.view(mk.native)
            return (mk.seq, {float(p): float(q) for p, q in vb}, {float(p): float(q) for p, q in va},
                    self.wire.checksum(vb, va))

        return self.call(read)

    def historical(self, symbol: str) -> list[tuple[int, str, str, bool]]:
        """Published trades of ``symbol``: ``(id, price, qty, buyer_maker)`` (what a lossless client stores)."""
        mk = self.by_canonical[canonical(symbol)]
        return [(int(mk.ids[i]), mk.prices[i], mk.qtys[i], mk.maker[i]) for i in range(mk.published)]

    def status(self) -> dict:
        """Tape positions, connections and fault counters."""
        return {"venue": self.venue, "symbols": [m.native for m in self.markets],
                "published": sum(m.published for m in self.markets), "total": sum(len(m.ids) for m in self.markets),
                "connections": len(self._conns), "rate": self.rate, "finished": self.finished,
                "faults": asdict(self.faults), "counters": asdict(self.counters)}

    # ----------------------------------------------------------------- lifecycle
    async def astart(self) -> "VenueReplay":
        """Bind and start publishing inside the running event loop."""
        routes = [(self.wire.ws_path + r"()$", _VenueHandler, {"replay": self}),
                  (r"/replay/status", _StatusHandler, {"replay": self})]
        routes += [(pattern, _RestHandler, {"replay": self, "method": m}) for pattern, m in self.wire.routes()]
        app = tornado.web.Application(routes, websocket_ping_interval=None)
        sockets = tornado.netutil.bind_sockets(self.port, address=self.host)
        self.port = sockets[0].getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)
        self._loop = asyncio.get_running_loop()
        self._started_mono = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._publish())]
        if self.wire.heartbeat_s:
            self._tasks.append(asyncio.ensure_future(self._heartbeats(self.wire.heartbeat_s)))
        log.info("%s replay on %s: %d symbols at %.0f msg/s", self.venue, self.rest_url, len(self.markets), self.rate)
        return self

    async def astop(self) -> None:
        """Stop publishing, close every connection and the listening socket."""
        for t in self._tasks:
            t.cancel()
        for c in list(self._conns):
            c.closed = True
            c.wake.set()
            c.handler.close()
            if c.task is not None:
                c.task.cancel()
        for t in list(self._conn_tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, *self._conn_tasks, return_exceptions=True)
        if self._server is not None:
            self._server.stop()
            await asyncio.sleep(0)

    def start(self) -> "VenueReplay":
        """Run in a daemon thread with its own event loop; returns once it listens."""
        ready = threading.Event()
        error: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.astop())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"replay-{self.venue}", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise TimeoutError("venue replay did not start within 30 s")
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        """Stop a :meth:`start`-ed replay and join its thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def pause(self) -> None:
        """Stop publishing until :meth:`resume`; connections stay open."""
        self._paused = True

    def resume(self) -> None:
        """Continue publishing after :meth:`pause`."""
        self._paused = False

    def wait_finished(self, timeout: float) -> bool:
        """Block until every tape is published; False on timeout."""
        return self._finished.wait(timeout)

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the replay's loop and return its result (thread-safe read)."""
        if self._loop is None or self._thread is None:
            return fn(*args)

        async def _run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(10)

    # ----------------------------------------------------------------- market
    def send(self, conn: _Conn, frame: bytes) -> None:
        """Queue ``frame`` on ``conn`` (faults apply when it is sent)."""
        if not conn.closed:
            conn.push(frame)

    async def _heartbeats(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for c in list(self._conns):
                hb = self.wire.heartbeat(c)
                if hb is not None:
                    self.send(c, hb)

    async def _publish(self) -> None:
        mks = self.markets
        nm = len(mks)
        total = sum(len(m.ids) for m in mks)
        done = 0
        budget = 0.0
        max_batch = max(2, int(self.rate / 100))  # 2: a slow tape keeps its rate across 10 ms ticks
        want = {("trade", m.native) for m in mks}
        while self.min_clients and sum(want <= c.subs for c in self._conns) < self.min_clients:
            await asyncio.sleep(0.005)
        last = time.monotonic()
        # 1 ms ticks at high rates; a slow tape (spark serve's, tens of msg/s) ticks at most every 10 ms,
        # still two ticks per message, without a thousand idle wake-ups a second
        tick = max(0.001, min(0.01, 0.5 / self.rate))
        while done < total:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._paused:
                last = now
                continue
            budget = min(budget + (now - last) * self.rate, float(max_batch))
            last = now
            k = min(int(budget), total - done)
            if k <= 0:
                continue
            budget -= k
            now_us = time.time_ns() // 1000
            for j in range(nm):  # trades done..done+k-1 go round-robin: market (g % nm)
                mk = mks[(done + j) % nm]
                cnt = (k - j + nm - 1) // nm if j < k else 0
                if cnt <= 0 or mk.published >= len(mk.ids):
                    continue
                start = mk.published
                stop = min(start + cnt, len(mk.ids))
                mk.times_us[start:stop] = now_us
                mk.published = stop
                conns = [c for c in self._conns if ("trade", mk.native) in c.subs and not c.closed]
                for c in conns:
                    c.push(self.wire.trade_frame(c, mk, start, stop))
                self._publish_book(mk, start, stop)
            done = sum(m.published for m in mks)
        self._finished.set()

    def nudge(self) -> None:
        """One more book update for every symbol, even while paused (thread-safe).

        Venues without a per-message sequence (Kraken) or without a checksum (Bybit) can only
        notice a lost *last* update at the next one: tests nudge the market to give them one.
        """
        self.call(lambda: [self._book_step(mk, float(mk.prices[max(mk.published, 1) - 1])) for mk in self.markets])

    def _publish_book(self, mk: Market, start: int, stop: int) -> None:
        de = self.depth_every
        for b in range(start // de + 1, stop // de + 1):
            self._book_step(mk, float(mk.prices[b * de - 1]))

    def _book_step(self, mk: Market, mid: float) -> None:
        old_b, old_a = self.view(mk.native)
        mk.book.step(mid)
        new_b, new_a = self.view(mk.native)
        mk.prev_seq, mk.seq = mk.seq, mk.book.update_id
        mk.u += 1
        bids, asks = _diff(old_b, new_b, mk.book.bids, mk.decimals), _diff(old_a, new_a, mk.book.asks, mk.decimals)
        checksum = self.wire.checksum(new_b, new_a)
        self.counters.book_updates += 1
        f = self.faults
        if checksum is not None and f.checksum_every and self.counters.book_updates % f.checksum_every == 0:
            checksum ^= 0x5A5A5A5A
            self.counters.bad_checksums += 1
        for c in self._conns:
            if ("book", mk.native) in c.subs and not c.closed:
                c.push(self.wire.book_frame(c, mk, bids, asks, False, checksum))


def _diff(old: list[tuple[str, str]], new: list[tuple[str, str]], full: dict[float, float], decimals: int
          ) -> list[tuple[str, str]]:
    """Changes between two views of a side: new/changed levels, and removals (qty 0) of levels gone from the book.

    A level only pushed out of a truncated view gets no removal: the client truncates (as the venues document).
    """
    before = dict(old)
    out = [(p, q) for p, q in new if before.get(p) != q]
    now = {p for p, _ in new}
    zero = None
    for p, q in old:
        if p not in now and float(p) not in full:
            if zero is None:
                zero = "0." + "0" * len(q.split(".")[1]) if "." in q else "0"
            out.append((p, zero))
    return out

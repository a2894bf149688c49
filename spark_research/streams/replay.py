"""Embedded replay exchange: a Binance-format WebSocket + REST server on 127.0.0.1.

It replays a tape of trades (stored or synthetic) at ``rate`` messages per second as a live
market would: trades are *published* on a clock whether or not anyone is connected, every
published trade gets its event time ``E``/``T`` at publication, and what a client missed while
disconnected is available only through REST, exactly like the real venue. A seeded order book
evolves beside the tape (one diff every ``depth_every`` trades, so the book is a pure function
of tape and seed) and is sent as a diff-depth stream with ``U``/``u`` update ids.

Endpoints (Binance spot shapes):

* ``ws://HOST:PORT/ws/<symbol>@trade`` and ``ws://HOST:PORT/ws/<symbol>@depth@100ms``
  (``?timeUnit=MICROSECOND`` gives microsecond times, as on Binance)
* ``GET /api/v3/historicalTrades?symbol=&fromId=&limit=`` (``X-MBX-TIME-UNIT`` header honoured)
* ``GET /api/v3/depth?symbol=&limit=`` → ``{"lastUpdateId", "bids", "asks"}``
* ``GET /api/v3/ping``, and ``GET /replay/status`` (tape position, connections, faults sent, orders)
* order entry: ``POST /api/v3/order``, ``GET /api/v3/order``, ``GET /api/v3/myTrades``, executed
  at the replay price with latency, slippage and partial fills (see :mod:`spark_research.streams.orders`)

Fault knobs (:class:`Faults`) act per connection, counted in messages sent on it: drop the
socket, skip (never send) a message, duplicate, reorder, inject malformed frames, stall, and
refuse connections for a while. Skipped trades stay in the tape and REST, so a correct client
recovers all of them. Order faults count accepted orders: drop the connection after executing an
order (the client never hears of it), or hold its response back.

Example::

    >>> from spark_research.streams.replay import ReplayExchange, Faults
    >>> ex = ReplayExchange(n=1_000, rate=2_000, faults=Faults(skip_every=50)).start()
    >>> ex.ws_url.startswith("ws://127.0.0.1:")
    True
    >>> ex.stop()
"""
from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import orjson
import pandas as pd
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import tornado.websocket

from spark_research.config import settings
from spark_research.data.synthetic import SYMBOLS, generate_trades
from spark_research.streams.orders import OrderConfig, OrderDesk, order_routes

log = logging.getLogger(__name__)

_MALFORMED_FRAMES = (
    b'{"e":"trade","E":1,"s":"BTC',  # truncated JSON
    b"\x00\xff not json at all",
    b'{"e":"trade","E":1,"s":"X","t":"abc","p":"1","q":"1","T":1,"m":true}',  # id not an integer
    b'{"e":"trade","E":1,"s":"X","t":1,"p":"-5","q":"1","T":1,"m":true}',  # negative price
    b'{"e":"trade"}',  # fields missing
    b"[1,2,3]",
)


@dataclass(frozen=True)
class Faults:
    """Fault injection, per connection; 0 disables a knob. ``every`` counts messages sent on it."""

    drop_every: int = 0  #: close the socket abruptly after every N messages
    skip_every: int = 0  #: never send every Nth message (it stays available over REST)
    duplicate_every: int = 0  #: send every Nth message twice
    reorder_every: int = 0  #: send every Nth message after the one following it
    malformed_every: int = 0  #: send a malformed frame after every Nth message
    stall_every: int = 0  #: pause the connection ``stall_ms`` after every N messages
    stall_ms: float = 0.0
    refuse_for_s: float = 0.0  #: refuse WebSocket connections for this long after start
    refuse_connections: int = 0  #: refuse the first N WebSocket connection attempts
    order_drop_every: int = 0  #: execute every Nth order, then close its connection without answering
    order_stall_every: int = 0  #: hold the answer of every Nth order ``order_stall_ms`` after executing it
    order_stall_ms: float = 0.0
    checksum_every: int = 0  #: venue replays (Kraken, OKX): every Nth book update carries a wrong checksum

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"Faults.{name} must be >= 0, got {value!r}")

    @classmethod
    def parse(cls, spec: str) -> "Faults":
        """Build from ``"skip_every=50,drop_every=400"`` (the CLI form)."""
        kwargs: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = part.partition("=")
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {key!r}; known: {sorted(cls.__dataclass_fields__)}")
            kwargs[key] = float(value) if key in ("stall_ms", "refuse_for_s", "order_stall_ms") else int(value)
        return cls(**kwargs)


@dataclass
class ReplayCounters:
    """What the exchange did, for tests and the status endpoint."""

    connections: int = 0
    refused: int = 0
    dropped: int = 0
    skipped: int = 0
    duplicated: int = 0
    reordered: int = 0
    malformed: int = 0
    stalls: int = 0
    sent: int = 0


class _Book:
    """The exchange's own order book, seeded, driven by the last trade price."""

    def __init__(self, seed: int, tick: float, levels: int, decimals: int, price: float):
        self.rng = np.random.default_rng([seed, 7])
        # levels one basis point apart (at least one tick), so the book survives price moves
        self.tick = tick * max(1, int(price * 1e-4 / tick))
        self.levels, self.decimals = levels, decimals
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.update_id = 1000

    def _px(self, ticks: int) -> float:
        return float(f"{ticks * self.tick:.{self.decimals}f}")

    def step(self, mid: float) -> tuple[int, int, list[tuple[str, str]], list[tuple[str, str]]] | None:
        """Apply one random diff around ``mid``; return ``(U, u, bids, asks)`` as wire strings."""
        m = int(round(mid / self.tick))
        changes_b: dict[float, float] = {}
        changes_a: dict[float, float] = {}
        for p in self.bids:  # keep the book uncrossed and near the price
            if p >= self._px(m) or p < self._px(m - 2 * self.levels):
                changes_b[p] = 0.0
        for p in self.asks:
            if p <= self._px(m) or p > self._px(m + 2 * self.levels):
                changes_a[p] = 0.0
        for _ in range(int(self.rng.integers(1, 6))):
            off = int(self.rng.integers(1, self.levels + 1))
            qty = 0.0 if self.rng.random() < 0.2 else float(f"{self.rng.lognormal(0.0, 1.0):.6f}") or 0.000001
            if self.rng.random() < 0.5:
                changes_b[self._px(m - off)] = qty
            else:
                changes_a[self._px(m + off)] = qty
        n = len(changes_b) + len(changes_a)
        first = self.update_id + 1
        self.update_id += n
        for book, ch in ((self.bids, changes_b), (self.asks, changes_a)):
            for p, q in ch.items():
                if q == 0.0:
                    book.pop(p, None)
                else:
                    book[p] = q
        fmt = f"{{:.{self.decimals}f}}"
        wire = lambda ch: [(fmt.format(p), f"{q:.6f}") for p, q in ch.items()]  # noqa: E731
        return first, self.update_id, wire(changes_b), wire(changes_a)

    def snapshot(self, limit: int) -> dict:
        fmt = f"{{:.{self.decimals}f}}"
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {"lastUpdateId": self.update_id,
                "bids": [[fmt.format(p), f"{q:.6f}"] for p, q in bids],
                "asks": [[fmt.format(p), f"{q:.6f}"] for p, q in asks]}


class _Conn:
    """One subscriber: a queue of frames and a sender applying the faults."""

    def __init__(self, handler: "_StreamHandler", kind: str, micro: bool):
        self.handler, self.kind, self.micro = handler, kind, micro
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.n = 0
        self.task: asyncio.Task | None = None

    def push(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.wake.set()

    async def run(self, faults: Faults, counters: ReplayCounters) -> None:
        held: bytes | None = None
        ws = self.handler
        out: list[bytes] = []  # frames of one drain cycle, written with a single syscall

        def flush() -> None:
            if out:
                stream = ws.ws_connection.stream if ws.ws_connection is not None else None
                if stream is None or stream.closed():
                    raise tornado.iostream.StreamClosedError()
                stream.write(b"".join(out))
                out.clear()

        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            try:
                while self.queue and not self.closed:
                    frame = self.queue.popleft()
                    self.n += 1
                    i = self.n
                    if faults.skip_every and i % faults.skip_every == 0:
                        counters.skipped += 1
                    elif faults.reorder_every and i % faults.reorder_every == 0 and held is None:
                        held = frame
                        counters.reordered += 1
                    else:
                        out.append(_ws_frame(frame))
                        counters.sent += 1
                        if held is not None:
                            out.append(_ws_frame(held))
                            counters.sent += 1
                            held = None
                        if faults.duplicate_every and i % faults.duplicate_every == 0:
                            out.append(_ws_frame(frame))
                            counters.duplicated += 1
                    if faults.malformed_every and i % faults.malformed_every == 0:
                        bad = _MALFORMED_FRAMES[counters.malformed % len(_MALFORMED_FRAMES)]
                        out.append(_ws_frame(bad, opcode=0x2))
                        counters.malformed += 1
                    if faults.stall_every and i % faults.stall_every == 0:
                        flush()
                        counters.stalls += 1
                        await asyncio.sleep(faults.stall_ms / 1000.0)
                    if faults.drop_every and i % faults.drop_every == 0:
                        flush()
                        counters.dropped += 1
                        self.closed = True
                        ws.drop()
                        return
                flush()
            except (tornado.iostream.StreamClosedError, tornado.websocket.WebSocketClosedError):
                self.closed = True
                return


def _ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, unfragmented server→client WebSocket frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class _StreamHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, exchange: "ReplayExchange") -> None:
        self.exchange = exchange
        self.conn: _Conn | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def prepare(self):
        ex = self.exchange
        refuse = ex.faults.refuse_connections > ex.counters.refused or (
            time.monotonic() - ex._started_mono < ex.faults.refuse_for_s)
        if refuse:
            ex.counters.refused += 1
            raise tornado.web.HTTPError(503, reason="replay exchange refusing connections")

    def open(self, stream: str) -> None:
        parts = stream.lower().split("@")
        ex = self.exchange
        if parts[0] != ex.symbol.lower() or len(parts) < 2 or parts[1] not in ("trade", "depth"):
            self.close(1008, f"unknown stream {stream!r}")
            return
        self.set_nodelay(True)
        micro = ex.honour_time_unit and self.get_query_argument("timeUnit", "MILLISECOND").upper() == "MICROSECOND"
        self.conn = _Conn(self, parts[1], micro)
        ex.counters.connections += 1
        ex._conns.add(self.conn)
        self.conn.task = asyncio.ensure_future(self.conn.run(ex.faults, ex.counters))
        ex._conn_tasks.add(self.conn.task)
        self.conn.task.add_done_callback(ex._conn_tasks.discard)

    def drop(self) -> None:
        """Close the TCP socket without a close frame (what a network fault looks like)."""
        if self.ws_connection is not None and self.ws_connection.stream is not None:
            self.ws_connection.stream.close()
        self.on_close()

    def on_message(self, message) -> None:  # subscriptions are by URL; ignore client frames
        pass

    def on_close(self) -> None:
        if self.conn is not None:
            self.conn.closed = True
            self.conn.wake.set()
            self.exchange._conns.discard(self.conn)


class _Json(tornado.web.RequestHandler):
    def initialize(self, exchange: "ReplayExchange") -> None:
        self.exchange = exchange

    def reply(self, obj: object) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(orjson.dumps(obj))

    def bad(self, field: str, value: object, why: str) -> None:
        self.set_status(400)
        self.reply({"code": -1100, "msg": f"parameter {field!r} = {value!r}: {why}"})

    def symbol_ok(self) -> bool:
        """True for this exchange's symbol; otherwise answers 400 naming the symbol."""
        sym = self.get_query_argument("symbol", "")
        if sym.upper() == self.exchange.symbol:
            return True
        self.bad("symbol", sym, f"unknown symbol (this exchange replays {self.exchange.symbol})")
        return False


class _TradesHandler(_Json):
    def get(self) -> None:
        ex = self.exchange
        if not self.symbol_ok():
            return
        try:
            from_id = int(self.get_query_argument("fromId"))
            limit = int(self.get_query_argument("limit", "500"))
        except (ValueError, tornado.web.MissingArgumentError) as exc:
            return self.bad("fromId/limit", None, str(exc))
        if not 1 <= limit <= 1000:
            return self.bad("limit", limit, "must be in 1..1000")
        unit = self.request.headers.get("X-MBX-TIME-UNIT") or self.get_query_argument("timeUnit", "MILLISECOND")
        self.reply(ex.historical_trades(from_id, limit, micro=ex.honour_time_unit and unit.upper() == "MICROSECOND"))


class _DepthHandler(_Json):
    def get(self) -> None:
        ex = self.exchange
        if not self.symbol_ok():
            return
        try:
            limit = int(self.get_query_argument("limit", "1000"))
        except ValueError as exc:
            return self.bad("limit", self.get_query_argument("limit"), str(exc))
        self.reply(ex._book.snapshot(limit))


class _PingHandler(_Json):
    def get(self) -> None:
        self.reply({})


class _StatusHandler(_Json):
    def get(self) -> None:
        self.reply(self.exchange.status())


class ReplayExchange:
    """A replay exchange for one symbol. Start with :meth:`start` (own thread) or ``await astart()``.

    ``trades`` is a frame of the trade schema (``seq, ts, price, qty, side, symbol``); when
    omitted, ``n`` seeded synthetic trades are generated. ``rate`` is in messages per second
    (1 to 50k). The tape publishes once; :attr:`finished` turns true when it is exhausted.
    ``orders`` sets how orders execute (:class:`~spark_research.streams.orders.OrderConfig`).
    ``honour_time_unit=False`` makes it a venue that ignores ``timeUnit`` (milliseconds always).

    Example::

        >>> ex = ReplayExchange(n=200, rate=10_000).start()
        >>> ex.wait_finished(timeout=5)
        True
        >>> ex.stop()
    """

    def __init__(self, trades: pd.DataFrame | None = None, *, symbol: str = "BTCUSDT", n: int = 10_000,
                 seed: int = 42, rate: float = 1_000.0, faults: Faults | None = None, host: str | None = None,
                 port: int = 0, depth_every: int | None = None, book_levels: int = 20, min_clients: int = 0,
                 orders: OrderConfig | None = None, honour_time_unit: bool = True):
        if not 1 <= rate <= 1_000_000:
            raise ValueError(f"rate must be in 1..1_000_000 msg/s, got {rate!r}")
        if trades is None:
            trades = generate_trades(symbol, n=n, seed=seed)
        if trades.empty:
            raise ValueError("trades: the tape is empty")
        self.symbol = str(trades["symbol"].iloc[0]).upper()
        self.rate = float(rate)
        #: False: ignore ``timeUnit`` and always send milliseconds, as some Binance-compatible venues do
        self.honour_time_unit = honour_time_unit
        self.min_clients = min_clients  #: hold the tape until this many trade streams are connected
        self.faults = faults or Faults()
        self.host = host or settings().host
        self.port = port
        #: trades between two depth events (default: ~10 depth events per second at ``rate``)
        self.depth_every = int(depth_every or max(1, round(self.rate / 10)))
        if self.depth_every < 1:
            raise ValueError(f"depth_every must be >= 1, got {depth_every!r}")
        tick = SYMBOLS.get(self.symbol, (100.0, 0.01))[1]
        self.decimals = max(0, int(round(-np.log10(tick))))
        self._ids = trades["seq"].to_numpy(dtype="int64")
        self._prices = [f"{p:.{self.decimals}f}" for p in trades["price"].to_numpy()]
        self._qtys = [f"{q:.6f}" for q in trades["qty"].to_numpy()]
        self._maker = (trades["side"].to_numpy() == "sell").tolist()
        self._times_us = np.zeros(len(self._ids), dtype="int64")  # set at publication
        self.published = 0
        self._book = _Book(seed, tick, book_levels, self.decimals, float(self._prices[0]))
        self.counters = ReplayCounters()
        #: the order entry: configs, orders, executions (touch it on the exchange's loop only)
        self.desk = OrderDesk(orders or OrderConfig(), self.symbol, self.decimals)
        self._conns: set[_Conn] = set()
        self._conn_tasks: set[asyncio.Task] = set()
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._started_mono = time.monotonic()
        self._finished = threading.Event()

    # ----------------------------------------------------------------- addresses
    @property
    def ws_url(self) -> str:
        """Base WebSocket URL (``ws://127.0.0.1:PORT``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base REST URL (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def source_ids(self) -> np.ndarray:
        """Every trade id of the tape (what a lossless client must end up storing)."""
        return self._ids.copy()

    @property
    def finished(self) -> bool:
        """True once the whole tape is published."""
        return self._finished.is_set()

    # ----------------------------------------------------------------- lifecycle
    async def astart(self) -> "ReplayExchange":
        """Bind and start publishing inside the running event loop."""
        app = tornado.web.Application([
            (r"/ws/(.+)", _StreamHandler, {"exchange": self}),
            (r"/api/v3/historicalTrades", _TradesHandler, {"exchange": self}),
            (r"/api/v3/trades", _TradesHandler, {"exchange": self}),
            (r"/api/v3/depth", _DepthHandler, {"exchange": self}),
            (r"/api/v3/ping", _PingHandler, {"exchange": self}),
            (r"/replay/status", _StatusHandler, {"exchange": self}),
            *order_routes(self),
        ], websocket_ping_interval=None)
        sockets = tornado.netutil.bind_sockets(self.port, address=self.host)
        self.port = sockets[0].getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)
        self._loop = asyncio.get_running_loop()
        self._started_mono = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._publish_trades())]
        log.info("replay exchange %s on %s (%d trades at %.0f msg/s)", self.symbol, self.rest_url, len(self._ids), self.rate)
        return self

    async def astop(self) -> None:
        """Stop publishing, close every connection and the listening socket."""
        for t in self._tasks:
            t.cancel()
        conns = list(self._conns)
        for c in conns:
            c.closed = True
            c.wake.set()
            c.handler.close()
            if c.task is not None:
                c.task.cancel()
        for t in list(self._conn_tasks):  # including connections closed a moment ago
            t.cancel()
        await asyncio.gather(*self._tasks, *self._conn_tasks, return_exceptions=True)
        if self._server is not None:
            self._server.stop()
            await asyncio.sleep(0)

    def start(self) -> "ReplayExchange":
        """Run the exchange in its own daemon thread and event loop; returns once it listens."""
        ready = threading.Event()
        error: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # bind failure: report it to the caller
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.astop())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"replay-{self.symbol}", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise TimeoutError("replay exchange did not start within 30 s")
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        """Stop a :meth:`start`-ed exchange and join its thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def pause(self) -> None:
        """Stop publishing (trades and depth) until :meth:`resume`; connections stay open."""
        self._paused = True

    def resume(self) -> None:
        """Continue publishing after :meth:`pause`."""
        self._paused = False

    def configure_orders(self, config: OrderConfig) -> None:
        """Execute orders by ``config`` from the next one on (thread-safe; the seed restarts)."""
        self.call(self.desk.configure, config)

    def wait_finished(self, timeout: float) -> bool:
        """Block until the whole tape is published; False on timeout."""
        return self._finished.wait(timeout)

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the exchange's loop and return its result (thread-safe read)."""
        if self._loop is None or self._thread is None:
            return fn(*args)
        fut: "asyncio.Future" = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return fut.result(10)

    # ----------------------------------------------------------------- market
    def _trade_frame(self, i: int, micro: bool) -> bytes:
        t = int(self._times_us[i]) if micro else int(self._times_us[i]) // 1000
        return (b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
            t, self.symbol.encode(), self._ids[i], self._prices[i].encode(), self._qtys[i].encode(), t,
            b"true" if self._maker[i] else b"false"))

    async def _publish_trades(self) -> None:
        n = len(self._ids)
        budget = 0.0
        last = time.monotonic()
        max_batch = max(1, int(self.rate / 100))
        while self.min_clients and sum(c.kind == "trade" for c in self._conns) < self.min_clients:
            await asyncio.sleep(0.005)
        last = time.monotonic()
        while self.published < n:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            if self._paused:
                last = now
                continue
            budget = min(budget + (now - last) * self.rate, float(max_batch))
            last = now
            k = min(int(budget), n - self.published)
            if k <= 0:
                continue
            budget -= k
            now_us = time.time_ns() // 1000
            start, stop = self.published, self.published + k
            self._times_us[start:stop] = now_us
            self.published = stop
            trade_conns = [c for c in self._conns if c.kind == "trade" and not c.closed]
            for micro in {c.micro for c in trade_conns}:
                frames = [self._trade_frame(i, micro) for i in range(start, stop)]
                for c in trade_conns:
                    if c.micro == micro:
                        c.queue.extend(frames)
                        c.wake.set()
            self._publish_depth(start, stop)
        self._finished.set()

    def _publish_depth(self, start: int, stop: int) -> None:
        # One depth event per `depth_every` published trades: the book is a pure function of
        # the tape and the seed, identical on every run.
        de = self.depth_every
        conns = None
        for b in range(start // de + 1, stop // de + 1):
            mid = float(self._prices[b * de - 1])
            first, last, bids, asks = self._book.step(mid)
            if conns is None:
                conns = [c for c in self._conns if c.kind == "depth" and not c.closed]
            now_us = time.time_ns() // 1000
            for c in conns:
                e = now_us if c.micro else now_us // 1000
                c.push(orjson.dumps({"e": "depthUpdate", "E": e, "s": self.symbol, "U": first, "u": last,
                                     "b": bids, "a": asks}))

    def historical_trades(self, from_id: int, limit: int, micro: bool = False) -> list[dict]:
        """Published trades with id >= ``from_id``, at most ``limit`` (the REST answer)."""
        i = int(np.searchsorted(self._ids, from_id, side="left"))
        j = min(i + limit, self.published)
        out = []
        for k in range(i, j):
            t = int(self._times_us[k]) if micro else int(self._times_us[k]) // 1000
            p, q = self._prices[k], self._qtys[k]
            out.append({"id": int(self._ids[k]), "price": p, "qty": q, "quoteQty": f"{float(p) * float(q):.8f}",
                        "time": t, "isBuyerMaker": self._maker[k], "isBestMatch": True})
        return out

    def last_price(self) -> float:
        """The price orders execute around: the last published trade (the first before any)."""
        return float(self._prices[max(self.published, 1) - 1])

    def book(self) -> tuple[int, dict[float, float], dict[float, float]]:
        """``(last_update_id, bids, asks)`` of the exchange's book, copied on its own loop."""
        return self.call(lambda: (self._book.update_id, dict(self._book.bids), dict(self._book.asks)))

    def status(self) -> dict:
        """Tape position, live connections, fault counters and the order entry's counters."""
        return {"symbol": self.symbol, "published": self.published, "total": len(self._ids),
                "last_id": int(self._ids[self.published - 1]) if self.published else None,
                "update_id": self._book.update_id, "connections": len(self._conns), "rate": self.rate,
                "finished": self.finished, "faults": asdict(self.faults), "counters": asdict(self.counters),
                "orders": self.desk.status()}


async def _call(fn, *args):
    return fn(*args)


def load_tape(symbol: str, store=None, n: int | None = None) -> pd.DataFrame:
    """Trades of ``symbol`` from a :class:`~spark_research.data.BarStore` (the last ``n`` if given)."""
    from spark_research.data import default_store

    trades = (store or default_store()).load_trades(symbol)
    return trades.iloc[-n:].reset_index(drop=True) if n else trades

"""One connection to a venue carrying many symbols, each symbol's integrity tracked on its own.

A :class:`VenueFeed` opens the venue's public WebSocket once, subscribes trades (and books) of
every symbol, answers the venue's keep-alive rules, and routes what each frame carries:

* trades go to that symbol's :class:`~spark_research.streams.ingest.IngestClient`: the same
  trade-id sequencing, reorder buffer, REST backfill, journal, bars and metrics as the Binance
  ingest, per symbol. A frame of a few trades is fed trade by trade
  (:meth:`~spark_research.streams.ingest.IngestClient.feed_trade`), a frame of many as one
  :class:`~spark_research.streams.adapters.TradeBatch` per symbol
  (:meth:`~spark_research.streams.ingest.IngestClient.feed_batch`: a batch that continues the
  sequence exactly is taken as one run, anything else trade by trade);
* book messages go to that symbol's :class:`~spark_research.streams.venues.base.VenueBook`
  under the venue's rules: OKX ``prevSeqId`` chain + checksum, Kraken checksum, Bybit ``u``
  chain, Coinbase per-connection ``sequence_num``. A gap or a checksum mismatch resubscribes
  that symbol's book (the venue answers with a snapshot) and is counted
  (``ws_seq_gaps_total{kind="depth"}``, ``book_checksum_fail_total``, ``ws_resyncs_total``);
  while a book waits for its snapshot it is not shown (``last_update_id`` None).

A connection silent for ``stall_timeout_s`` (no trade, book, heartbeat or pong) is dropped and
reopened with the same backoff as the Binance ingest.

Example::

    >>> import tempfile
    >>> from spark_research.streams.venues.replay import VenueReplay
    >>> ex = VenueReplay("kraken", ["BTC/USD", "ETH/USD"], n=300, rate=3_000).start()
    >>> feed = VenueFeed("kraken", ["BTC/USD", "ETH/USD"], ex.ws_url, ex.rest_url, root=tempfile.mkdtemp(),
    ...                  from_id=1).start()
    >>> feed.wait_for_ids({"BTCUSD": 300, "ETHUSD": 300}, timeout=20)
    True
    >>> feed.stop(); ex.stop()
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from pathlib import Path

import websockets

from spark_research import metrics
from spark_research.streams.adapters import MalformedMessage
from spark_research.streams.ingest import (
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    RESYNCING,
    IngestClient,
    IngestConfig,
    observe_many,
)
from spark_research.streams.venues import get_venue
from spark_research.streams.venues.base import BookMsg, VenueBook, VenueProtocol, canonical
from spark_research.streams.venues.journal import VenueJournal

log = logging.getLogger(__name__)
_RAW_LOG_CHARS = 200


class _BookState:
    __slots__ = ("book", "native", "awaiting")

    def __init__(self, book: VenueBook, native: str):
        self.book, self.native = book, native
        self.awaiting: float | None = None  #: perf_counter time of the last (re)subscription still unanswered


class VenueFeed:
    """Ingest of ``symbols`` from ``venue`` over one WebSocket (see the module docstring).

    ``ingest_options`` are :class:`~spark_research.streams.ingest.IngestConfig` fields applied to
    every symbol (``reorder_window_ms``, ``idle_resync_s``, ``backoff_*``, ``durability``...);
    ``status_interval_s`` defaults to 2 s here (one status file per symbol). The batches of all
    symbols are committed together every ``group_window_ms`` (1 ms) while trades arrive; a
    symbol's own ``flush_interval_ms`` (default 20 ms here) is only the fallback.
    """

    def __init__(self, venue: str | VenueProtocol, symbols: list[str], ws_url: str, rest_url: str, *,
                 root: str | Path | None = None, from_id: int | None = None, depth: bool = True,
                 stall_timeout_s: float = 5.0, resync_timeout_s: float = 2.0, group_window_ms: float = 1.0,
                 **ingest_options):
        self.protocol = get_venue(venue) if isinstance(venue, str) else venue
        self.venue = self.protocol.name
        if not symbols:
            raise ValueError(f"VenueFeed({self.venue!r}): symbols must not be empty")
        for name, value in (("stall_timeout_s", stall_timeout_s), ("resync_timeout_s", resync_timeout_s)):
            if not value > 0:
                raise ValueError(f"VenueFeed.{name} must be > 0, got {value!r}")
        self.natives = [self.protocol.native(s) for s in symbols]
        if len(set(self.natives)) != len(self.natives):
            raise ValueError(f"VenueFeed({self.venue!r}): duplicate symbols in {symbols!r}")
        self.ws_url, self.rest_url, self.depth = ws_url, rest_url, depth
        self.stall_timeout_s, self.resync_timeout_s = stall_timeout_s, resync_timeout_s
        if group_window_ms < 0:
            raise ValueError(f"VenueFeed.group_window_ms must be >= 0, got {group_window_ms!r}")
        self.group_window_s = group_window_ms / 1000.0
        ingest_options.setdefault("status_interval_s", 2.0)
        # the feed commits every symbol's batch together (group_window_ms); a symbol's own deadline
        # is only the fallback for a group commit that got delayed
        ingest_options.setdefault("flush_interval_ms", 20.0)
        self._obs: tuple[list[float], list[float]] = ([], [])  # every symbol's gaps and latencies, observed in bulk
        self.clients: dict[str, IngestClient] = {}
        self.books: dict[str, _BookState] = {}
        self.journal: VenueJournal | None = None
        for nat in self.natives:
            sym = canonical(nat)
            cfg = IngestConfig(symbol=sym, exchange=self.venue, ws_url=ws_url, rest_url=rest_url, root=root,
                               from_id=from_id, depth=False, **ingest_options)
            if self.journal is None:
                self.journal = VenueJournal(cfg.root_dir / f"{self.venue}.sqlite", self.venue, cfg.durability)
            client = IngestClient(cfg, adapter=self.protocol, journal=self.journal.for_symbol(sym))
            client.group_flush = self._schedule_flush
            client.obs_sink = self._obs
            book = VenueBook(sym, self.protocol.depth)
            client.book = book  # status() and book_copy() show the venue book
            self.clients[sym] = client
            self.books[sym] = _BookState(book, nat)
        first = next(iter(self.clients.values())).config
        self.config = first
        self._rng = random.Random(first.seed)
        self.frames = 0
        self._frames_reported = 0
        self.malformed = 0
        self.reconnects = 0
        self.conn_gaps = 0
        self._conn_seq: int | None = None
        self._ws = None
        self._last_frame = time.perf_counter()
        self._last_ping = 0.0
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._dirty: list[IngestClient] = []
        self._flush_timer: asyncio.Handle | None = None  #: the pending group commit
        self._dirty_since = 0.0  #: when the first batch of the pending group commit opened
        self._m_msgs = metrics.WS_MSGS.labels(self.venue, "venue")
        self._m_gap = metrics.WS_GAP_MS.labels(self.venue)
        self._m_lat = metrics.INGEST_LATENCY_MS.labels(self.venue)
        self._m_checksum = metrics.BOOK_CHECKSUM_FAIL.labels(self.venue)

    # ----------------------------------------------------------------- public API
    async def run(self) -> None:
        """Ingest until :meth:`stop` (or cancellation), in the current event loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        for c in self.clients.values():
            c.attach(self._loop, self._thread)
        self._tasks = [asyncio.ensure_future(self._connection_loop()), asyncio.ensure_future(self._housekeeping())]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass
        finally:
            for t in self._tasks:
                t.cancel()
            for c in self.clients.values():
                c.detach()
            self._observe()

    def start(self) -> "VenueFeed":
        """Run :meth:`run` in a daemon thread with its own event loop; returns immediately."""
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            started.set()
            loop.run_until_complete(self.run())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"feed-{self.venue}", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        """Stop (commits every symbol's last batch); joins the thread of :meth:`start`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def _cancel() -> None:
            self._stopping = True
            for t in self._tasks:
                t.cancel()

        if self._thread is not None and threading.current_thread() is not self._thread:
            loop.call_soon_threadsafe(_cancel)
            self._thread.join(15)
            self._thread = None
        else:
            _cancel()

    def close(self) -> None:
        """Close the venue's journal (after :meth:`stop`)."""
        self.journal.close()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the feed's loop and return the result (consistent reads from other threads)."""
        if self._thread is None or self._loop is None:
            return fn(*args)

        async def _run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(10)

    def wait_for_ids(self, last_ids: dict[str, int], timeout: float) -> bool:
        """Block until every ``{symbol: trade id}`` is durable; False on timeout."""
        deadline = time.monotonic() + timeout
        want = {canonical(s): i for s, i in last_ids.items()}
        while time.monotonic() < deadline:
            got = self.call(lambda: {s: self.clients[s].journal.last_id() for s in want})
            if all(got[s] is not None and got[s] >= i for s, i in want.items()):
                return True
            time.sleep(0.02)
        return False

    def book_copy(self, symbol: str) -> tuple[int | None, dict[float, float], dict[float, float], int | None]:
        """``(update id or None while resyncing, bids, asks, the venue checksum of this book)``, read consistently."""
        st = self.books[canonical(symbol)]

        def read():
            b = st.book
            return b.last_update_id, dict(b.bids), dict(b.asks), self.protocol.checksum(b) if b.synced else None

        return self.call(read)

    def status(self) -> dict:
        """Connection counters and every symbol's :meth:`~spark_research.streams.ingest.IngestClient.status`."""
        return {"venue": self.venue, "frames": self.frames, "malformed": self.malformed, "reconnects": self.reconnects,
                "conn_gaps": self.conn_gaps, "connected": self._ws is not None,
                "symbols": {s: c.status() for s, c in self.clients.items()}}

    # ----------------------------------------------------------------- group commit
    def _schedule_flush(self, client: IngestClient) -> None:
        # A symbol's batch just opened: commit it with every other symbol's ``group_window_ms``
        # later. Frames of many symbols arrive one by one; one transaction per frame would cost a
        # commit per trade at 10k msg/s, one per window costs at most 1000/s.
        if not self._dirty:
            self._dirty_since = client._batch_started
        self._dirty.append(client)
        if self._flush_timer is None and self._loop is not None:
            if self.group_window_s:
                self._flush_timer = self._loop.call_later(self.group_window_s, self._group_flush)
            else:
                self._flush_timer = self._loop.call_soon(self._group_flush)

    def _group_flush(self) -> None:
        if self._flush_timer is not None:  # also run by the housekeeping when the timer is overdue
            self._flush_timer.cancel()
            self._flush_timer = None
        dirty, self._dirty = self._dirty, []
        if not dirty:
            return
        written = []
        with self.journal.group():
            for c in dirty:
                w = c._flush_write()
                if w is not None:
                    written.append((c, w))
        for c, w in written:  # durable now: latency, counters, bar callbacks
            c._flush_done(w)
        # the gaps and latencies go into their histograms at the next sweep (every 20 ms): one
        # bucketing per sweep instead of one per 1 ms group commit

    def _observe(self) -> None:
        gaps, lats = self._obs
        if gaps:
            observe_many(self._m_gap, gaps)
            gaps.clear()
        if lats:
            observe_many(self._m_lat, lats)
            lats.clear()

    # ----------------------------------------------------------------- connection
    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** attempt)
        return self._rng.uniform(cap / 2, cap)

    def _set_states(self, trade: int, depth: int | None = None) -> None:
        for sym, c in self.clients.items():
            c._set_state("trade", trade)
            c._set_state("depth", trade if depth is None else depth)

    async def _connection_loop(self) -> None:
        url = self.protocol.ws_url(self.ws_url)
        attempt = 0
        first = True
        while not self._stopping:
            self._set_states(CONNECTING)
            if not first:
                self.reconnects += 1
                metrics.WS_RECONNECTS.labels(self.venue).inc()
                for c in self.clients.values():
                    c.counters.reconnects += 1
            first = False
            try:
                async with websockets.connect(url, max_size=2 ** 24, compression=None, ping_interval=None,
                                              open_timeout=5, close_timeout=1) as ws:
                    attempt = 0
                    await self._on_connected(ws)
                    async for raw in ws:
                        self._on_frame(raw)
            except asyncio.CancelledError:
                raise
            except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError) as exc:
                log.info("%s connection lost: %s", self.venue, exc)
            except Exception:  # a bug in one frame's handling must not end the ingest
                log.exception("%s feed failed; reconnecting", self.venue)
            self._ws = None
            self._set_states(DISCONNECTED)
            if self._stopping:
                break
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _on_connected(self, ws) -> None:
        now = time.perf_counter()
        self._ws = ws
        self._conn_seq = None
        self._last_frame = self._last_ping = now
        for st in self.books.values():
            st.book.reset()
            st.awaiting = now if self.depth else None
        for c in self.clients.values():
            c._set_state("trade", CONNECTED)
            c._set_state("depth", RESYNCING if self.depth else DISCONNECTED)
            c._last_activity = now
        for msg in self.protocol.subscribe_messages(self.natives, self.depth):
            await ws.send(msg)

    async def _send(self, msgs: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            for m in msgs:
                await ws.send(m)
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            log.info("%s send failed: %s", self.venue, exc)

    # ----------------------------------------------------------------- frames
    def _on_frame(self, raw: bytes | str) -> None:
        now = time.perf_counter()
        self._last_frame = now
        self.frames += 1
        try:
            f = self.protocol.parse(raw)
        except MalformedMessage as exc:
            self._malformed(exc.reason, raw, str(exc))
            return
        books_ok = True
        if f.conn_seq is not None:
            last = self._conn_seq
            if last is not None and f.conn_seq <= last:
                books_ok = False  # duplicate or late: its book content is already applied or resynced over
            else:
                if last is not None and f.conn_seq > last + 1:
                    self._conn_gap(last, f.conn_seq, now)
                self._conn_seq = f.conn_seq
        clients = self.clients
        for t in f.trades:
            c = clients.get(t.symbol)
            if c is None:
                self._malformed("symbol", raw, f"trade of {t.symbol!r}, not subscribed")
                continue
            c.feed_trade(t, now)
        for b in f.batches:
            c = clients.get(b.symbol)
            if c is None:
                for _ in b.ids:  # counted per trade, as above
                    self._malformed("symbol", raw, f"trade of {b.symbol!r}, not subscribed")
                continue
            c.feed_batch(b, now)
        if books_ok:
            for b in f.books:
                self._on_book(b, now, raw)

    def _on_book(self, msg: BookMsg, now: float, raw) -> None:
        st = self.books.get(msg.symbol)
        if st is None:
            self._malformed("symbol", raw, f"book of {msg.symbol!r}, not subscribed")
            return
        book, client, proto = st.book, self.clients[msg.symbol], self.protocol
        client._last_depth_activity = now
        if msg.snapshot:
            book.load(msg)
            if proto.has_checksum and not self._checksum_ok(st, msg, client, now):
                return
            st.awaiting = None
            client.counters.book_resyncs += 1
            metrics.WS_RESYNCS.labels(self.venue, msg.symbol, "depth").inc()
            client._set_gaps_open("depth", 0)
            client._set_state("depth", CONNECTED)
            return
        if not book.synced:
            return  # waiting for the snapshot: updates before it are covered by it
        r = proto.book_check(book, msg)
        if r == "stale":
            client.counters.duplicates += 1
            client._m_dups.inc()
            return
        if r == "gap":
            client.counters.gaps += 1
            metrics.WS_SEQ_GAPS.labels(self.venue, msg.symbol, "depth").inc()
            log.info("%s %s book sequence broken at %s (update %s/%s): resubscribing", self.venue, msg.symbol,
                     book.last_update_id, msg.prev_seq, msg.seq)
            self._resync_book(st, client, now)
            return
        book.apply(msg)
        if proto.has_checksum:
            self._checksum_ok(st, msg, client, now)

    def _checksum_ok(self, st: _BookState, msg: BookMsg, client: IngestClient, now: float) -> bool:
        if msg.checksum is None:
            return True
        mine = self.protocol.checksum(st.book)
        if mine == msg.checksum:
            return True
        if mine is not None:  # None: the venue's formatting rules are not known yet (Kraken's instrument)
            client.counters.checksum_fails += 1
            self._m_checksum.inc()
            log.info("%s %s book checksum %s, venue says %s: resubscribing", self.venue, msg.symbol, mine, msg.checksum)
        self._resync_book(st, client, now)
        return False

    def _conn_gap(self, last: int, seq: int, now: float) -> None:
        """A lost message on a connection-sequenced venue: it may have been any book's update."""
        self.conn_gaps += 1
        log.info("%s sequence_num jumped %s -> %s: resubscribing every book", self.venue, last, seq)
        for sym, st in self.books.items():
            if st.book.synced:
                client = self.clients[sym]
                client.counters.gaps += 1
                metrics.WS_SEQ_GAPS.labels(self.venue, sym, "depth").inc()
                self._resync_book(st, client, now)

    def _resync_book(self, st: _BookState, client: IngestClient, now: float) -> None:
        st.book.reset()
        st.awaiting = now
        client._set_gaps_open("depth", 1)
        client._set_state("depth", RESYNCING)
        asyncio.ensure_future(self._send(self.protocol.book_resubscribe_messages(st.native)))

    def _malformed(self, reason: str, raw: bytes | str, detail: str) -> None:
        self.malformed += 1
        metrics.WS_MALFORMED.labels(self.venue, reason).inc()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        log.warning("malformed %s message (%s): %s; raw=%r", self.venue, reason, detail, text[:_RAW_LOG_CHARS])

    # ----------------------------------------------------------------- housekeeping
    async def _housekeeping(self) -> None:
        interval = min(self.config.flush_interval_ms / 1000.0, 0.005)
        flush_s = self.config.flush_interval_ms / 1000.0
        clients = list(self.clients.values())
        next_sweep = 0.0
        last_tick = time.perf_counter()
        starved = False
        while not self._stopping:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            # a loop that could not run for a while (CPU starved, a long commit) has not read the
            # socket either: silence then says nothing about the venue
            starved = starved or now - last_tick >= self.stall_timeout_s / 4  # until the next sweep
            last_tick = now
            if self.frames != self._frames_reported:
                self._m_msgs.inc(self.frames - self._frames_reported)
                self._frames_reported = self.frames
            if self._dirty and now - self._dirty_since >= self.group_window_s:
                # a busy loop runs the overdue group commit and this tick in either order: commit
                # the group first, rather than each symbol's batch in a transaction of its own below
                self._group_flush()
            if now < next_sweep:  # between sweeps only the clients with a reorder buffer or an overdue batch
                for c in clients:  # (a batch waiting for the group commit is not overdue)
                    if c._pending or c._batch_n and now - c._batch_started >= flush_s:
                        c.housekeep(now)
                continue
            next_sweep = now + 0.02
            for c in clients:
                c.housekeep(now)
            self._observe()  # every gap and latency since the last sweep
            ws = self._ws
            if ws is None:
                continue
            if starved:
                starved = False
                self._last_frame = max(self._last_frame, now - self.stall_timeout_s / 2)
            elif now - self._last_frame >= self.stall_timeout_s:
                log.info("%s feed silent for %.1f s: reconnecting", self.venue, now - self._last_frame)
                self._last_frame = now
                ws.transport.abort()
                continue
            ping = self.protocol.ping_interval_s
            quiet = now - self._last_frame >= self.stall_timeout_s / 2 and self._last_ping < self._last_frame
            if ping and (now - self._last_ping >= ping or quiet):  # a quiet feed: prove it alive with a pong
                self._last_ping = now
                msg = self.protocol.ping_message()
                if msg is not None:
                    asyncio.ensure_future(self._send([msg]))
            for sym, st in self.books.items():
                if st.awaiting is not None and now - st.awaiting >= self.resync_timeout_s:
                    log.info("%s %s snapshot not received within %.1f s: resubscribing", self.venue, sym,
                             self.resync_timeout_s)
                    st.awaiting = now
                    asyncio.ensure_future(self._send(self.protocol.book_resubscribe_messages(st.native)))

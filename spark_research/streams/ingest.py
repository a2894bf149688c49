"""The ingest client: WebSocket trades + diff depth → validated, gap-free, durable trades and bars.

Per symbol it keeps two connections (``<symbol>@trade`` and ``<symbol>@depth@100ms``), each
reconnecting with exponential backoff and jitter (uniform in [cap/2, cap], seeded). Trades are parsed with the exchange
adapter, checked against the last stored trade id and

* dropped when already stored (duplicate),
* accepted when next in sequence,
* held in a reorder buffer otherwise; when the missing ids do not arrive within
  ``reorder_window_ms`` the gap is backfilled over REST (``historicalTrades`` from the id), then
  the buffer drains. A connection silent for ``idle_resync_s`` also checks REST, so a gap at
  the very end of a burst is closed too. The buffer is bounded (``pending_max``): while REST
  is down, live trades beyond it are shed (counted in ``ws_buffer_shed_total``) and fetched
  by the backfill once REST answers, so memory stays flat however long the outage.

Accepted trades go into a batch that is committed (one SQLite transaction, see
:mod:`~spark_research.streams.journal`) as soon as the socket has nothing more ready (next
event loop turn, at least ``min_flush_ms`` after the batch opened), and at the latest every
``flush_interval_ms`` or ``max_batch`` trades under a continuous burst, together with the 1 s /
1 min bars they closed. Only then do bar callbacks run, and only then is latency measured.

The order book follows Binance's snapshot + diff algorithm (:mod:`~spark_research.streams.book`):
a snapshot right after each (re)connect, a new one whenever the ``U``/``u`` chain breaks, and a
comparison with a fresh snapshot when the depth stream stays quiet for ``idle_resync_s``.

State for other processes: ``<root>/<exchange>-<SYMBOL>.status.json`` (every
``status_interval_s``; ``spark stream status`` prints it) and the SQLite journal beside it.

Bar hook (for the gates' paper engine)::

    client = IngestClient(IngestConfig(symbol="BTCUSDT", ws_url=ex.ws_url, rest_url=ex.rest_url))
    client.on_bar(lambda bar: print(bar.interval, bar.close))   # every closed 1s and 1m bar
    client.start()            # own thread; or `await client.run()` inside a loop

Callbacks run on the ingest's event loop after the bar is durable; they must be quick, and
an exception in one is logged and counted, never fatal.

Example::

    >>> from spark_research.streams.replay import ReplayExchange
    >>> ex = ReplayExchange(n=500, rate=5_000).start()
    >>> import tempfile
    >>> client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url, root=tempfile.mkdtemp(),
    ...                                    from_id=1)).start()
    >>> client.wait_for_id(500, timeout=20)
    True
    >>> client.stop(); ex.stop()
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from itertools import repeat
from pathlib import Path
from typing import Callable

import numpy as np
import orjson
import websockets
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from spark_research import metrics
from spark_research.config import settings
from spark_research.streams.adapters import ExchangeAdapter, MalformedMessage, Trade, TradeBatch, get_adapter
from spark_research.streams.bars import Bar, BarAggregator
from spark_research.streams.book import LocalBook
from spark_research.streams.journal import IngestJournal

log = logging.getLogger(__name__)

DISCONNECTED, CONNECTING, CONNECTED, RESYNCING = 0, 1, 2, 3
STATE_NAMES = {DISCONNECTED: "disconnected", CONNECTING: "connecting", CONNECTED: "connected", RESYNCING: "resyncing"}
_RAW_LOG_CHARS = 200


@dataclass(frozen=True)
class IngestConfig:
    """Where to connect, where to persist, and the knobs of sequencing and reconnects."""

    symbol: str = "BTCUSDT"
    ws_url: str = "ws://127.0.0.1:9443"
    rest_url: str = "http://127.0.0.1:9443"
    exchange: str = "binance"
    root: str | Path | None = None  #: default ``settings().var_dir / "ingest"``
    from_id: int | None = None  #: first trade id wanted on a fresh store; None = from the first received
    depth: bool = True  #: also maintain the local order book
    reorder_window_ms: float = 25.0
    reorder_max: int = 10_000
    #: Hard bound of the reorder buffer. While a gap cannot be backfilled (REST down), live
    #: trades beyond it are shed, not kept: the venue still has them, and the backfill that
    #: follows the gap fetches them. Memory stays bounded however long REST is away.
    pending_max: int = 200_000
    flush_interval_ms: float = 1.0  #: longest a trade waits for its commit under a continuous burst
    min_flush_ms: float = 0.0  #: batch at least this long when the socket goes idle (0: commit at once)
    max_batch: int = 2_000
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    idle_resync_s: float = 1.0
    status_interval_s: float = 0.5
    durability: str = "process"
    seed: int = 0  #: seeds the reconnect jitter (deterministic retries in tests)
    latency_window: int = 20_000  #: recent latencies kept for P50/P95 in :meth:`IngestClient.status`

    def __post_init__(self) -> None:
        positive = ("reorder_window_ms", "reorder_max", "pending_max", "flush_interval_ms", "max_batch", "backoff_initial_s",
                    "backoff_max_s", "idle_resync_s", "status_interval_s", "latency_window")
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"IngestConfig.{name} must be > 0, got {value!r}")
        for name in ("ws_url", "rest_url"):
            value = getattr(self, name)
            scheme = ("ws://", "wss://") if name == "ws_url" else ("http://", "https://")
            if not str(value).startswith(scheme):
                raise ValueError(f"IngestConfig.{name} must start with {' or '.join(scheme)}, got {value!r}")
        if not self.symbol or not self.symbol.isalnum():
            raise ValueError(f"IngestConfig.symbol must be alphanumeric, got {self.symbol!r}")
        if self.from_id is not None and self.from_id < 0:
            raise ValueError(f"IngestConfig.from_id must be >= 0, got {self.from_id!r}")

    @property
    def root_dir(self) -> Path:
        """Directory of the journal and status files."""
        return Path(self.root) if self.root is not None else settings().var_dir / "ingest"


@dataclass
class IngestCounters:
    """Plain counts mirrored from the Prometheus metrics (cheap to read for status and apps)."""

    msgs: int = 0
    trades: int = 0
    backfilled: int = 0
    duplicates: int = 0
    malformed: int = 0
    gaps: int = 0
    resyncs: int = 0
    book_resyncs: int = 0
    reconnects: int = 0
    bars: int = 0
    callback_errors: int = 0
    shed: int = 0  #: live trades not buffered because the reorder buffer was full (fetched later over REST)
    checksum_fails: int = 0  #: order books that failed the venue's checksum (each resynced)


class IngestClient:
    """Ingest of one symbol from one exchange. See the module docstring."""

    def __init__(self, config: IngestConfig, adapter: ExchangeAdapter | None = None, journal=None):
        self.config = config
        self.adapter = adapter or get_adapter(config.exchange)
        self.exchange = self.adapter.name
        self.symbol = config.symbol.upper()
        sym = self.symbol.lower()
        self.streams = {"trade": f"{sym}@trade", "depth": f"{sym}@depth"}
        root = config.root_dir
        root.mkdir(parents=True, exist_ok=True)
        # ``journal``: a store with IngestJournal's interface (a venue feed shares one file among its symbols)
        self.journal = journal if journal is not None else IngestJournal(
            root / f"{self.exchange}-{self.symbol}.sqlite", self.exchange, self.symbol, config.durability,
            checkpoint_every_s=1.0)
        self.status_path = root / f"{self.exchange}-{self.symbol}.status.json"
        self.book = LocalBook(self.symbol)
        self.bars = BarAggregator(self.symbol)
        self.counters = IngestCounters()
        self.state = {k: DISCONNECTED for k in self.streams}
        self.last_id: int | None = self.journal.last_id()
        if self.last_id is None and config.from_id is not None:
            self.last_id = config.from_id - 1
        last = self.journal.last_trade()
        if last is not None:  # resume: rebuild the open bars from the stored trades
            oldest = min(last.time_us - last.time_us % us for us in self.bars.intervals.values())
            self.bars.restore(self.journal.trades_since(oldest))
        self.last_price: float | None = last.price if last else None
        self.last_time_us: int | None = last.time_us if last else None
        self.latencies_ms: deque[float] = deque(maxlen=config.latency_window)
        self.gaps_ms: deque[float] = deque(maxlen=config.latency_window)
        self._bar_callbacks: list[Callable[[Bar], None]] = []
        # the open batch (accepted, not yet committed): trades accepted one by one, or, once a run
        # of a venue frame joined it, every trade as columns (order kept); ``_batch_n`` counts both
        self._batch: list[Trade] = []
        self._batch_cols: TradeBatch | None = None
        self._batch_n = 0
        self._batch_live_us: list[int] = []
        self._batch_started = 0.0
        self._unreported_msgs = 0
        self._gap_obs: list[float] = []
        self._closed_bars: list[Bar] = []
        self._pending: dict[int, Trade] = {}
        self._pending_since = 0.0
        self._resync_task: asyncio.Task | None = None
        self._gaps_open = {"trade": 0, "depth": 0}
        self._last_trade_msg = 0.0
        self._last_activity = time.perf_counter()  # last trade frame or (re)connect, for the idle check
        self._last_depth_activity = time.perf_counter()
        self._depth_check: asyncio.Task | None = None
        self._rng = random.Random(config.seed)
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: set by an external feed: called with this client when a batch opens, instead of scheduling
        #: its own commit (the feed commits the batches of all its symbols in one transaction)
        self.group_flush: Callable[["IngestClient"], None] | None = None
        #: set by an external feed: ``(gap values, latency values)`` lists it observes in bulk for all its symbols
        self.obs_sink: tuple[list[float], list[float]] | None = None
        self._started_at = time.time()
        self._next_status = 0.0
        ex = self.exchange
        self._m_msgs = {k: metrics.WS_MSGS.labels(ex, s) for k, s in self.streams.items()}
        self._m_gap = metrics.WS_GAP_MS.labels(ex)
        self._m_lat = metrics.INGEST_LATENCY_MS.labels(ex)
        self._m_state = {k: metrics.WS_CONN_STATE.labels(ex, s) for k, s in self.streams.items()}
        self._m_dups = metrics.WS_DUPLICATES.labels(ex, self.symbol)
        self._m_shed = metrics.WS_BUFFER_SHED.labels(ex, self.symbol)
        self._m_open = metrics.WS_SEQ_GAPS_OPEN.labels(ex, self.symbol)
        self._m_open.set(0)
        for k in self.streams:
            self._m_state[k].set(DISCONNECTED)

    # ----------------------------------------------------------------- public API
    def on_bar(self, callback: Callable[[Bar], None]) -> Callable[[Bar], None]:
        """Call ``callback(bar)`` for every closed bar (1 s and 1 min) once it is durable.

        Usable as a decorator; returns ``callback``.
        """
        self._bar_callbacks.append(callback)
        return callback

    async def run(self) -> None:
        """Ingest until :meth:`stop` (or cancellation). Runs in the current event loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._tasks = [asyncio.ensure_future(self._trade_loop()), asyncio.ensure_future(self._housekeeping())]
        if self.config.depth:
            self._tasks.append(asyncio.ensure_future(self._depth_loop()))
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass
        finally:
            for t in self._tasks:
                t.cancel()
            if self._resync_task is not None:
                self._resync_task.cancel()
            self._flush()
            self._write_status()
            self.journal.stop_checkpoints()
            for k in self.streams:
                self._set_state(k, DISCONNECTED)

    def start(self) -> "IngestClient":
        """Run :meth:`run` in a daemon thread with its own event loop; returns immediately."""
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            started.set()
            loop.run_until_complete(self.run())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"ingest-{self.symbol}", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        """Stop ingesting (flushes the last batch); joins the thread of :meth:`start`."""
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

    def attach(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread | None = None) -> None:
        """Be driven by an external feed on ``loop`` instead of :meth:`run`.

        A :class:`~spark_research.streams.venues.feed.VenueFeed` carries many symbols on one
        connection: it parses frames itself, passes each symbol's trades to that symbol's client
        with :meth:`feed_batch`, calls :meth:`housekeep` periodically and :meth:`detach` at the end.
        ``thread`` (the feed's thread, if any) lets :meth:`call` reach the loop from other threads.
        """
        self._loop, self._thread, self._stopping = loop, thread, False
        self._next_status = time.perf_counter() + self.config.status_interval_s
        self._write_status()  # visible from the start; then every status_interval_s

    def detach(self) -> None:
        """End external driving: commit the last batch, write the status, mark the streams disconnected."""
        self._stopping = True
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._flush()
        self._write_status()
        self.journal.stop_checkpoints()
        for k in self.streams:
            self._set_state(k, DISCONNECTED)
        self._thread = None

    def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the ingest's loop and return the result (consistent reads from other threads)."""
        if self._thread is None or self._loop is None:
            return fn(*args)

        async def _run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(10)

    def wait_for_id(self, trade_id: int, timeout: float) -> bool:
        """Block until trade ``trade_id`` is durable; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.journal_last_id() is not None and self.journal_last_id() >= trade_id:
                return True
            time.sleep(0.02)
        return False

    def journal_last_id(self) -> int | None:
        """Last durable trade id (read through the ingest's loop when it runs in a thread)."""
        return self.call(self.journal.last_id)

    def book_copy(self) -> tuple[int | None, dict[float, float], dict[float, float]]:
        """``(last_update_id, bids, asks)`` of the local book, copied consistently."""
        return self.call(lambda: (self.book.last_update_id, dict(self.book.bids), dict(self.book.asks)))

    def status(self) -> dict:
        """Counters, connection states, last price/id and recent latency quantiles (ms)."""
        lat = sorted(self.latencies_ms)

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {"exchange": self.exchange, "symbol": self.symbol, "pid": os.getpid(), "updated_at": time.time(),
                "started_at": self._started_at, "last_id": self.last_id, "last_price": self.last_price,
                "book_update_id": self.book.last_update_id, "best_bid": self.book.best_bid() if self.book.bids else None,
                "best_ask": self.book.best_ask() if self.book.asks else None,
                "state": {k: STATE_NAMES[v] for k, v in self.state.items()},
                "gaps_open": sum(self._gaps_open.values()),
                "latency_ms": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "n": len(lat)},
                "counters": asdict(self.counters)}

    # ----------------------------------------------------------------- plumbing
    def _set_state(self, kind: str, state: int) -> None:
        self.state[kind] = state
        self._m_state[kind].set(state)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** attempt)
        return self._rng.uniform(cap / 2, cap)  # "equal jitter": never zero, never above the cap

    def _malformed(self, reason: str, raw: bytes | str, detail: str) -> None:
        self.counters.malformed += 1
        metrics.WS_MALFORMED.labels(self.exchange, reason).inc()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        log.warning("malformed %s message (%s): %s; raw=%r", self.exchange, reason, detail, text[:_RAW_LOG_CHARS])

    def _set_gaps_open(self, kind: str, n: int) -> None:
        self._gaps_open[kind] = n
        self._m_open.set(sum(self._gaps_open.values()))

    async def _http_get(self, url: str) -> bytes:
        client = AsyncHTTPClient()
        headers = {"X-MBX-TIME-UNIT": getattr(self.adapter, "time_unit", "MILLISECOND")}
        resp = await client.fetch(url, headers=headers, request_timeout=10, connect_timeout=5)
        return resp.body

    # ----------------------------------------------------------------- trades
    async def _trade_loop(self) -> None:
        url = self.adapter.trade_stream_url(self.config.ws_url, self.symbol)
        await self._connection_loop("trade", url, self._on_trade_frame)

    async def _connection_loop(self, kind: str, url: str, handle) -> None:
        attempt = 0
        first = True
        while not self._stopping:
            self._set_state(kind, CONNECTING)
            if not first:
                self.counters.reconnects += 1
                metrics.WS_RECONNECTS.labels(self.exchange).inc()
            first = False
            try:
                async with websockets.connect(url, max_size=2 ** 22, compression=None, ping_interval=None,
                                              open_timeout=5, close_timeout=1) as ws:
                    self._set_state(kind, CONNECTED)
                    attempt = 0
                    await self._on_connected(kind)
                    async for raw in ws:
                        r = handle(raw)
                        if r is not None:
                            await r
            except asyncio.CancelledError:
                raise
            except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError) as exc:
                log.info("%s %s connection lost: %s", self.exchange, kind, exc)
            except Exception:  # a bug in one message's handling must not end the ingest
                log.exception("%s %s stream failed; reconnecting", self.exchange, kind)
            self._set_state(kind, DISCONNECTED)
            if self._stopping:
                break
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _on_connected(self, kind: str) -> None:
        if kind == "trade":
            self._last_activity = time.perf_counter()
        if kind == "depth":
            self._last_depth_activity = time.perf_counter()
            # Subscribed first, snapshot second: every event after the snapshot is on the socket,
            # so the chain check below proves continuity even if the market is quiet right now.
            self.book.reset()
            await self._book_resync(None)

    def _note_msg(self, now: float) -> None:
        last = self._last_trade_msg
        if last:
            gap_ms = (now - last) * 1000.0
            self._gap_obs.append(gap_ms)  # observed into ws_gap_ms in bulk at the next commit
            self.gaps_ms.append(gap_ms)
        self._last_trade_msg = self._last_activity = now
        self._unreported_msgs += 1  # added to ws_msgs_total at each commit: one lock per batch
        self.counters.msgs += 1

    def _note_msgs(self, now: float, n: int) -> None:
        # n trades received at ``now``: what ``_note_msg`` n times records (the gap since the last
        # trade, then n - 1 gaps of 0 ms: straight into their bucket, no list of zeros to bucket)
        self._note_msg(now)
        if n > 1:
            self.gaps_ms.extend(repeat(0.0, n - 1))
            observe_zeros(self._m_gap, n - 1)
            self._unreported_msgs += n - 1
            self.counters.msgs += n - 1

    def _on_trade_frame(self, raw: bytes | str):
        now = time.perf_counter()
        self._note_msg(now)
        try:
            t = self.adapter.parse_trade(raw)
        except MalformedMessage as exc:
            self._malformed(exc.reason, raw, str(exc))
            return None
        if t.symbol != self.symbol:
            self._malformed("symbol", raw, f"field 's' = {t.symbol!r}, expected {self.symbol!r}")
            return None
        return self._on_trade(t, now)

    def feed_trade(self, t: Trade, now: float) -> None:
        """Sequence, store and aggregate ``t`` received by an external feed (one connection, many symbols).

        ``now`` is ``time.perf_counter()`` at reception. See :meth:`attach`.
        """
        self._note_msg(now)
        self._on_trade(t, now)

    def feed_batch(self, batch: TradeBatch, now: float) -> None:
        """:meth:`feed_trade` for every trade of ``batch`` (this symbol's trades of one frame), in order.

        The usual case — the batch continues the stored sequence exactly (``last_id + 1`` onwards,
        no gap, no duplicate, nothing buffered) — is accepted as one run: one extend per column,
        the bars folded once. Anything else (a gap, a duplicate, a reorder, a reorder buffer
        waiting) goes trade by trade through the same code as :meth:`feed_trade`.
        """
        ids = batch.ids
        n = len(ids)
        if not n:
            return
        self._note_msgs(now, n)
        if self.last_id is None:  # fresh store and no from_id: start from this very trade
            self.last_id = ids[0] - 1
        first = self.last_id + 1
        if (not self._pending and ids[0] == first and ids[-1] == first + n - 1
                and (n < 3 or ids == list(range(first, first + n)))):
            self._accept_run(batch, now)
            if self._batch_n >= self.config.max_batch or (
                    (now - self._batch_started) * 1000.0 >= self.config.flush_interval_ms):
                self._flush()
            return
        for t in batch.trades():
            self._on_trade(t, now)

    def _on_trade(self, t: Trade, now: float):
        if self.last_id is None:  # fresh store and no from_id: start from this very trade
            self.last_id = t.id - 1
        tid = t.id
        if tid <= self.last_id or tid in self._pending:
            self.counters.duplicates += 1
            self._m_dups.inc()
            return None
        if tid == self.last_id + 1 and not self._pending:
            self._accept(t, True, now)
        elif len(self._pending) >= self.config.pending_max and tid != self.last_id + 1:
            self.counters.shed += 1
            self._m_shed.inc()
            if self._resync_task is None:
                self._start_resync("gap")
        else:
            if not self._pending:
                self._pending_since = now
            self._pending[tid] = t
            self._drain(now)
        if self._batch_n and (self._batch_n >= self.config.max_batch
                              or (now - self._batch_started) * 1000.0 >= self.config.flush_interval_ms):
            self._flush()
        return None

    def _open_batch(self, now: float) -> None:
        self._batch_started = now
        if self.group_flush is not None:
            self.group_flush(self)
        elif self._loop is not None:  # commit as soon as the socket has nothing more for us
            self._loop.call_soon(self._flush_when_idle)

    def _accept(self, t: Trade, live: bool, now: float) -> None:
        if not self._batch_n:
            self._open_batch(now)
        self._batch_n += 1
        self.last_id = t.id
        self.last_price = t.price
        self.last_time_us = t.time_us
        cols = self._batch_cols
        if cols is None:
            self._batch.append(t)
        else:  # after a run in the same batch
            cols.ids.append(t.id)
            cols.prices.append(t.price)
            cols.qtys.append(t.qty)
            cols.times_us.append(t.time_us)
            cols.events_us.append(t.event_us)
            cols.buyer_maker.append(t.buyer_maker)
        if live:
            self._batch_live_us.append(t.event_us)
        closed = self.bars.add(t)
        if closed:
            self._closed_bars.extend(closed)

    def _accept_run(self, run: TradeBatch, now: float) -> None:
        """``_accept(t, live=True)`` for every trade of ``run``, which continues the sequence exactly."""
        if not self._batch_n:
            self._open_batch(now)
        self._batch_n += len(run.ids)
        b = self._batch_cols
        if b is None:  # the batch turns to columns, starting with what was accepted one by one
            b = self._batch_cols = TradeBatch.of(self.symbol, self._batch)
            self._batch = []
        self.last_id = run.ids[-1]
        self.last_price = run.prices[-1]
        self.last_time_us = run.times_us[-1]
        b.ids.extend(run.ids)
        b.prices.extend(run.prices)
        b.qtys.extend(run.qtys)
        b.times_us.extend(run.times_us)
        b.events_us.extend(run.events_us)
        b.buyer_maker.extend(run.buyer_maker)
        self._batch_live_us.extend(run.events_us)
        closed = self.bars.add_run(run.ids, run.prices, run.qtys, run.times_us)
        if closed:
            self._closed_bars.extend(closed)

    def _drain(self, now: float) -> None:
        pending = self._pending
        while pending:
            nxt = self.last_id + 1
            t = pending.pop(nxt, None)
            if t is None:
                break
            self._accept(t, True, now)
        if pending and self._resync_task is None and (
                len(pending) >= self.config.reorder_max
                or (now - self._pending_since) * 1000.0 >= self.config.reorder_window_ms):
            self._start_resync("gap")

    def _start_resync(self, why: str) -> None:
        self._resync_task = asyncio.ensure_future(self._resync(why))

    async def _resync(self, why: str) -> None:
        """Backfill from ``last_id + 1`` over REST up to the reorder buffer (or until REST is exhausted)."""
        gap = why == "gap"
        try:
            if gap:
                self.counters.gaps += 1
                metrics.WS_SEQ_GAPS.labels(self.exchange, self.symbol, "trade").inc()
                self._set_gaps_open("trade", 1)
                log.info("trade gap after id %s (next buffered %s): backfilling", self.last_id, min(self._pending))
            prev_state = self.state["trade"]
            self._set_state("trade", RESYNCING)
            got = 0
            while not self._stopping:
                target = min(self._pending) - 1 if self._pending else None
                if target is not None and self.last_id >= target:
                    break
                from_id = self.last_id + 1
                limit = self.adapter.rest_limit
                until = self._pending[min(self._pending)] if self._pending else None
                try:
                    rows = await self.adapter.fetch_trades(self._http_get, self.config.rest_url, self.symbol, from_id,
                                                           limit, self.last_time_us, until)
                except (OSError, HTTPClientError, asyncio.TimeoutError, ValueError, KeyError) as exc:
                    log.warning("backfill from id %s failed: %s; retrying", from_id, exc)
                    await asyncio.sleep(self._backoff(1))
                    continue
                now = time.perf_counter()
                fresh = [t for t in rows if t.id > self.last_id]
                if fresh and target is not None and fresh[0].id > target:
                    # the venue's REST no longer has any of the missing ids (Bybit keeps only the
                    # last 60): record the hole and continue with the buffered trades after it
                    log.error("venue has no trades %s..%s; continuing after the hole", self.last_id + 1, target)
                    self.last_id = target
                    break
                for t in fresh:
                    if t.id <= self.last_id:  # arrived on the socket while we were waiting
                        continue
                    if target is not None and t.id > target:
                        break
                    if t.id != self.last_id + 1:  # the venue itself lacks these ids: record, move on
                        log.error("venue has no trades %s..%s; continuing after the hole", self.last_id + 1, t.id - 1)
                    self._pending.pop(t.id, None)
                    self._accept(t, False, now)
                    got += 1
                    self.counters.backfilled += 1
                if not fresh or len(rows) < limit and target is None:
                    break
            if gap or got:
                self.counters.resyncs += 1
                metrics.WS_RESYNCS.labels(self.exchange, self.symbol, "trade").inc()
            self._drain(time.perf_counter())
            self._flush()
            # still-buffered trades mean ids are still missing before them: the gap stays open
            self._set_gaps_open("trade", 1 if self._pending else 0)
            if self.state["trade"] == RESYNCING:
                self._set_state("trade", prev_state if prev_state != RESYNCING else CONNECTED)
        finally:
            self._resync_task = None

    def _flush_when_idle(self) -> None:
        # Runs at the next event loop turn: the receive loop has drained what the socket had ready.
        if self._batch_n and (time.perf_counter() - self._batch_started) * 1000.0 >= self.config.min_flush_ms:
            self._flush()
        elif self._batch_n and self._loop is not None:
            self._loop.call_later(self.config.min_flush_ms / 1000.0, self._flush_when_idle)

    def _flush(self) -> None:
        w = self._flush_write()
        if w is not None:
            self._flush_done(w)

    def _flush_write(self):
        """Phase 1 of a commit: metrics, then the batch into the journal (``None`` if no batch)."""
        if self._unreported_msgs:
            self._m_msgs["trade"].inc(self._unreported_msgs)
            self._unreported_msgs = 0
        if self._gap_obs:
            if self.obs_sink is not None:
                self.obs_sink[0].extend(self._gap_obs)
            else:
                observe_many(self._m_gap, self._gap_obs)
            self._gap_obs = []
        if not self._batch_n:
            return None
        batch = self._batch if self._batch_cols is None else self._batch_cols
        n, live, bars = self._batch_n, self._batch_live_us, self._closed_bars
        self._batch, self._batch_cols, self._batch_n = [], None, 0
        self._batch_live_us, self._closed_bars = [], []
        self.journal.commit(batch, bars)
        return n, live, bars

    def _flush_done(self, written) -> None:
        """Phase 2, once the batch is durable: latency, counters, bar callbacks."""
        n, live, bars = written
        now_us = time.time_ns() / 1000.0
        if len(live) > 64:  # a venue frame's run: one array expression, the same doubles as below
            lat_ms = ((now_us - np.asarray(live, dtype=np.float64)) / 1000.0).tolist()
        else:
            lat_ms = [(now_us - e) / 1000.0 for e in live]
        self.latencies_ms.extend(lat_ms)
        if self.obs_sink is not None:
            self.obs_sink[1].extend(lat_ms)
        else:
            observe_many(self._m_lat, lat_ms)
        self.counters.trades += n
        if bars:
            self.counters.bars += len(bars)
            for bar in bars:
                for cb in self._bar_callbacks:
                    try:
                        cb(bar)
                    except Exception:  # a callback must never stop the ingest
                        self.counters.callback_errors += 1
                        log.exception("on_bar callback %r failed", cb)

    # ----------------------------------------------------------------- depth
    async def _depth_loop(self) -> None:
        url = self.adapter.depth_stream_url(self.config.ws_url, self.symbol)
        await self._connection_loop("depth", url, self._on_depth_frame)

    def _on_depth_frame(self, raw: bytes | str):
        now = time.perf_counter()
        self._last_depth_activity = now
        self._m_msgs["depth"].inc()
        self.counters.msgs += 1
        try:
            upd = self.adapter.parse_depth(raw)
        except MalformedMessage as exc:
            self._malformed(exc.reason, raw, str(exc))
            return None
        if upd.symbol != self.symbol:
            self._malformed("symbol", raw, f"field 's' = {upd.symbol!r}, expected {self.symbol!r}")
            return None
        if not self.book.synced:
            return self._book_resync(upd, first=True)
        r = self.book.apply(upd)
        if r == "stale":
            self.counters.duplicates += 1
            self._m_dups.inc()
        elif r == "gap":
            self.counters.gaps += 1
            metrics.WS_SEQ_GAPS.labels(self.exchange, self.symbol, "depth").inc()
            self._set_gaps_open("depth", 1)
            log.info("depth chain broken: book at %s, event U=%s", self.book.last_update_id, upd.first_id)
            return self._book_resync(upd, first=False)
        return None

    async def _book_resync(self, upd, first: bool = True) -> None:
        """Snapshot + buffered-diff algorithm; ``upd`` is the first event seen since the break (None on connect)."""
        self._set_state("depth", RESYNCING)
        for attempt in range(50):
            url = self.adapter.snapshot_url(self.config.rest_url, self.symbol, 1000)
            try:
                snap = self.adapter.parse_snapshot(await self._http_get(url), self.symbol)
            except (OSError, HTTPClientError, asyncio.TimeoutError, ValueError, KeyError) as exc:
                log.warning("order book snapshot failed: %s", exc)
                await asyncio.sleep(self._backoff(attempt))
                continue
            if upd is None or snap.last_update_id + 1 >= upd.first_id:
                break
            await asyncio.sleep(0.05)  # snapshot older than the buffered event: ask again
        else:
            raise RuntimeError(f"no order book snapshot at or after update id {upd.first_id} after 50 attempts")
        self.book.load(snap)
        if upd is not None:
            self.book.apply(upd)  # stale (already in the snapshot) or the next link of the chain
        self.counters.book_resyncs += 1
        metrics.WS_RESYNCS.labels(self.exchange, self.symbol, "depth").inc()
        self._set_gaps_open("depth", 0)
        self._set_state("depth", CONNECTED)

    async def _check_book(self) -> None:
        """A quiet depth stream may hide a lost last event: compare with a fresh snapshot."""
        try:
            url = self.adapter.snapshot_url(self.config.rest_url, self.symbol, 1000)
            snap = self.adapter.parse_snapshot(await self._http_get(url), self.symbol)
            if self.book.synced and snap.last_update_id > self.book.last_update_id:
                log.info("depth stream quiet at %s but venue at %s: reloading the snapshot",
                         self.book.last_update_id, snap.last_update_id)
                self.counters.gaps += 1
                metrics.WS_SEQ_GAPS.labels(self.exchange, self.symbol, "depth").inc()
                self.book.load(snap)
                self.counters.book_resyncs += 1
                metrics.WS_RESYNCS.labels(self.exchange, self.symbol, "depth").inc()
        except (OSError, HTTPClientError, asyncio.TimeoutError, ValueError, KeyError) as exc:
            log.warning("order book check failed: %s", exc)
        finally:
            self._depth_check = None

    # ----------------------------------------------------------------- housekeeping
    async def _housekeeping(self) -> None:
        interval = self.config.flush_interval_ms / 1000.0
        while not self._stopping:
            await asyncio.sleep(interval)
            self.housekeep(time.perf_counter())

    def housekeep(self, now: float) -> None:
        """Periodic duties: flush a batch that waited long enough, drain/resync gaps, idle checks, status file."""
        if (self._batch_n and (now - self._batch_started) * 1000.0 >= self.config.flush_interval_ms) or (
                not self._batch_n and self._unreported_msgs):
            self._flush()
        if self._pending and self._resync_task is None:
            self._drain(now)
        idle = now - self._last_activity
        if (self._resync_task is None and self.last_id is not None and self.state["trade"] == CONNECTED
                and idle >= self.config.idle_resync_s):
            self._last_activity = now  # one REST check per idle period
            self._start_resync("idle")
        if (self.config.depth and self.book.synced and self.state["depth"] == CONNECTED
                and self._depth_check is None and now - self._last_depth_activity >= self.config.idle_resync_s):
            self._last_depth_activity = now
            self._depth_check = asyncio.ensure_future(self._check_book())
        if now >= self._next_status:
            self._next_status = now + self.config.status_interval_s
            self._write_status()

    def _write_status(self) -> None:
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_bytes(orjson.dumps(self.status()))
            os.replace(tmp, self.status_path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_path, exc)


def observe_many(hist, values: list[float]) -> None:
    """Add ``values`` to a (labelled) Prometheus histogram, same result as ``observe`` per value.

    Large batches are bucketed with numpy and added with one increment per bucket; small
    ones (and any prometheus_client whose internals differ) go through ``observe``.

    Example::

        >>> from spark_research import metrics
        >>> observe_many(metrics.WS_GAP_MS.labels("doc"), [0.3, 7.0, 7.5])
    """
    bounds = getattr(hist, "_upper_bounds", None)
    buckets, total = getattr(hist, "_buckets", None), getattr(hist, "_sum", None)
    if len(values) < 32 or bounds is None or buckets is None or total is None:
        for v in values:
            hist.observe(v)
        return
    arr = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts):  # `observe` puts v in the first bucket with v <= bound
        buckets[i].inc(int(counts[i]))
    total.inc(float(arr.sum()))


def observe_zeros(hist, count: int) -> None:
    """``hist.observe(0.0)`` ``count`` times: one increment of 0's bucket where the client allows.

    Example (the gaps between the trades of one frame)::

        >>> from spark_research import metrics
        >>> observe_zeros(metrics.WS_GAP_MS.labels("doc"), 40)
    """
    bounds = getattr(hist, "_upper_bounds", None)
    buckets = getattr(hist, "_buckets", None)
    if bounds is None or buckets is None:
        for _ in range(count):
            hist.observe(0.0)
        return
    buckets[bisect.bisect_left(bounds, 0.0)].inc(count)  # as `observe`: the first bucket with 0 <= bound; sum += 0


def read_status(root: str | Path | None = None) -> list[dict]:
    """Status of every ingest under ``root`` (default ``settings().var_dir / "ingest"``), from its status files.

    Example: ``read_status()[0]["counters"]["msgs"]``.
    """
    base = Path(root) if root is not None else settings().var_dir / "ingest"
    return [orjson.loads(p.read_bytes()) for p in sorted(base.glob("*.status.json"))]


def run_ingest(config: IngestConfig, duration_s: float | None = None,
               on_bar: Callable[[Bar], None] | None = None) -> dict:
    """Run an ingest in the current thread until ``duration_s`` passes (forever if None) or Ctrl-C.

    Returns the final :meth:`IngestClient.status`.

    Example: ``run_ingest(IngestConfig(ws_url="ws://127.0.0.1:9443", rest_url="http://127.0.0.1:9443"), 10)``.
    """
    client = IngestClient(config)
    if on_bar is not None:
        client.on_bar(on_bar)

    async def main() -> None:
        task = asyncio.ensure_future(client.run())
        if duration_s is not None:
            await asyncio.sleep(duration_s)
            client.stop()
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return client.status()

"""One ingest for many symbols across venues: ``spark stream ingest --venue binance:BTCUSDT,ETHUSDT --venue kraken:BTC/USD``.

:func:`build_multi_ingest` turns ``venue:SYM1,SYM2`` specs into a :class:`MultiIngest` running,
on one event loop (one thread or one process):

* for Coinbase, Kraken, OKX and Bybit one :class:`~spark_research.streams.venues.feed.VenueFeed`
  per venue — a single WebSocket carrying every symbol's subscriptions, each symbol's trade
  sequence and book checked on its own;
* for Binance one :class:`~spark_research.streams.ingest.IngestClient` per symbol (Binance's
  per-stream URLs, as the replay exchange serves them).

Every symbol keeps its own status file under ``root`` (``<venue>-<SYMBOL>.status.json``), so
``spark stream status`` and :func:`~spark_research.streams.ingest.read_status` show them all; a
Binance symbol journals into ``binance-<SYMBOL>.sqlite``, a venue feed all its symbols into
``<venue>.sqlite`` (one transaction per event-loop turn for all of them).
Venue URLs default to the venues' public endpoints; ``urls={"kraken": ("ws://127.0.0.1:9001",
"http://127.0.0.1:9001")}`` points a venue elsewhere (the replay exchange).

Example::

    >>> import tempfile
    >>> from spark_research.streams.venues.replay import VenueReplay
    >>> ex = VenueReplay("okx", ["BTC-USDT"], n=200, rate=2_000).start()
    >>> m = build_multi_ingest(["okx:BTC-USDT"], urls={"okx": (ex.ws_url, ex.rest_url)},
    ...                        root=tempfile.mkdtemp(), from_id=1).start()
    >>> m.wait_for_ids({("okx", "BTCUSDT"): 200}, timeout=20)
    True
    >>> m.stop(); ex.stop()
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.venues import VENUES
from spark_research.streams.venues.base import canonical
from spark_research.streams.venues.feed import VenueFeed

#: The venues' public endpoints (WebSocket base, REST base); each venue adds its own path.
DEFAULT_URLS: dict[str, tuple[str, str]] = {
    "binance": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "coinbase": ("wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com"),
    "kraken": ("wss://ws.kraken.com", "https://api.kraken.com"),
    "okx": ("wss://ws.okx.com:8443", "https://www.okx.com"),
    "bybit": ("wss://stream.bybit.com", "https://api.bybit.com"),
}


@dataclass(frozen=True)
class VenueSpec:
    """``venue`` and the symbols to ingest from it (any spelling: ``BTC/USD``, ``BTC-USD``, ``BTCUSD``)."""

    venue: str
    symbols: tuple[str, ...]


def parse_venue_spec(spec: str) -> VenueSpec:
    """``"kraken:BTC/USD,ETH/USD"`` → ``VenueSpec("kraken", ("BTC/USD", "ETH/USD"))``.

    Example: ``parse_venue_spec("binance:BTCUSDT").symbols`` → ``('BTCUSDT',)``.
    """
    venue, sep, rest = spec.partition(":")
    venue = venue.strip().lower()
    if not sep or not venue:
        raise ValueError(f"venue spec {spec!r}: expected VENUE:SYMBOL[,SYMBOL...], e.g. 'kraken:BTC/USD'")
    if venue not in DEFAULT_URLS:
        raise ValueError(f"venue spec {spec!r}: venue {venue!r} unknown; known: {sorted(DEFAULT_URLS)}")
    symbols = tuple(s.strip() for s in rest.split(",") if s.strip())
    if not symbols:
        raise ValueError(f"venue spec {spec!r}: no symbols after {venue + ':'!r}")
    return VenueSpec(venue, symbols)


def parse_venue_url(text: str) -> tuple[str, tuple[str, str]]:
    """``"kraken=ws://127.0.0.1:9001"`` (REST on the same host and port) or ``"kraken=WS,HTTP"``."""
    venue, sep, urls = text.partition("=")
    if not sep or venue.strip().lower() not in DEFAULT_URLS:
        raise ValueError(f"venue url {text!r}: expected VENUE=WS_URL[,REST_URL] with VENUE in {sorted(DEFAULT_URLS)}")
    ws, _, rest = urls.partition(",")
    if not ws.startswith(("ws://", "wss://")):
        raise ValueError(f"venue url {text!r}: WS_URL {ws!r} must start with ws:// or wss://")
    rest = rest or ws.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    return venue.strip().lower(), (ws, rest)


class MultiIngest:
    """Many venues and symbols on one event loop. Build with :func:`build_multi_ingest`."""

    def __init__(self, feeds: list[VenueFeed], clients: list[IngestClient]):
        self.feeds, self.clients = feeds, clients
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._main: asyncio.Future | None = None

    def symbols(self) -> list[tuple[str, str]]:
        """Every ``(venue, canonical symbol)`` ingested."""
        return [(f.venue, s) for f in self.feeds for s in f.clients] + [(c.exchange, c.symbol) for c in self.clients]

    def client(self, venue: str, symbol: str) -> IngestClient:
        """The :class:`~spark_research.streams.ingest.IngestClient` of ``venue``/``symbol``."""
        sym = canonical(symbol)
        for f in self.feeds:
            if f.venue == venue and sym in f.clients:
                return f.clients[sym]
        for c in self.clients:
            if c.exchange == venue and c.symbol == sym:
                return c
        raise KeyError(f"{venue}:{symbol} is not ingested here; have {self.symbols()}")

    async def run(self) -> None:
        """Run every feed and client until :meth:`stop` (or cancellation)."""
        self._loop = asyncio.get_running_loop()
        for f in self.feeds:
            f._thread = self._thread
        self._main = asyncio.gather(*(f.run() for f in self.feeds), *(c.run() for c in self.clients))
        try:
            await self._main
        except asyncio.CancelledError:
            pass

    def start(self) -> "MultiIngest":
        """Run in a daemon thread with its own event loop; returns immediately."""
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            started.set()
            loop.run_until_complete(self.run())
            loop.close()

        self._thread = threading.Thread(target=main, name="multi-ingest", daemon=True)
        for c in self.clients:
            c._thread = self._thread
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        """Stop everything (every symbol commits its last batch) and join the thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def _cancel() -> None:
            for f in self.feeds:
                f._stopping = True
                for t in f._tasks:
                    t.cancel()
            for c in self.clients:
                c._stopping = True
                for t in c._tasks:
                    t.cancel()

        if self._thread is not None and threading.current_thread() is not self._thread:
            loop.call_soon_threadsafe(_cancel)
            self._thread.join(20)
            self._thread = None
        else:
            _cancel()
        for c in self.clients:
            c._thread = None

    def close(self) -> None:
        """Close every journal (after :meth:`stop`)."""
        for f in self.feeds:
            f.close()
        for c in self.clients:
            c.journal.close()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the ingest's loop and return the result (consistent reads from other threads)."""
        loop = self._loop
        if self._thread is None or loop is None or threading.current_thread() is self._thread:
            return fn(*args)

        async def _run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), loop).result(10)

    def wait_for_ids(self, last_ids: dict[tuple[str, str], int], timeout: float) -> bool:
        """Block until every ``{(venue, symbol): trade id}`` is durable; False on timeout."""
        deadline = time.monotonic() + timeout
        clients = {k: self.client(*k) for k in last_ids}
        while time.monotonic() < deadline:
            if all((c.journal_last_id() or 0) >= last_ids[k] for k, c in clients.items()):
                return True
            time.sleep(0.02)
        return False

    def status(self) -> list[dict]:
        """Every symbol's :meth:`~spark_research.streams.ingest.IngestClient.status`."""
        out = []
        for f in self.feeds:
            out += [c.call(c.status) for c in f.clients.values()]
        return out + [c.call(c.status) for c in self.clients]


def build_multi_ingest(specs: list[str | VenueSpec], *, urls: dict[str, tuple[str, str]] | None = None,
                       root: str | Path | None = None, from_id: int | None = None, depth: bool = True,
                       **ingest_options) -> MultiIngest:
    """A :class:`MultiIngest` for ``venue:SYM,SYM`` specs (see the module docstring).

    ``ingest_options`` are :class:`~spark_research.streams.ingest.IngestConfig` fields for every
    symbol; ``stall_timeout_s`` / ``resync_timeout_s`` / ``group_window_ms`` go to the venue feeds.

    Example: ``build_multi_ingest(["binance:BTCUSDT,ETHUSDT", "kraken:BTC/USD"]).start()``.
    """
    urls = {**DEFAULT_URLS, **(urls or {})}
    feed_only = {k: ingest_options.pop(k) for k in ("stall_timeout_s", "resync_timeout_s", "group_window_ms")
                 if k in ingest_options}
    merged: dict[str, list[str]] = {}
    for spec in specs:
        s = parse_venue_spec(spec) if isinstance(spec, str) else spec
        merged.setdefault(s.venue, []).extend(x for x in s.symbols if x not in merged.get(s.venue, []))
    feeds, clients = [], []
    for venue, symbols in merged.items():
        ws, rest = urls[venue]
        if venue == "binance":
            for sym in symbols:
                clients.append(IngestClient(IngestConfig(symbol=canonical(sym), exchange="binance", ws_url=ws,
                                                         rest_url=rest, root=root, from_id=from_id, depth=depth,
                                                         **ingest_options)))
        elif venue in VENUES:
            feeds.append(VenueFeed(venue, symbols, ws, rest, root=root, from_id=from_id, depth=depth, **feed_only,
                                   **ingest_options))
    return MultiIngest(feeds, clients)


def run_multi_ingest(ingest: MultiIngest, duration_s: float | None = None) -> list[dict]:
    """Run ``ingest`` in the current thread for ``duration_s`` (forever if None) or until Ctrl-C; returns the statuses."""
    async def main() -> None:
        task = asyncio.ensure_future(ingest.run())
        if duration_s is not None:
            await asyncio.sleep(duration_s)
            ingest.stop()
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return [c.status() for f in ingest.feeds for c in f.clients.values()] + [c.status() for c in ingest.clients]

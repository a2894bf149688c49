"""The live ingest as a process of its own: replay exchange, ingest, bar channel, and the multi-venue ingest.

``spark serve`` starts it with ``python -m spark_research.streams.service`` and watches it
(:mod:`spark_research.platform.supervisor`): the latency-critical ingest loop then never
shares an interpreter (and its GIL) with Panel's rendering, the paper session or the Dask
client. Killed, it is restarted and continues from its journal's last stored trade id (the
replay tape too), so nothing stored is lost or duplicated.

Besides the Binance demo stream (``--symbol``, the one the paper/live session trades), each
``--venue VENUE:SYM1,SYM2`` (repeatable; Coinbase, Kraken, OKX, Bybit) adds that venue's replay
on 127.0.0.1 and its symbols to one multi-venue ingest in this process
(:class:`~spark_research.streams.served_venues.ServedVenues`, journals under ``--root``; each
symbol resumes after its last stored id on a restart too).

Its face, on ``127.0.0.1:<port>`` (the port is written to ``--state-file`` once it listens):

``GET /health``    pid, uptime, the exchange's URLs, channel subscribers, ``venues`` served
``GET /snapshot``  :meth:`StreamPipeline.snapshot` as JSON (what the stream monitor draws), plus
                   ``venues`` (per venue and symbol: connection and book state, last price,
                   counters, latency P50/P95, best bid/ask with sizes; the demo stream included)
                   and ``consolidated`` (per instrument: the consolidated top of book,
                   :mod:`spark_research.streams.consolidated`)
``GET /metrics``   this process's stream metrics, Prometheus text (relayed by the web
                   server's ``/metrics``, so Prometheus scrapes every series once)
``GET /bars?after_us=N``  the bar channel: one JSON line per closed bar, first the kept 1 s
                   bars after ``N`` (a subscriber that reconnects misses nothing kept), then
                   every bar as it closes. Each subscriber has a bounded queue: a subscriber
                   that does not keep up loses its oldest bars, counted in
                   ``stream_channel_dropped_total`` (depth in ``stream_channel_queue_depth``).

Example::

    python -m spark_research.streams.service --symbol BTCUSDT --rate 200 --root var/ingest \
        --venue coinbase:BTC-USD,ETH-USD --venue kraken:BTC/USD --state-file var/ingest.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spark_research import metrics
from spark_research.streams.venues.base import canonical

#: Bars a subscriber may have waiting before its oldest are dropped.
CHANNEL_QUEUE = 10_000
#: Families of metrics this process owns (the web server relays exactly these).
OWNED_METRICS = ("ws_", "ingest_latency_ms", "stream_channel_", "book_checksum_fail")


class BarChannel:
    """Fan-out of closed bars to subscribers, each behind a bounded queue (never blocks the ingest)."""

    def __init__(self, maxsize: int = CHANNEL_QUEUE):
        self.maxsize = maxsize
        self._subs: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._next = 0

    def publish(self, bar: Any) -> None:
        """Called on the ingest's thread for every closed bar: O(subscribers), no I/O."""
        metrics.STREAM_CHANNEL_BARS.inc()
        with self._lock:
            subs = list(self._subs.items())
        for sid, q in subs:
            try:
                q.put_nowait(bar)
            except queue.Full:
                try:
                    q.get_nowait()  # the slow subscriber loses its oldest bar, not the ingest its time
                except queue.Empty:
                    pass
                metrics.STREAM_CHANNEL_DROPPED.labels(subscriber=str(sid)).inc()
                try:
                    q.put_nowait(bar)
                except queue.Full:
                    pass
            metrics.STREAM_CHANNEL_QUEUE_DEPTH.labels(subscriber=str(sid)).set(q.qsize())

    def subscribe(self) -> tuple[int, queue.Queue]:
        with self._lock:
            sid, self._next = self._next, self._next + 1
            q: queue.Queue = queue.Queue(maxsize=self.maxsize)
            self._subs[sid] = q
        return sid, q

    def unsubscribe(self, sid: int) -> None:
        with self._lock:
            self._subs.pop(sid, None)
        metrics.STREAM_CHANNEL_QUEUE_DEPTH.labels(subscriber=str(sid)).set(0)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)


def prime_metrics(symbol: str, exchange: str = "binance") -> None:
    """Zero-valued series of the ingest's failure counters, so the first scrape shows them
    (a counter that appears only at its first increment makes ``increase()`` miss it).

    ``symbol`` is the journal/metrics (canonical) name, e.g. ``BTCUSD`` for Kraken's ``BTC/USD``."""
    for kind in ("trade", "depth"):
        metrics.WS_SEQ_GAPS.labels(exchange, symbol, kind)
        metrics.WS_RESYNCS.labels(exchange, symbol, kind)
    metrics.WS_SEQ_GAPS_OPEN.labels(exchange, symbol)
    metrics.WS_DUPLICATES.labels(exchange, symbol)
    metrics.WS_RECONNECTS.labels(exchange)
    for reason in ("json", "schema", "invalid", "symbol"):
        metrics.WS_MALFORMED.labels(exchange, reason)
    metrics.STREAM_CHANNEL_BARS.inc(0)
    metrics.BOOK_CHECKSUM_FAIL.labels(exchange)
    if exchange == "binance":
        for field in ("trade.T", "trade.E", "depth.E", "rest.time"):  # the Binance adapter's checked time fields
            metrics.WS_TIME_UNIT_FIXES.labels(exchange, field)


class IngestService:
    """The pipeline, its bar channel and its HTTP face in this process."""

    def __init__(self, *, symbol: str, rate: float, faults: str, orders: str, tape: int, root: Path,
                 port: int = 0, exchange_port: int = 0, venues: list[str] | tuple[str, ...] = (),
                 venue_rate: float | None = None, venue_faults: str | None = None, venue_tape: int | None = None):
        from spark_research.streams import served_venues as sv
        from spark_research.streams.orders import OrderConfig
        from spark_research.streams.pipeline import StreamPipeline
        from spark_research.streams.replay import Faults

        self.t0 = time.monotonic()
        self.pipeline = StreamPipeline(symbol=symbol, rate=rate, faults=Faults.parse(faults),
                                       orders=OrderConfig.parse(orders), n=tape, root=root,
                                       exchange_port=exchange_port)
        self.venues = sv.ServedVenues(
            venues, root=root, rate_per_symbol=venue_rate or sv.DEMO_RATE_PER_SYMBOL,
            faults=Faults.parse(sv.DEMO_VENUE_FAULTS if venue_faults is None else venue_faults),
            n=venue_tape or sv.DEMO_TAPE)
        self.channel = BarChannel()
        self._stop = threading.Event()
        self._venues_start: threading.Thread | None = None
        self._port = port
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> "IngestService":
        prime_metrics(self.pipeline.symbol)
        for venue, natives in self.venues.venues().items():
            for native in natives:
                prime_metrics(canonical(native), venue)
        self.pipeline.start()
        self.pipeline.on_bar(self.channel.publish)
        # the venue replays' tapes take a second to build: the demo stream answers meanwhile
        self._venues_start = threading.Thread(target=self.venues.start, name="venues-start", daemon=True)
        self._venues_start.start()
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="ingest-http", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def health(self) -> dict[str, Any]:
        ex = self.pipeline.exchange
        return {"pid": os.getpid(), "uptime_s": round(time.monotonic() - self.t0, 2), "symbol": self.pipeline.symbol,
                "ws_url": ex.ws_url, "rest_url": ex.rest_url, "subscribers": self.channel.subscribers,
                "venues": self.venues.venues()}

    def snapshot(self) -> dict[str, Any]:
        """The demo stream's :meth:`StreamPipeline.snapshot` plus the ``venues`` and ``consolidated`` sections."""
        from spark_research.streams.served_venues import stream_snapshot

        return stream_snapshot(self.pipeline, self.venues)

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
        if self._venues_start is not None:
            self._venues_start.join(30)
        self.venues.stop()  # every venue symbol commits its last batch
        self.pipeline.stop()  # flushes the ingest's last batch


def _handler(service: IngestService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:  # no line per request on stderr
            return

        def _json(self, body: Any, code: int = 200) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path == "/health":
                    self._json(service.health())
                elif url.path == "/snapshot":
                    self._json(service.snapshot())
                elif url.path == "/metrics":
                    body, ctype = metrics.render()
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif url.path == "/bars":
                    after = int(urllib.parse.parse_qs(url.query).get("after_us", ["0"])[0])
                    self._bars(after)
                else:
                    self._json({"error": f"no route {url.path!r}"}, 404)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _bars(self, after_us: int) -> None:
            sid, q = service.channel.subscribe()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                kept = [b for b in list(service.pipeline.bars_1s) if b.start_us > after_us]
                for b in kept:
                    self.wfile.write(_line(b))
                self.wfile.flush()
                last_1s = max((b.start_us for b in kept), default=after_us)
                while not service._stop.is_set():
                    try:
                        bar = q.get(timeout=1.0)
                    except queue.Empty:
                        self.wfile.write(b"\n")  # heartbeat: a dead subscriber is noticed within a second
                        self.wfile.flush()
                        continue
                    if bar.interval == "1s" and bar.start_us <= last_1s:
                        continue  # already sent from the kept bars
                    self.wfile.write(_line(bar))
                    self.wfile.flush()
            finally:
                service.channel.unsubscribe(sid)

    return Handler


def _line(bar: Any) -> bytes:
    return (json.dumps(dataclasses.asdict(bar)) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_research.streams.service", description=__doc__.split("\n")[0])
    p.add_argument("--symbol", default="BTCUSDT")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--faults", default="")
    p.add_argument("--orders", default="")
    p.add_argument("--tape", type=int, default=500_000)
    p.add_argument("--root", required=True, help="ingest journal directory")
    p.add_argument("--port", type=int, default=0, help="this process's HTTP port (0: any free one)")
    p.add_argument("--exchange-port", type=int, default=0,
                   help="the replay exchange's port: the same on every restart, so order entry URLs stay valid")
    p.add_argument("--state-file", required=True, help="JSON file written with the port once listening")
    p.add_argument("--venue", action="append", default=[], metavar="VENUE:SYM[,SYM]",
                   help="also ingest these symbols from VENUE's replay (repeatable; coinbase, kraken, okx, bybit), "
                        "e.g. kraken:BTC/USD")
    p.add_argument("--venue-rate", type=float, default=None,
                   help="trade messages per second per --venue symbol (default 20)")
    p.add_argument("--venue-faults", default=None,
                   help="fault knobs of the --venue replays (Faults.parse form; default: a skipped frame and a "
                        "wrong checksum now and then; '' for clean feeds)")
    p.add_argument("--venue-tape", type=int, default=None, help="trades per --venue symbol per tape (default 100000)")
    args = p.parse_args(argv)
    from spark_research.streams.served_venues import served_spec

    for spec in args.venue:
        try:
            served_spec(spec)
        except ValueError as exc:
            p.error(f"--venue: {exc}")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the demo's replay injects malformed frames on purpose; they are counted in ws_malformed_total
    logging.getLogger("spark_research.streams.ingest").setLevel(logging.ERROR)
    # The supervisor stops this process with SIGTERM; a terminal's Ctrl-C reaches it too (same
    # process group) and is left to the supervisor, which stops every component in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get("SPARK_SUPERVISOR_PID"):
        from spark_research._lifecycle import die_with_parent

        die_with_parent(int(os.environ["SPARK_SUPERVISOR_PID"]))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    service = IngestService(symbol=args.symbol, rate=args.rate, faults=args.faults, orders=args.orders,
                            tape=args.tape, root=Path(args.root), port=args.port,
                            exchange_port=args.exchange_port, venues=args.venue, venue_rate=args.venue_rate,
                            venue_faults=args.venue_faults, venue_tape=args.venue_tape).start()
    from spark_research._lifecycle import write_json_atomic

    write_json_atomic(args.state_file, {"pid": os.getpid(), "port": service.port, **service.health()})
    done.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stream ingest benchmark: throughput and latency against a bare `websockets` + orjson loop.

The replay exchange runs in its own process (``spark stream replay``) so server and client do
not share a GIL. Each measurement gets a fresh exchange that holds its tape until the client's
trade stream is connected (``--min-clients 1``).

1. Throughput: the exchange publishes as fast as it can; the *bare loop* (receive + orjson.loads,
   nothing else: the floor) and the *ingest* (parse → validate → gap check → bars → SQLite commit)
   each receive the same tape; msg/s = messages / (last persisted − first received).
2. Latency at 10k msg/s: exchange event time ``E`` (µs) → persisted, P50/P95/P99, with the
   diff-depth stream and local book on, as in production; the bare loop's E → parsed latency
   at the same rate is printed as the floor.
3. Venues (alone: ``--only venues``): 100 symbols over the Coinbase, Kraken, OKX and Bybit protocols (25
   each, one ``spark stream replay --venue`` process per venue, one connection per venue), one
   :class:`~spark_research.streams.multi.MultiIngest` for all of them. Throughput with every
   replay unthrottled against the bare loop over the same four connections (subscribe, receive,
   orjson.loads, count trades); latency at 10k msg/s in total (2.5k per venue) with the books on,
   venue trade time → persisted (OKX and Bybit stamp trades in whole milliseconds, so their
   latencies read up to 1 ms high).
4. cryptofeed (after the venues, or alone: ``--only cryptofeed``): our multi-venue ingest against
   cryptofeed 2.4.1 on the three venues whose protocol it speaks in the version replayed here
   (Coinbase Advanced Trade ``market_trades``, OKX v5 ``trades``, Bybit v5 spot ``publicTrade``;
   not Kraken: see ``CRYPTOFEED_NOTE``), 25 symbols each by default, the same tape, fresh replays per run,
   unthrottled; throughput and the paired ratio ours/cryptofeed (target ≥ 2×). cryptofeed runs in
   ``bench/cryptofeed_peer.py`` under its own interpreter (``--cryptofeed-python``, default
   ``/tmp/cfvenv/bin/python``; ``make cryptofeed-venv`` creates it): it is not in the ``bench``
   extra because it builds from its sdist (Cython, yapic.json, order_book: a C compiler and ~45 s on
   every ``make install``, i.e. every CI run and fresh clone) and pulls uvloop, aiofile, aiodns and
   pycares into the project's environment for a figure only ``make bench`` prints. It installs
   cleanly against ``constraints.txt`` (websockets 17.4, aiohttp 3.14.5: the versions our ingest
   runs on). The peer points it at loopback (``bench/cryptofeed_peer.py`` says how) and counts
   trades in its callback, alone (``count``: its floor) and appending each trade to a list
   (``list``: the least a user does); our ingest validates, gap-checks, builds bars and commits
   every trade to SQLite. cryptofeed keeps its default uvloop event loop; our ingest runs on asyncio's.

Targets (SPEC, issue 14): ingest latency P95 < 5 ms at 10k msg/s; throughput ≥ 50 % of the bare loop
and ≥ 2× cryptofeed.
Each side runs ``--runs`` times (default 5), bare loop and ingest back to back: every figure is the
median [min–max] over the runs (a latency percentile is taken within each run, then over runs)
and the throughput ratio is the median [min–max] of the per-pair ratios. Never asserts on wall
time, but exits 1 if the ingest's stored ids differ from the exchange's (results disagree).
Figures of a default run go to ``bench/results.json``.

Run: ``.venv/bin/python bench/streams.py`` (about 2 minutes for the Binance section, 4 more for the
venues, 2 more against cryptofeed; ``--only binance|venues|cryptofeed`` runs one, not recorded;
``--quick``, smaller runs, not recorded).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _results import RESULTS, record  # noqa: E402
from _timing import MIN_RUNS, Spread, ratios  # noqa: E402

from spark_research.streams.ingest import IngestClient, IngestConfig  # noqa: E402
from spark_research.streams.multi import build_multi_ingest  # noqa: E402
from spark_research.streams.venues import VENUES, get_venue  # noqa: E402

#: The venues cryptofeed is measured on: it speaks their protocol in the version the replay serves.
CRYPTOFEED_VENUES = ("coinbase", "okx", "bybit")
#: Which venues cryptofeed is compared on, and why not the others (printed with the figures).
CRYPTOFEED_NOTE = (
    "cryptofeed 2.4.1 compared on Coinbase (Advanced Trade market_trades), OKX (v5 trades) and Bybit (v5 spot "
    "publicTrade): the same protocol versions as the replay; its wss:// class endpoints are replaced by the "
    "replay's ws:// URLs and its symbol cache is filled up front (no REST call), see bench/cryptofeed_peer.py. "
    "Not on Kraken: cryptofeed's Kraken feed speaks WebSocket v1 (wss://ws.kraken.com, event/subscribe, "
    "array frames), the replay serves v2 (method/subscribe, JSON objects)")
#: One command line that creates the peer's interpreter (what ``make cryptofeed-venv`` runs).
CRYPTOFEED_VENV_CMD = ("python3 -m venv /tmp/cfvenv && /tmp/cfvenv/bin/pip install -c constraints.txt "
                       "cryptofeed==2.4.1")


class Exchange:
    """``spark stream replay`` in a subprocess."""

    def __init__(self, n: int, rate: float):
        cmd = [sys.executable, "-m", "spark_research.cli", "stream", "replay", "--port", "0", "--n", str(n),
               "--rate", str(rate), "--min-clients", "1"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("replay exchange did not start")
        urls = json.loads(line)
        self.ws_url, self.rest_url, self.n = urls["ws_url"], urls["rest_url"], n

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


async def bare_loop(ex: Exchange, timeout: float) -> tuple[float, list[float]]:
    """Receive + orjson.loads only. Returns (msg/s, latencies E→parsed in ms)."""
    url = f"{ex.ws_url}/ws/btcusdt@trade?timeUnit=MICROSECOND"
    lat: list[float] = []
    n = 0
    t0 = None
    deadline = time.monotonic() + timeout
    async with websockets.connect(url, max_size=2 ** 22, compression=None, ping_interval=None) as ws:
        while n < ex.n and time.monotonic() < deadline:
            raw = await ws.recv()
            m = orjson.loads(raw)
            now = time.time_ns() / 1000.0
            if t0 is None:
                t0 = time.perf_counter()
            lat.append((now - m["E"]) / 1000.0)
            n += 1
    elapsed = time.perf_counter() - t0
    return n / elapsed, lat


async def ingest_run(ex: Exchange, depth: bool, timeout: float) -> tuple[float, list[float], np.ndarray]:
    """The full ingest. Returns (msg/s, latencies E→persisted in ms, stored ids)."""
    root = tempfile.mkdtemp(prefix="bench-ingest-")
    client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url, root=root, from_id=1, depth=depth,
                                       latency_window=ex.n + 1))
    task = asyncio.ensure_future(client.run())
    t0 = None
    deadline = time.monotonic() + timeout
    while client.counters.trades < ex.n and time.monotonic() < deadline:
        if t0 is None and client.counters.msgs:
            t0 = time.perf_counter()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    n = client.counters.trades
    client.stop()
    await task
    ids = client.journal.trades()["seq"].to_numpy()
    client.journal.close()
    return n / max(elapsed, 1e-9), list(client.latencies_ms), ids


class VenueExchanges:
    """One ``spark stream replay --venue`` process per venue, ``per_venue`` symbols each (started in parallel)."""

    def __init__(self, per_venue: int, n_per_symbol: int, rate_per_venue: float, venues: tuple[str, ...] = VENUES):
        self.symbols = {v: [f"S{i:02d}{'USD' if v in ('coinbase', 'kraken') else 'USDT'}" for i in range(per_venue)]
                        for v in venues}
        self.n = n_per_symbol
        self.procs, self.urls = {}, {}
        for v in venues:
            cmd = [sys.executable, "-m", "spark_research.cli", "stream", "replay", "--venue", v, "--symbols",
                   ",".join(self.symbols[v]), "--port", "0", "--n", str(n_per_symbol), "--rate", str(rate_per_venue),
                   "--min-clients", "1"]
            self.procs[v] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for v, p in self.procs.items():
            line = p.stdout.readline()
            if not line:
                self.close()
                raise RuntimeError(f"{v} replay did not start")
            u = json.loads(line)
            self.urls[v] = (u["ws_url"], u["rest_url"])

    @property
    def total(self) -> int:
        return self.n * sum(len(s) for s in self.symbols.values())

    def close(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(10)


def _trades_in(venue: str, m) -> int:
    """Trades a parsed frame carries (the bare loop's only look inside a message)."""
    if venue == "okx":
        return len(m["data"]) if "data" in m and m["arg"]["channel"] == "trades" else 0
    if venue == "kraken":
        return len(m["data"]) if m.get("channel") == "trade" else 0
    if venue == "bybit":
        return len(m["data"]) if m.get("topic", "").startswith("publicTrade") else 0
    return sum(len(e["trades"]) for e in m["events"]) if m.get("channel") == "market_trades" else 0


async def bare_venues(ex: VenueExchanges, timeout: float) -> float:
    """The floor over the four venue connections: subscribe, receive, orjson.loads, count. Returns msg/s."""
    got = 0
    t0: list[float] = []
    t_last = time.perf_counter()
    deadline = time.monotonic() + timeout

    async def one(venue: str) -> None:
        nonlocal got, t_last
        proto = get_venue(venue)
        natives = [proto.native(s) for s in ex.symbols[venue]]
        async with websockets.connect(proto.ws_url(ex.urls[venue][0]), max_size=2 ** 24, compression=None,
                                      ping_interval=None) as ws:
            for msg in proto.subscribe_messages(natives, depth=False):
                await ws.send(msg)
            mine, want = 0, ex.n * len(natives)
            while mine < want and time.monotonic() < deadline:
                raw = await ws.recv()
                if raw in ("pong", b"pong"):
                    continue
                k = _trades_in(venue, orjson.loads(raw))
                if k:
                    if not t0:
                        t0.append(time.perf_counter())
                    mine += k
                    got += k
                    t_last = time.perf_counter()

    await asyncio.gather(*(one(v) for v in ex.symbols))
    return got / max(t_last - t0[0], 1e-9)


async def ingest_venues(ex: VenueExchanges, depth: bool, timeout: float) -> tuple[float, list[float], bool]:
    """The multi-venue ingest. Returns (msg/s, latencies venue trade time → persisted in ms, all ids stored)."""
    root = tempfile.mkdtemp(prefix="bench-venues-")
    m = build_multi_ingest([f"{v}:{','.join(s)}" for v, s in ex.symbols.items()], urls=ex.urls, root=root,
                           from_id=1, depth=depth, latency_window=ex.n + 1)
    clients = [c for f in m.feeds for c in f.clients.values()]
    task = asyncio.ensure_future(m.run())
    t0 = None
    deadline = time.monotonic() + timeout
    while sum(c.counters.trades for c in clients) < ex.total and time.monotonic() < deadline:
        if t0 is None and any(c.counters.msgs for c in clients):
            t0 = time.perf_counter()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    n = sum(c.counters.trades for c in clients)
    m.stop()
    await task
    ok = all(c.journal.last_id() == ex.n and c.counters.trades == ex.n for c in clients)
    lat = [x for c in clients for x in c.latencies_ms]
    for f in m.feeds:
        f.close()
    return n / max(elapsed, 1e-9), lat, ok


def venues_section(args, recording: bool) -> bool:
    """100 symbols over the four venue protocols: throughput vs the bare loop, latency at ``args.rate``."""
    per_venue = args.venue_symbols // len(VENUES)
    ok = True
    bare_tp, ing_tp, ing_lat = [], [], []
    n_tp = max(1, args.venue_n // (per_venue * len(VENUES)))
    for _ in range(args.runs):
        ex = VenueExchanges(per_venue, n_tp, 1_000_000)
        try:
            bare_tp.append(asyncio.run(bare_venues(ex, 120)))
        finally:
            ex.close()
        ex = VenueExchanges(per_venue, n_tp, 1_000_000)
        try:
            tp, _, good = asyncio.run(ingest_venues(ex, depth=False, timeout=120))
            ing_tp.append(tp)
            if not good:
                print("!! venue ingest (throughput) did not store every trade id of every symbol")
                ok = False
        finally:
            ex.close()
    n_lat = max(1, int(args.rate * args.latency_seconds) // (per_venue * len(VENUES)))
    for _ in range(args.runs):
        ex = VenueExchanges(per_venue, n_lat, args.rate / len(VENUES))
        try:
            _, lat, good = asyncio.run(ingest_venues(ex, depth=True, timeout=args.latency_seconds * 3 + 30))
            ing_lat.append(lat)
            if not good:
                print(f"!! venue ingest at {args.rate:.0f} msg/s did not store every trade id of every symbol")
                ok = False
        finally:
            ex.close()
    nsym = per_venue * len(VENUES)
    load = os.getloadavg()
    print(f"== machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"== venues: {nsym} symbols over {', '.join(VENUES)} (one connection each), median [min–max] of "
          f"{args.runs} runs")
    bare, ingest, ratio = Spread.of(bare_tp), Spread.of(ing_tp), ratios(ing_tp, bare_tp)
    print(f"bare loop, 4 venues         : {bare:,.0f} msg/s")
    print(f"multi-venue ingest          : {ingest:,.0f} msg/s")
    print(f"ratio ingest/bare (paired)  : {ratio:.2f}   (target >= 0.50: {'PASS' if ratio.median >= 0.5 else 'MISS'})")
    p = {q: Spread.of(pct(r, q) for r in ing_lat) for q in (50, 95, 99)}
    print(f"latency at {args.rate:,.0f} msg/s total, books on, trade time → persisted, ms: "
          f"P50 {p[50]:.3f}  P95 {p[95]:.3f}  P99 {p[99]:.3f}")
    print(f"venues P95 target < 5 ms    : {'PASS' if p[95].median < 5 else 'MISS'} ({p[95].median:.3f} ms)")
    print(f"venues results agree (every symbol stored ids 1..n): {'yes' if ok else 'NO'}")
    if recording and ok:
        at = f"{nsym} symbols / 4 venues"
        record("streams", f"multi-venue ingest throughput ({at})", ingest, "msg/s",
               peer="bare websockets+orjson loop over the same 4 connections", ratio=ratio, target="≥ 0.5×")
        record("streams", f"bare loop over 4 venue connections ({at})", bare, "msg/s")
        for q in (50, 95, 99):
            record("streams", f"multi-venue ingest at {args.rate / 1000:g}k msg/s ({at}), trade time → persisted, "
                              f"P{q}", p[q], "ms", target="< 5 ms" if q == 95 else None)
    return cryptofeed_section(args, recording) and ok


def cryptofeed_run(ex: VenueExchanges, python: str, mode: str, timeout: float) -> dict:
    """``bench/cryptofeed_peer.py`` on ``ex``'s venues: its JSON (trades, seconds, msg_per_s, complete, errors)."""
    cmd = [python, str(ROOT / "bench" / "cryptofeed_peer.py"), "--n", str(ex.n), "--mode", mode,
           "--timeout", str(timeout)]
    for v, syms in ex.symbols.items():
        proto = get_venue(v)
        cmd += ["--venue", v, proto.ws_url(ex.urls[v][0]), ",".join(proto.native(s) for s in syms)]
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return {"complete": False, "errors": [f"the peer did not exit within {timeout + 60:.0f} s"]}
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"complete": False, "errors": [f"exit {res.returncode}: {res.stderr.strip()[-500:]}"]}


def cryptofeed_section(args, recording: bool) -> bool:
    """Our multi-venue ingest against cryptofeed on ``CRYPTOFEED_VENUES``, paired runs. False if ours lost trades."""
    python = args.cryptofeed_python
    if not Path(python).is_file():
        print(f"cryptofeed not measured: no interpreter at {python}; create it with `make cryptofeed-venv` or: "
              f"{CRYPTOFEED_VENV_CMD}")
        print(CRYPTOFEED_NOTE)
        return True
    per_venue = args.venue_symbols // len(VENUES)  # as in the 4-venue figures: same symbols, same tape
    n = max(1, args.venue_n // (per_venue * len(VENUES)))
    ok, peer_ok = True, {"count": True, "list": True}
    ours: list[float] = []
    bare: list[float] = []
    peer: dict[str, list[float]] = {"count": [], "list": []}
    version = "?"
    for run in range(args.runs):  # back to back: each run's four see the same machine state
        ex = VenueExchanges(per_venue, n, 1_000_000, CRYPTOFEED_VENUES)
        try:
            bare.append(asyncio.run(bare_venues(ex, 120)))
        finally:
            ex.close()
        ex = VenueExchanges(per_venue, n, 1_000_000, CRYPTOFEED_VENUES)
        try:
            tp, _, good = asyncio.run(ingest_venues(ex, depth=False, timeout=120))
            ours.append(tp)
            if not good:
                print("!! venue ingest (vs cryptofeed) did not store every trade id of every symbol")
                ok = False
        finally:
            ex.close()
        for mode in ("count", "list"):
            ex = VenueExchanges(per_venue, n, 1_000_000, CRYPTOFEED_VENUES)
            try:
                out = cryptofeed_run(ex, python, mode, 120)
            finally:
                ex.close()
            if out.get("complete"):
                peer[mode].append(out["msg_per_s"])
                version = out.get("cryptofeed", version)
            else:
                print(f"!! cryptofeed ({mode}) run {run + 1} incomplete: {out.get('trades')} of {out.get('expected')} "
                      f"trades; {'; '.join(out.get('errors') or [])}")
                peer_ok[mode] = False
        print(f"  cryptofeed comparison run {run + 1}/{args.runs} done", file=sys.stderr)
    nsym = per_venue * len(CRYPTOFEED_VENUES)
    load = os.getloadavg()
    print(f"== vs cryptofeed: {nsym} symbols over {', '.join(CRYPTOFEED_VENUES)} ({n} trades each, unthrottled), "
          f"median [min–max] of {args.runs} runs, load average {load[0]:.1f} on {os.cpu_count()} cores")
    print(CRYPTOFEED_NOTE)
    spread = Spread.of(ours)
    print(f"{'bare loop, same connections':<38}: {Spread.of(bare):,.0f} msg/s (the replays' ceiling)")
    print(f"{'multi-venue ingest (SQLite)':<38}: {spread:,.0f} msg/s; ours/bare (paired) {ratios(ours, bare):.2f}")
    labels = {"count": f"cryptofeed {version}, callback counts", "list": f"cryptofeed {version}, appends to a list"}
    ratio = {}
    for mode, label in labels.items():
        if not peer_ok[mode]:
            print(f"{label:<38}: not measured (a run did not receive every trade)")
            continue
        ratio[mode] = ratios(ours, peer[mode])
        print(f"{label:<38}: {Spread.of(peer[mode]):,.0f} msg/s; ours/cryptofeed (paired) {ratio[mode]:.2f}  "
              f"(target >= 2: {'PASS' if ratio[mode].median >= 2 else 'MISS'})")
    if recording and ok and len(ratio) == 2:
        at = f"{nsym} symbols / {len(CRYPTOFEED_VENUES)} venues"
        # the headline ratio is against cryptofeed's floor (a callback that only counts), the strictest peer
        record("streams", f"multi-venue ingest throughput vs cryptofeed ({at})", spread, "msg/s",
               peer=labels["count"], ratio=ratio["count"], target="≥ 2×",
               note=(f"{ratio['list'].median:.2f}× [{ratio['list'].min:.2f}–{ratio['list'].max:.2f}] "
                     f"{labels['list']}"))
        for mode, label in labels.items():
            record("streams", f"{label} ({at})", Spread.of(peer[mode]), "msg/s")
    return ok


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="messages per throughput run")
    ap.add_argument("--latency-seconds", type=float, default=8.0, help="length of each 10k msg/s latency run")
    ap.add_argument("--rate", type=float, default=10_000.0)
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help="runs per side, throughput and latency (default 5)")
    ap.add_argument("--quick", action="store_true", help="30k messages, 2 s latency runs; not recorded")
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    ap.add_argument("--only", choices=("binance", "venues", "cryptofeed"), default=None,
                    help="run one section only (not recorded)")
    ap.add_argument("--cryptofeed-python", default=os.environ.get("SPARK_CRYPTOFEED_PYTHON", "/tmp/cfvenv/bin/python"),
                    help="interpreter with cryptofeed installed (make cryptofeed-venv)")
    ap.add_argument("--venue-symbols", type=int, default=100, help="symbols over the 4 venues (venue section)")
    ap.add_argument("--venue-n", type=int, default=100_000, help="messages per venue throughput run, all venues")
    args = ap.parse_args()
    if args.quick:
        args.n, args.latency_seconds, args.venue_n = 30_000, 2.0, 40_000
    # recording replaces all of this bench's figures: only a run of both sections records
    recording = not (args.quick or args.no_record or args.only) and args.runs >= MIN_RUNS
    if args.only == "venues":
        return 0 if venues_section(args, recording) else 1
    if args.only == "cryptofeed":
        return 0 if cryptofeed_section(args, recording) else 1

    ok = True
    bare_tp, ing_tp = [], []
    for _ in range(args.runs):  # interleaved: both see the same machine state
        ex = Exchange(args.n, 1_000_000)
        try:
            tp, _ = asyncio.run(bare_loop(ex, 120))
            bare_tp.append(tp)
        finally:
            ex.close()
        ex = Exchange(args.n, 1_000_000)
        try:
            tp, _, ids = asyncio.run(ingest_run(ex, depth=False, timeout=120))
            ing_tp.append(tp)
            if not np.array_equal(ids, np.arange(1, args.n + 1)):
                print(f"!! ingest stored {len(ids)} ids ({len(np.unique(ids))} distinct), expected 1..{args.n}")
                ok = False
        finally:
            ex.close()

    n_lat = int(args.rate * args.latency_seconds)
    bare_lat, ing_lat = [], []
    for _ in range(args.runs):
        ex = Exchange(n_lat, args.rate)
        try:
            _, lat = asyncio.run(bare_loop(ex, args.latency_seconds * 3 + 30))
            bare_lat.append(lat)
        finally:
            ex.close()
        ex = Exchange(n_lat, args.rate)
        try:
            _, lat, ids = asyncio.run(ingest_run(ex, depth=True, timeout=args.latency_seconds * 3 + 30))
            ing_lat.append(lat)
            if not np.array_equal(ids, np.arange(1, n_lat + 1)):
                print(f"!! ingest stored {len(ids)} ids at {args.rate:.0f} msg/s, expected 1..{n_lat}")
                ok = False
        finally:
            ex.close()

    load = os.getloadavg()
    print(f"== machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          "(latency percentiles are sensitive to other processes)")
    print(f"== throughput ({args.n} msgs, exchange unthrottled), median [min–max] of {args.runs} runs")
    bare, ingest, ratio = Spread.of(bare_tp), Spread.of(ing_tp), ratios(ing_tp, bare_tp)
    print(f"bare websockets+orjson loop : {bare:,.0f} msg/s")
    print(f"ingest (parse→gap→persist)  : {ingest:,.0f} msg/s")
    # each pair ran back to back: same machine state
    print(f"ratio ingest/bare (paired)  : {ratio:.2f}   (target >= 0.50: {'PASS' if ratio.median >= 0.5 else 'MISS'})")
    print(f"== latency at {args.rate:,.0f} msg/s for {args.latency_seconds:.0f} s, ms: each run's percentile, "
          f"median [min–max] of {args.runs} runs")
    pcts = {name: {q: Spread.of(pct(r, q) for r in runs) for q in (50, 95, 99)}
            for name, runs in (("bare", bare_lat), ("ingest", ing_lat))}
    for name, label in (("bare", "bare loop E→parsed"), ("ingest", "ingest E→persisted")):
        p = pcts[name]
        print(f"{label:<27} : P50 {p[50]:.3f}  P95 {p[95]:.3f}  P99 {p[99]:.3f}")
    p95 = pcts["ingest"][95]
    print(f"ingest P95 target < 5 ms    : {'PASS' if p95.median < 5 else 'MISS'} ({p95.median:.3f} ms)")
    print(f"results agree (stored ids == source ids): {'yes' if ok else 'NO'}")
    if recording and ok:
        at = f"at {args.rate / 1000:g}k msg/s"
        bare_p95 = f"bare loop {at}, exchange time → parsed, P95"
        ingest_at = f"ingest {at}, exchange time → persisted"
        record("streams", "ingest throughput (parse → gap check → bars → SQLite)", ingest, "msg/s",
               peer="bare websockets+orjson loop", ratio=ratio, target="≥ 0.5×")
        record("streams", "bare websockets+orjson loop", bare, "msg/s")
        record("streams", f"{ingest_at}, P50", pcts["ingest"][50], "ms")
        record("streams", f"{ingest_at}, P95", p95, "ms", peer=bare_p95,
               ratio=ratios([pct(r, 95) for r in ing_lat], [pct(r, 95) for r in bare_lat]), target="< 5 ms")
        record("streams", f"{ingest_at}, P99", pcts["ingest"][99], "ms")
        record("streams", bare_p95, pcts["bare"][95], "ms")
        print(f"figures recorded in {RESULTS}")
    if args.only is None:
        ok = venues_section(args, recording) and ok
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())

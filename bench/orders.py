"""Live orders on the replay exchange: round trip of ExchangeVenue, and the drift it shows.

Part 1, round trip (``--n`` orders per run and case, loopback, one order at a time as a session
sends them; ``--runs`` runs, default 5, the cases round-robin within each run):

* ``ExchangeVenue`` against the replay exchange at latency 0 and at the demo latency (80 +- 40 ms),
  and with every answer dropped after execution (``Faults(order_drop_every=1)``: the venue looks
  each order up by clientOrderId),
* peers: a bare ``http.client`` POST on a kept-alive connection (the floor of the HTTP path),
  ``urllib.request`` (a new connection per order) and the in-process ``SimulatedVenue``.

Part 2, drift (``--live-s`` seconds per run, 0 skips it): the stream pipeline of ``spark serve``
(200 msg/s, 1 s bars) with a ``sma_cross`` 3/10 session per demo symbol trading on the exchange by
``DEMO_ORDERS`` and ``LIVE_THRESHOLDS`` (what ``spark serve`` runs), and beside it, on the same
bars, a peer session on ``SimulatedVenue`` with the offline ``DEMO_VENUES`` and ``DEMO_THRESHOLDS``:
drift per fill and gate closes of both. The runs play different seeded tapes (a run is a sample
of the market, drift depends on it) and run side by side, each with its own exchange: five
runs of 90 s in a row would take 8 minutes, and the pipelines need little CPU at 200 msg/s.

A percentile is taken within each run and printed as the median [min–max] over the runs; ratios
are per run. Never asserts on wall time. A run with the defaults (about 3 minutes) records its
figures in ``bench/results.json``.

    .venv/bin/python bench/orders.py              # 5 runs: 100 orders per case, 90 s of live drift
    .venv/bin/python bench/orders.py --n 50 --live-s 0
"""
from __future__ import annotations

import argparse
import http.client
import logging
import tempfile
import time
import urllib.parse
import urllib.request

import numpy as np
from _results import RESULTS, record
from _timing import MIN_RUNS, Spread, ratios

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.demo import DEMO_THRESHOLDS, DEMO_VENUES, LIVE_THRESHOLDS
from spark_research.gates.gate import GateBook
from spark_research.gates.model import Order
from spark_research.gates.session import PaperLiveSession, stream_bar_callback
from spark_research.gates.venue import ExchangeVenue, SimulatedVenue
from spark_research.platform.components import DEMO_ORDERS
from spark_research.streams.orders import OrderConfig
from spark_research.streams.pipeline import StreamPipeline
from spark_research.streams.replay import Faults, ReplayExchange


BARE = "peer: bare http.client POST (kept alive)"


def pct(ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ms)
    return tuple(float(np.percentile(a, q)) for q in (50, 95, 99))


def latencies_ms(n: int, send, first: int) -> list[float]:
    """Milliseconds of each of ``n`` calls ``send(i)``, ``i`` from ``first`` on (order ids stay unique)."""
    out = []
    for i in range(first, first + n):
        t0 = time.perf_counter()
        send(i)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def order(i: int) -> Order:
    return Order(f"bench-{i}", "bench", "BTCUSDT", i, "buy" if i % 2 == 0 else "sell", 0.01, 30_000.0)


def round_trips(n: int, runs: int) -> dict[str, dict]:
    """Per case: the P50/P95/P99 spreads over the runs and the per-run ratio of P50 to the bare POST's."""
    zero = OrderConfig(latency_ms=0, latency_jitter_ms=0)
    demo = OrderConfig.parse(DEMO_ORDERS["BTCUSDT"])
    exchanges, venues, senders = [], {}, {}
    for label, cfg, faults in (("ExchangeVenue, latency 0", zero, None),
                               ("ExchangeVenue, demo latency 80+-40 ms", demo, None),
                               ("ExchangeVenue, latency 0, every answer dropped", zero, Faults(order_drop_every=1))):
        ex = ReplayExchange(n=50_000, rate=200, orders=cfg, faults=faults).start()
        venue = ExchangeVenue(ex.rest_url)
        venue.submit(order(-1))  # connect, warm up
        exchanges.append(ex)
        venues[label] = (venue, ex)
        senders[label] = lambda i, venue=venue: venue.submit(order(i))
    ex = ReplayExchange(n=50_000, rate=200, orders=zero).start()
    exchanges.append(ex)
    conn = http.client.HTTPConnection("127.0.0.1", ex.port, timeout=5)

    def bare(i: int) -> None:
        body = urllib.parse.urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                                       "newClientOrderId": f"bare-{i}"}).encode()
        conn.request("POST", "/api/v3/order", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        conn.getresponse().read()

    def fresh(i: int) -> None:
        body = urllib.parse.urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                                       "newClientOrderId": f"fresh-{i}"}).encode()
        urllib.request.urlopen(ex.rest_url + "/api/v3/order", data=body, timeout=5).read()

    bare(-1)
    sim = SimulatedVenue()
    senders.update({BARE: bare, "peer: urllib.request (new connection each)": fresh,
                    "peer: SimulatedVenue (in process)": lambda i: sim.submit(order(i))})
    rows: dict[str, list[list[float]]] = {label: [] for label in senders}
    for run in range(runs):
        for label, send in senders.items():  # round-robin: a slow minute of the machine hits every case
            rows[label].append(latencies_ms(n, send, first=run * n))
    for label, (venue, vex) in venues.items():
        assert vex.status()["orders"]["received"] == runs * n + 1, vex.status()["orders"]  # never sent twice
        venue.close()
    conn.close()
    for x in exchanges:
        x.stop()

    base = [pct(ms)[0] for ms in rows[BARE]]
    out = {}
    print(f"order round trip, {n} orders per run and case, median [min–max] of {runs} runs (ms)")
    print(f"  {'case':48s} {'P50':>24s} {'P95':>26s} {'P99':>26s}  P50 / bare POST")
    for label, runs_ms in rows.items():
        per_run = [pct(ms) for ms in runs_ms]
        p = {q: Spread.of(r[k] for r in per_run) for k, q in enumerate((50, 95, 99))}
        ratio = ratios([r[0] for r in per_run], base)
        out[label] = {"p": p, "ratio": ratio}
        print(f"  {label:48s} {format(p[50], '.3f'):>24s} {format(p[95], '.3f'):>26s} {format(p[99], '.3f'):>26s}"
              f"  {format(ratio, '.2f')}x")
    return out


def live_drift(seconds: float, runs: int) -> dict[tuple[str, str], dict[int, Spread]]:
    """Drift P50/P95 (bps) per (symbol, venue), spread over the runs that had fills."""
    print(f"\nlive drift, {runs} runs side by side of {seconds:g} s of 1 s bars per symbol "
          "(spark serve's stream: 200 msg/s)")
    started = []
    for run in range(runs):
        for symbol in DEMO_ORDERS:
            pipeline = StreamPipeline(symbol=symbol, rate=200, n=200_000, root=tempfile.mkdtemp(), seed=42 + run,
                                      orders=OrderConfig.parse(DEMO_ORDERS[symbol])).start()
            live = PaperLiveSession.create("sma_cross", symbol, GateBook(MemoryAudit()),
                                           ExchangeVenue(pipeline.exchange.rest_url, name="replay"),
                                           params={"fast": 3, "slow": 10}, thresholds=LIVE_THRESHOLDS)
            peer = PaperLiveSession.create("sma_cross", symbol, GateBook(MemoryAudit()),
                                           SimulatedVenue(DEMO_VENUES[symbol]), params={"fast": 3, "slow": 10},
                                           thresholds=DEMO_THRESHOLDS)
            pipeline.on_bar(stream_bar_callback(live, interval="1s", background=True))
            pipeline.on_bar(stream_bar_callback(peer, interval="1s"))
            started.append((run, symbol, pipeline, live, peer))
    time.sleep(seconds)
    for *_, pipeline, _, _ in started:
        pipeline.stop()
    time.sleep(0.5)  # the last queued bar
    per_run: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run, symbol, _, live, peer in started:
        for label, s in (("exchange", live), ("peer: SimulatedVenue", peer)):
            d = s.drift_frame()["drift_bps"]
            closes = sum(state == "CLOSED" for _, state in s.states)
            p50, p95 = (float(np.percentile(d, q)) if len(d) else float("nan") for q in (50, 95))
            if len(d):
                per_run.setdefault((symbol, label), []).append((p50, p95))
            rt = [r.round_trip_ms for r in getattr(s.venue, "reports", [])]
            rts = f"  round trip P50 {np.percentile(rt, 50):.1f} ms P95 {np.percentile(rt, 95):.1f} ms" if rt else ""
            print(f"  run {run} {symbol} {label:22s} bars {s.engine.bars_seen:4d} orders {len(s.sent):3d} fills "
                  f"{len(s.live_fills):3d} errors {len(s.errors):2d} refused {len(s.refused):2d} | drift bps P50 "
                  f"{p50:6.2f} P95 {p95:6.2f} | gate closed {closes}x, now {s.gate.state.name}{rts}")
    out = {}
    print(f"  drift bps per fill, each run's percentile, median [min–max] over the runs with fills")
    for (symbol, label), vals in per_run.items():
        out[symbol, label] = {50: Spread.of(v[0] for v in vals), 95: Spread.of(v[1] for v in vals)}
        print(f"  {symbol} {label:22s} P50 {out[symbol, label][50]:.2f}  P95 {out[symbol, label][95]:.2f}  "
              f"({len(vals)} runs)")
    return out


def record_figures(trips: dict[str, dict], drift: dict[tuple[str, str], dict[int, Spread]]) -> None:
    bare = "bare `http.client` POST on a kept-alive connection, P50"
    zero, dropped = trips["ExchangeVenue, latency 0"], trips["ExchangeVenue, latency 0, every answer dropped"]
    what = "live order round trip, `ExchangeVenue` on the replay exchange (loopback, latency 0)"
    record("orders", f"{what}, P50", zero["p"][50], "ms", peer=bare, ratio=zero["ratio"])
    record("orders", f"{what}, P95", zero["p"][95], "ms")
    record("orders", f"{what}, every answer dropped (looked up by clientOrderId), P50", dropped["p"][50], "ms",
           peer=bare, ratio=dropped["ratio"])
    record("orders", bare, trips[BARE]["p"][50], "ms")
    for q in (50, 95):
        if ("BTCUSDT", "exchange") in drift and ("BTCUSDT", "peer: SimulatedVenue") in drift:
            sim = f"live drift per fill, BTCUSDT, same bars on `SimulatedVenue` (offline demo venue), P{q}"
            record("orders", f"live drift per fill, BTCUSDT on the replay exchange (demo latency, slippage), P{q}",
                   drift["BTCUSDT", "exchange"][q], "bps", peer=sim)
            record("orders", sim, drift["BTCUSDT", "peer: SimulatedVenue"][q], "bps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="orders per run and case")
    ap.add_argument("--live-s", type=float, default=90.0, help="seconds of live drift per run (0: skip)")
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help="runs (default 5)")
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args()
    recording = (not args.no_record and args.runs >= MIN_RUNS and args.n == ap.get_default("n")
                 and args.live_s == ap.get_default("live_s"))
    for name in ("spark_research.gates.venue", "tornado.access"):  # one warning per dropped answer otherwise
        logging.getLogger(name).setLevel(logging.ERROR)
    trips = round_trips(args.n, args.runs)
    drift = live_drift(args.live_s, args.runs) if args.live_s > 0 else {}
    if recording:
        record_figures(trips, drift)
        print(f"\nfigures recorded in {RESULTS}")

if __name__ == "__main__":
    main()

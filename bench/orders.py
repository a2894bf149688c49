"""Live orders on the replay exchange: round trip of ExchangeVenue, and the drift it shows.

Part 1, round trip (``--n`` orders each, loopback, one order at a time as a session sends them):

* ``ExchangeVenue`` against the replay exchange at latency 0 and at the demo latency (80 +- 40 ms),
  and with every answer dropped after execution (``Faults(order_drop_every=1)``: the venue looks
  each order up by clientOrderId),
* peers: a bare ``http.client`` POST on a kept-alive connection (the floor of the HTTP path),
  ``urllib.request`` (a new connection per order) and the in-process ``SimulatedVenue``.

Part 2, drift (``--live-s`` seconds, 0 skips it): the stream pipeline of ``spark serve`` (200 msg/s,
1 s bars) with a ``sma_cross`` 3/10 session per demo symbol trading on the exchange by
``DEMO_ORDERS`` and ``LIVE_THRESHOLDS`` (what ``spark serve`` runs), and beside it, on the same
bars, a peer session on ``SimulatedVenue`` with the offline ``DEMO_VENUES`` and ``DEMO_THRESHOLDS``:
drift per fill and gate closes of both.

Prints percentiles and ratios; never asserts on wall time.

    .venv/bin/python bench/orders.py              # 300 orders per case, 120 s of live drift
    .venv/bin/python bench/orders.py --n 100 --live-s 0
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


def pct(ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ms)
    return tuple(float(np.percentile(a, q)) for q in (50, 95, 99))


def timed(n: int, send) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        send(i)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def order(i: int) -> Order:
    return Order(f"bench-{i}", "bench", "BTCUSDT", i, "buy" if i % 2 == 0 else "sell", 0.01, 30_000.0)


def round_trips(n: int) -> None:
    zero = OrderConfig(latency_ms=0, latency_jitter_ms=0)
    demo = OrderConfig.parse(DEMO_ORDERS["BTCUSDT"])
    rows: dict[str, list[float]] = {}
    for label, cfg, faults in (("ExchangeVenue, latency 0", zero, None),
                               ("ExchangeVenue, demo latency 80+-40 ms", demo, None),
                               ("ExchangeVenue, latency 0, every answer dropped", zero, Faults(order_drop_every=1))):
        ex = ReplayExchange(n=50_000, rate=200, orders=cfg, faults=faults).start()
        venue = ExchangeVenue(ex.rest_url)
        venue.submit(order(-1))  # connect, warm up
        rows[label] = timed(n, lambda i: venue.submit(order(i)))
        assert ex.status()["orders"]["received"] == n + 1, ex.status()["orders"]  # never sent twice
        venue.close()
        ex.stop()
    ex = ReplayExchange(n=50_000, rate=200, orders=zero).start()
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
    rows["peer: bare http.client POST (kept alive)"] = timed(n, bare)
    rows["peer: urllib.request (new connection each)"] = timed(n, fresh)
    conn.close()
    ex.stop()
    sim = SimulatedVenue()
    rows["peer: SimulatedVenue (in process)"] = timed(n, lambda i: sim.submit(order(i)))
    base = pct(rows["peer: bare http.client POST (kept alive)"])[0]
    print(f"order round trip, {n} orders each (ms)")
    print(f"  {'case':52s} {'P50':>8s} {'P95':>8s} {'P99':>8s}  P50 / bare POST")
    for label, ms in rows.items():
        p50, p95, p99 = pct(ms)
        print(f"  {label:52s} {p50:8.3f} {p95:8.3f} {p99:8.3f}  {p50 / base:8.2f}x")


def live_drift(seconds: float) -> None:
    print(f"\nlive drift, {seconds:g} s of 1 s bars per symbol (spark serve's stream: 200 msg/s)")
    for symbol in DEMO_ORDERS:
        root = tempfile.mkdtemp()
        pipeline = StreamPipeline(symbol=symbol, rate=200, n=200_000, root=root,
                                  orders=OrderConfig.parse(DEMO_ORDERS[symbol])).start()
        live = PaperLiveSession.create("sma_cross", symbol, GateBook(MemoryAudit()),
                                       ExchangeVenue(pipeline.exchange.rest_url, name="replay"),
                                       params={"fast": 3, "slow": 10}, thresholds=LIVE_THRESHOLDS)
        peer = PaperLiveSession.create("sma_cross", symbol, GateBook(MemoryAudit()),
                                       SimulatedVenue(DEMO_VENUES[symbol]), params={"fast": 3, "slow": 10},
                                       thresholds=DEMO_THRESHOLDS)
        pipeline.on_bar(stream_bar_callback(live, interval="1s", background=True))
        pipeline.on_bar(stream_bar_callback(peer, interval="1s"))
        time.sleep(seconds)
        pipeline.stop()
        time.sleep(0.5)  # the last queued bar
        for label, s in (("exchange", live), ("peer: SimulatedVenue", peer)):
            d = s.drift_frame()["drift_bps"]
            closes = sum(state == "CLOSED" for _, state in s.states)
            p50, p95 = (float(np.percentile(d, q)) if len(d) else float("nan") for q in (50, 95))
            rt = [r.round_trip_ms for r in getattr(s.venue, "reports", [])]
            rts = f"  round trip P50 {np.percentile(rt, 50):.1f} ms P95 {np.percentile(rt, 95):.1f} ms" if rt else ""
            print(f"  {symbol} {label:22s} bars {s.engine.bars_seen:4d} orders {len(s.sent):3d} fills "
                  f"{len(s.live_fills):3d} errors {len(s.errors):2d} refused {len(s.refused):2d} | drift bps P50 "
                  f"{p50:6.2f} P95 {p95:6.2f} | gate closed {closes}x, now {s.gate.state.name}{rts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--live-s", type=float, default=120.0)
    args = ap.parse_args()
    for name in ("spark_research.gates.venue", "tornado.access"):  # one warning per dropped answer otherwise
        logging.getLogger(name).setLevel(logging.ERROR)
    round_trips(args.n)
    if args.live_s > 0:
        live_drift(args.live_s)


if __name__ == "__main__":
    main()

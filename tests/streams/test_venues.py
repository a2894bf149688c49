"""Native venues end to end on the replay exchange (127.0.0.1): every fault, per venue, loses and
duplicates no trade, and every book the client shows matches the venue's (and its checksum)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spark_research import metrics
from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.multi import build_multi_ingest
from spark_research.streams.replay import Faults, ReplayExchange
from spark_research.streams.venues.feed import VenueFeed
from spark_research.streams.venues.replay import VenueReplay

from tests.streams.stream_helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = {"coinbase": ["BTC-USD", "ETH-USD"], "kraken": ["BTC/USD", "ETH/USD"], "okx": ["BTC-USDT", "ETH-USDT"],
           "bybit": ["BTCUSDT", "ETHUSDT"]}
FAST = dict(backoff_initial_s=0.02, backoff_max_s=0.3, idle_resync_s=0.4, status_interval_s=0.2,
            stall_timeout_s=1.0, resync_timeout_s=0.4)
#: every fault at once; the stall is shorter than the client's stall timeout (it rides it out)
ALL_FAULTS = Faults(drop_every=450, skip_every=37, duplicate_every=11, reorder_every=13, malformed_every=53,
                    stall_every=250, stall_ms=300, checksum_every=9, refuse_connections=1)


@pytest.fixture
def venue_run(tmp_path):
    """``venue_run(venue, faults, n=...)`` → (started VenueReplay, started VenueFeed); both stopped at teardown."""
    started: list = []

    def make(venue: str, faults: Faults | None = None, n: int = 700, rate: float = 1_500, **feed_kw):
        if venue == "bybit":  # REST keeps 60 trades: a client lagging more than that cannot backfill
            n, rate = min(n, 400), min(rate, 400)
        ex = VenueReplay(venue, SYMBOLS[venue], n=n, rate=rate, faults=faults, depth_every=4, min_clients=1).start()
        started.append(ex)
        feed = VenueFeed(venue, SYMBOLS[venue], ex.ws_url, ex.rest_url, root=tmp_path / venue, from_id=1,
                         **{**FAST, **feed_kw}).start()
        started.append(feed)
        return ex, feed

    yield make
    for x in reversed(started):
        x.stop()
        if isinstance(x, VenueFeed):
            x.close()


def assert_books_match_venue(ex: VenueReplay, feed: VenueFeed, rounds: int = 40) -> None:
    """Pause the market; every symbol's book must equal the venue's (levels and checksum).

    Kraken and Bybit can only notice a lost *last* update at the next one: between polls the
    market is nudged (one more book update per symbol) until the client has caught up.
    """
    ex.pause()
    try:
        diff = {}
        for _ in range(rounds):
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                diff = {}
                for s in ex.by_canonical:
                    uid, bids, asks, cs = feed.book_copy(s)
                    _, xb, xa, xcs = ex.book(s)
                    if uid is None or bids != xb or asks != xa or cs != xcs:
                        diff[s] = (uid, len(bids), len(xb), cs, xcs)
                if not diff:
                    assert all(ex.book(s)[1] and ex.book(s)[2] for s in ex.by_canonical), "empty books prove nothing"
                    return
                time.sleep(0.02)
            ex.nudge()
        raise AssertionError(f"{ex.venue} books differ from the venue's: {diff}")
    finally:
        ex.resume()


def assert_trades_equal_source(ex: VenueReplay, feed: VenueFeed) -> None:
    for s, client in feed.clients.items():
        stored = client.call(lambda: client.journal.trades())
        src = ex.historical(s)
        assert len(stored) == len(src), f"{ex.venue} {s}: {len(stored) - len(src)} extra/missing rows"
        assert stored["seq"].tolist() == [r[0] for r in src]
        assert stored["price"].tolist() == [float(r[1]) for r in src]
        assert np.allclose(stored["qty"].to_numpy(), [float(r[2]) for r in src], rtol=0, atol=1e-12)
        assert stored["side"].tolist() == ["sell" if r[3] else "buy" for r in src]


@pytest.mark.parametrize("venue", list(SYMBOLS))
def test_venue_with_every_fault_stores_exactly_the_source_trades_and_the_venues_books(venue, venue_run):
    faults = ALL_FAULTS
    if venue == "bybit":
        # Bybit spot's REST keeps only the last 60 trades: a stall followed by a dropped connection
        # loses the frames queued meanwhile beyond what any client could backfill (logged as a hole).
        # A skip detected while the socket lags (stall) is as unrecoverable. Drops and stalls are
        # tested alone in test_bybit_drops_and_stalls_lose_nothing.
        faults = dataclasses.replace(ALL_FAULTS, drop_every=0, stall_every=0)
    ex, feed = venue_run(venue, faults)
    wait_until(lambda: all((c.journal_last_id() or 0) >= 200 for c in feed.clients.values()), 20, "200 trades each")
    assert_books_match_venue(ex, feed)  # mid-stream checkpoint
    assert ex.wait_finished(20)
    last = {s: int(ex.source_ids(s)[-1]) for s in feed.clients}
    assert feed.wait_for_ids(last, timeout=20), f"stuck: {feed.status()['symbols']}"
    assert_trades_equal_source(ex, feed)
    assert_books_match_venue(ex, feed)
    c = ex.status()["counters"]
    assert c["skipped"] and c["duplicated"] and c["reordered"] and c["malformed"]
    assert c["stalls"] or not faults.stall_every
    assert c["dropped"] or not faults.drop_every
    st = feed.call(feed.status)
    assert st["malformed"] >= c["malformed"] and st["reconnects"] >= c["dropped"]
    for s, sym in st["symbols"].items():
        assert sym["gaps_open"] == 0, (s, sym)
        assert sym["counters"]["book_resyncs"] >= 2  # the first snapshot and at least one resync
    if venue in ("kraken", "okx"):
        assert c["bad_checksums"] >= 3
        assert sum(s["counters"]["checksum_fails"] for s in st["symbols"].values()) >= 1


@pytest.mark.parametrize("venue", ["kraken", "okx"])
def test_a_wrong_checksum_is_counted_and_the_book_resynced(venue, venue_run):
    counter = metrics.BOOK_CHECKSUM_FAIL.labels(venue)
    c0 = counter._value.get()
    ex, feed = venue_run(venue, Faults(checksum_every=25), n=500)
    assert ex.wait_finished(20)
    assert feed.wait_for_ids({s: int(ex.source_ids(s)[-1]) for s in feed.clients}, timeout=20)
    bad = ex.status()["counters"]["bad_checksums"]
    assert bad >= 4
    # a wrong checksum on an update that arrives while that book waits for its snapshot is never
    # applied (so never shown); every applied one is checked
    detected = sum(s["counters"]["checksum_fails"] for s in feed.call(feed.status)["symbols"].values())
    assert bad // 2 <= detected <= bad
    assert counter._value.get() - c0 == detected
    assert_books_match_venue(ex, feed)


@pytest.mark.parametrize("faults", [Faults(drop_every=300, duplicate_every=7), Faults(stall_every=200, stall_ms=300)],
                         ids=["drop", "stall"])
def test_bybit_drops_and_stalls_lose_nothing(faults, venue_run):
    ex, feed = venue_run("bybit", faults, n=600)
    assert ex.wait_finished(20)
    assert feed.wait_for_ids({s: int(ex.source_ids(s)[-1]) for s in feed.clients}, timeout=20)
    c = ex.status()["counters"]
    assert c["dropped"] >= 2 if faults.drop_every else c["stalls"] >= 2
    assert_trades_equal_source(ex, feed)
    assert_books_match_venue(ex, feed)


def test_a_stalled_feed_is_reopened_and_nothing_is_lost(venue_run):
    ex, feed = venue_run("okx", Faults(stall_every=300, stall_ms=1_500), n=600, stall_timeout_s=0.5)
    assert ex.wait_finished(20)
    assert feed.wait_for_ids({s: int(ex.source_ids(s)[-1]) for s in feed.clients}, timeout=20)
    assert ex.status()["counters"]["stalls"] >= 1 and feed.call(feed.status)["reconnects"] >= 1
    assert_trades_equal_source(ex, feed)


def test_coinbase_sequence_gap_resyncs_every_book_of_the_connection(venue_run):
    ex, feed = venue_run("coinbase", Faults(skip_every=40), n=500)
    assert ex.wait_finished(20)
    assert feed.wait_for_ids({s: int(ex.source_ids(s)[-1]) for s in feed.clients}, timeout=20)
    st = feed.call(feed.status)
    assert st["conn_gaps"] >= 3
    for sym in st["symbols"].values():
        assert sym["counters"]["book_resyncs"] >= st["conn_gaps"] // 2
    assert_books_match_venue(ex, feed)


def test_many_venues_and_symbols_in_one_ingest(tmp_path):
    kr = VenueReplay("kraken", ["BTC/USD", "ETH/USD", "SOL/USD"], n=300, rate=3_000, min_clients=1).start()
    by = VenueReplay("bybit", ["BTCUSDT", "SOLUSDT"], n=300, rate=3_000, min_clients=1).start()
    bn = ReplayExchange(n=300, rate=3_000, min_clients=1).start()
    m = build_multi_ingest(["kraken:BTC/USD,ETH/USD", "kraken:SOL/USD", "bybit:BTCUSDT,SOLUSDT", "binance:BTCUSDT"],
                           urls={"kraken": (kr.ws_url, kr.rest_url), "bybit": (by.ws_url, by.rest_url),
                                 "binance": (bn.ws_url, bn.rest_url)},
                           root=tmp_path, from_id=1, **FAST).start()
    try:
        assert len(m.feeds) == 2 and len(m.feeds[0].clients) == 3  # one connection per venue
        want = {("kraken", s): 300 for s in ("BTCUSD", "ETHUSD", "SOLUSD")}
        want |= {("bybit", "BTCUSDT"): 300, ("bybit", "SOLUSDT"): 300, ("binance", "BTCUSDT"): 300}
        assert m.wait_for_ids(want, timeout=30)
        assert kr.status()["counters"]["connections"] == 1 and by.status()["counters"]["connections"] == 1
        rows = {(s["exchange"], s["symbol"]): s for s in m.status()}
        assert set(rows) == set(want)
        assert all(r["counters"]["trades"] == 300 and r["gaps_open"] == 0 for r in rows.values())
    finally:
        m.stop()
        m.close()
        kr.stop(), by.stop(), bn.stop()
    from spark_research.streams.ingest import read_status

    assert {(s["exchange"], s["symbol"]) for s in read_status(tmp_path)} == set(want)


def test_binance_server_ignoring_time_unit_does_not_corrupt_times_latency_or_bars(tmp_path):
    fixes = metrics.WS_TIME_UNIT_FIXES.labels("binance", "trade.T")
    f0 = fixes._value.get()
    ex = ReplayExchange(n=800, rate=800, honour_time_unit=False, faults=Faults(skip_every=97)).start()
    client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url, root=tmp_path, from_id=1,
                                       backoff_initial_s=0.02, idle_resync_s=0.4)).start()
    try:
        assert client.adapter.time_unit == "MICROSECOND"  # asked for, and ignored by this server
        assert ex.wait_finished(20) and client.wait_for_id(800, timeout=20)
        stored = client.call(lambda: client.journal.trades())
        now = time.time()
        ts = stored["ts"].astype("int64").to_numpy() / 1e9
        assert np.all(np.abs(ts - now) < 120), "stored trade times are not today's"
        lat = client.call(client.status)["latency_ms"]
        assert 0 <= lat["p50"] < 1_000 and lat["p99"] < 5_000, lat  # not ~1.8e12 ms
        bars = client.call(lambda: client.journal.bars("1s"))
        starts = bars["timestamp"].astype("int64").to_numpy()
        assert len(bars) >= 1 and np.all(starts % 1_000_000_000 == 0) and np.all(np.abs(starts / 1e9 - now) < 120)
        assert fixes._value.get() - f0 == 1  # detected once, logged once
        assert client.call(client.status)["counters"]["backfilled"] >= 800 // 97  # REST times converted too
    finally:
        client.stop()
        client.journal.close()
        ex.stop()


def test_cli_ingests_two_venues_from_venue_replays(tmp_path):
    from spark_research.streams.ingest import read_status

    okx = VenueReplay("okx", ["BTC-USDT", "ETH-USDT"], n=400, rate=2_000, min_clients=1).start()
    cb = VenueReplay("coinbase", ["BTC-USD"], n=400, rate=2_000, min_clients=1).start()
    try:
        root = tmp_path / "ingest"
        rc = subprocess.run([sys.executable, "-m", "spark_research.cli", "stream", "ingest",
                             "--venue", "okx:BTC-USDT,ETH-USDT", "--venue", "coinbase:BTC-USD",
                             "--venue-url", f"okx={okx.ws_url}", "--venue-url", f"coinbase={cb.ws_url},{cb.rest_url}",
                             "--root", str(root), "--from-id", "1", "--duration", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert rc.returncode == 0, rc.stdout + rc.stderr
    finally:
        okx.stop(), cb.stop()
    rows = {(s["exchange"], s["symbol"]): s for s in read_status(root)}
    assert set(rows) == {("okx", "BTCUSDT"), ("okx", "ETHUSDT"), ("coinbase", "BTCUSD")}
    assert all(r["last_id"] == 400 and r["counters"]["trades"] == 400 and r["gaps_open"] == 0 for r in rows.values()), rows

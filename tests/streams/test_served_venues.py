"""The multi-venue ingest inside the ingest process (``python -m spark_research.streams.service --venue ...``):
every venue and symbol in /snapshot with trades and a book, the consolidated top of book, and a kill -9
+ restart that resumes every symbol after its stored trades (none lost, none stored twice)."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from spark_research.streams.remote import RemoteStream
from spark_research.streams.served_venues import book_top, demo_tape, venue_specs
from spark_research.streams.venues.base import canonical

from tests.streams.stream_helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
VENUES = {"coinbase": ["BTC-USD", "ETH-USD"], "kraken": ["BTC/USD"], "okx": ["BTC-USDT"]}


def _start(root: Path, state: Path, log: Path) -> tuple[subprocess.Popen, str]:
    state.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "spark_research.streams.service", "--rate", "200", "--tape", "50000",
           "--root", str(root), "--state-file", str(state), "--venue-rate", "100",
           # a skipped frame every 400 per connection, a wrong checksum every 50 book updates (Kraken, OKX)
           "--venue-faults", "skip_every=400,checksum_every=50",
           *(a for v, syms in VENUES.items() for a in ("--venue", f"{v}:{','.join(syms)}"))]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    info = wait_until(lambda: state.exists() and json.loads(state.read_text()), 60, "the ingest process to listen")
    assert info["pid"] == proc.pid
    return proc, f"http://127.0.0.1:{info['port']}"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _rows(base: str) -> dict[tuple[str, str], dict]:
    return {(r["venue"], r["native"]): r for r in _get(base + "/snapshot")["venues"]}


def _stored(root: Path, venue: str, native: str) -> np.ndarray:
    db = root / f"{venue}.sqlite"
    if not db.exists():
        return np.array([], dtype="int64")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            rows = con.execute("SELECT id FROM trades WHERE symbol = ? ORDER BY id", (canonical(native),)).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return np.array([], dtype="int64")
    return np.array([r[0] for r in rows], dtype="int64")


def _all_live(base: str, min_trades: int) -> dict | None:
    rows = _rows(base)
    want = [(v, s) for v, syms in VENUES.items() for s in syms]
    ok = all(k in rows and rows[k]["counters"]["trades"] >= min_trades and rows[k]["top"]["synced"]
             and rows[k]["top"]["bid"] is not None and rows[k]["top"]["ask"] is not None for k in want)
    return rows if ok else None


@pytest.mark.timeout(240)
def test_served_venues_show_in_snapshot_and_resume_after_kill_9(tmp_path):
    root, state, log = tmp_path / "ingest", tmp_path / "ingest.json", tmp_path / "ingest.log"
    proc, base = _start(root, state, log)
    try:
        assert _get(base + "/health")["venues"] == VENUES
        rows = wait_until(lambda: _all_live(base, 300), 90, "every venue symbol with 300 trades and a synced book")
        assert ("binance", "BTCUSDT") in rows  # the demo stream is a venue row too
        for (venue, native), r in rows.items():
            assert r["instrument"] == ("ETH-USD" if native.startswith("ETH") else "BTC-USD")
            assert r["state"]["trade"] in ("connected", "resyncing") and r["latency_ms"]["p95"] is not None
            assert r["top"]["bid"] < r["top"]["ask"], f"{venue} {native}: own book crossed {r['top']}"
        # the demo faults are seen being handled: trade gaps backfilled, failed checksums resynced
        wait_until(lambda: sum(r["counters"]["gaps"] for k, r in _rows(base).items() if k[0] != "binance") > 0
                   and sum(r["counters"]["checksum_fails"] for r in _rows(base).values()) > 0, 60,
                   "a sequence gap and a checksum failure on the venue feeds")
        snap = _get(base + "/snapshot")
        cons = {c["instrument"]: c for c in snap["consolidated"]}
        assert {v["venue"] for v in cons["BTC-USD"]["venues"]} == {"binance", "coinbase", "kraken", "okx"}
        assert [v["venue"] for v in cons["ETH-USD"]["venues"]] == ["coinbase"]
        btc = cons["BTC-USD"]
        live_bids = [v["bid"] for v in btc["venues"] if not v["stale"] and v["bid"] is not None]
        assert btc["best_bid"]["price"] == max(live_bids) and btc["best_bid"]["venue"] in {"binance", "coinbase",
                                                                                         "kraken", "okx"}
        assert btc["crossed"] == (btc["best_bid"]["price"] > btc["best_ask"]["price"])

        remote = RemoteStream(base, cache_s=0.0)
        assert remote.venues == VENUES and len(remote.snapshot()["venues"]) == 5
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        away = remote.snapshot()  # the last snapshot, every stream disconnected and no book live
        assert all(r["state"]["trade"] == "disconnected" and not r["connected"] for r in away["venues"])
        assert all(c["best_bid"] is None and c["best_ask"] is None and all(v["stale"] for v in c["venues"])
                   for c in away["consolidated"])
        acked = {(v, s): _stored(root, v, s) for v, syms in VENUES.items() for s in syms}
        for k, ids in acked.items():
            assert len(ids) >= 300 and np.array_equal(ids, np.arange(1, len(ids) + 1)), f"{k} right after the kill"

        proc, base = _start(root, state, log)
        wait_until(lambda: all(len(_stored(root, *k)) >= len(ids) + 300 for k, ids in acked.items()), 90,
                   "300 more trades of every venue symbol after the restart")
        rows = _rows(base)
        for k, ids in acked.items():
            r = rows[k]
            # the restarted replay continued after the stored ids: this run received only the new trades
            # (a tape from id 1 again would have sent every stored one once more)
            assert r["counters"]["msgs"] <= r["last_id"] - len(ids) + 50, (k, r["counters"], r["last_id"], len(ids))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for (venue, native), before in acked.items():
        ids = _stored(root, venue, native)
        assert set(before.tolist()) <= set(ids.tolist()), f"{venue} {native}: stored trades lost by kill -9"
        assert np.array_equal(ids, np.arange(1, len(ids) + 1)), \
            f"{venue} {native}: {len(ids)} ids, {len(np.unique(ids))} distinct, max {ids.max()}"
        with sqlite3.connect(f"file:{root / f'{venue}.sqlite'}?mode=ro", uri=True) as con:
            prices = np.array([p for (p,) in con.execute("SELECT price FROM trades WHERE symbol = ? ORDER BY id",
                                                         (canonical(native),))])
        tape = demo_tape(native, 1, len(ids))  # what the replays published, before and after the kill
        np.testing.assert_allclose(prices, tape["price"].to_numpy(), atol=0.005, rtol=0,
                                   err_msg=f"{venue} {native}: stored prices differ from the tape's")


def test_book_top_reads_best_levels_and_hides_a_book_waiting_for_its_snapshot():
    from spark_research.streams.venues.base import VenueBook

    book = VenueBook("BTCUSD")
    book.bids.update({100.0: 1.5, 99.5: 3.0})
    book.asks.update({100.5: 0.7, 101.0: 2.0})
    assert book_top(book)["synced"] is False and book_top(book)["bid"] is None  # no snapshot yet
    book.last_update_id = 7
    assert book_top(book) == {"bid": 100.0, "bid_size": 1.5, "ask": 100.5, "ask_size": 0.7, "update_id": 7,
                              "synced": True}


def test_served_venue_specs_from_the_environment():
    from spark_research.streams.served_venues import DEFAULT_VENUES

    assert venue_specs(None) == DEFAULT_VENUES and venue_specs("") == () and venue_specs(" ; ") == ()
    assert venue_specs("kraken:BTC/USD; okx:BTC-USDT,ETH-USDT") == ("kraken:BTC/USD", "okx:BTC-USDT,ETH-USDT")
    with pytest.raises(ValueError, match="'binance' has no served replay"):
        venue_specs("binance:BTCUSDT")
    with pytest.raises(ValueError, match="no symbols after 'kraken:'"):
        venue_specs("kraken:")


def test_every_venue_replays_the_same_price_per_trade_id_of_an_instrument():
    a, b = demo_tape("BTC/USD", 1, 300), demo_tape("BTCUSDT", 201, 25_000)  # across blocks of the path
    assert b["seq"].tolist() == list(range(201, 25_201)) and set(b["symbol"]) == {"BTCUSDT"}
    assert a["price"].iloc[200:].tolist() == b["price"].iloc[:100].tolist()
    c = demo_tape("BTC-USD", 19_990, 20)  # straddles a block boundary
    assert c["price"].tolist() == b["price"].iloc[19_789:19_809].tolist()
    assert np.abs(np.diff(b["price"].to_numpy()) / b["price"].to_numpy()[1:]).max() < 0.002  # no jump between blocks
    assert 20_000 < a["price"].iloc[0] < 40_000  # BTC at the reference price, whatever the venue spelling
    with pytest.raises(ValueError, match="first_id=0"):
        demo_tape("BTC/USD", 0, 10)


@pytest.mark.parametrize("args, env, message", [
    (["--venue", "binance:ETHUSDT"], {}, "--venue: venue spec 'binance:ETHUSDT': venue 'binance' has no served replay"),
    ([], {"SPARK_STREAM_VENUES": "kraken:BTC/USD;nyse:IBM"}, "SPARK_STREAM_VENUES: venue spec 'nyse:IBM'"),
])
def test_spark_serve_refuses_a_bad_venue_before_starting_anything(tmp_path, args, env, message):
    import os

    from tests.conftest import free_port

    out = subprocess.run([sys.executable, "-m", "spark_research.cli", "serve", "--port", str(free_port()), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SPARK_VAR": str(tmp_path / "var"), **env})
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "var" / "run").exists()  # nothing was started

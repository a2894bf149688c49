"""Durability: kill -9 of the ingest process and restarts lose nothing acknowledged and
continue without gaps or duplicates; bars stay consistent across the restarts."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.replay import Faults

from tests.streams.stream_helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _stored_ids(db: Path) -> np.ndarray:
    if not db.exists():
        return np.array([], dtype="int64")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return np.array([r[0] for r in con.execute("SELECT id FROM trades ORDER BY id")], dtype="int64")
    except sqlite3.OperationalError:  # the ingest has not created its schema yet
        return np.array([], dtype="int64")


def _ingest_proc(ex, root: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spark_research.cli", "stream", "ingest", "--ws-url", ex.ws_url,
           "--rest-url", ex.rest_url, "--root", str(root), "--from-id", "1"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _bars_from_trades(trades: pd.DataFrame, us: int) -> pd.DataFrame:
    start = trades["time_us"] - trades["time_us"] % us
    g = trades.groupby(start, sort=True)
    return pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
                         "close": g["price"].last(), "volume": g["qty"].sum(), "trades": g["id"].count()})


def _assert_bars_consistent(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        trades = pd.read_sql_query("SELECT id, price, qty, time_us FROM trades ORDER BY id", con)
        checked = 0
        for name, us in (("1s", 1_000_000), ("1m", 60_000_000)):
            want = _bars_from_trades(trades, us).iloc[:-1]  # the last bar is still open
            got = pd.read_sql_query("SELECT start_us, open, high, low, close, volume, trades FROM bars "
                                    "WHERE interval = ? ORDER BY start_us", con, params=(name,)).set_index("start_us")
            cols = ["open", "high", "low", "close", "trades"]
            assert got.index.tolist() == want.index.tolist(), f"{name} bar starts differ"
            assert got[cols].to_numpy().tolist() == want[cols].to_numpy().tolist(), f"{name} bars differ"
            np.testing.assert_allclose(got["volume"].to_numpy(float), want["volume"].to_numpy(float), rtol=1e-9)
            checked += len(got)
    return checked


def test_kill_9_and_restart_lose_nothing_and_duplicate_nothing(exchange, tmp_path):
    ex = exchange(n=16_000, rate=3_000, faults=Faults(skip_every=97, drop_every=2_500))
    root = tmp_path / "ingest"
    db = root / "binance-BTCUSDT.sqlite"
    log = tmp_path / "ingest.log"
    proc = _ingest_proc(ex, root, log)
    try:
        for kill_at in (3_000, 8_000):
            wait_until(lambda: len(_stored_ids(db)) >= kill_at, 60, f"{kill_at} trades stored before the kill")
            acked = _stored_ids(db)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
            after = _stored_ids(db)
            assert set(acked) <= set(after), "acknowledged trades lost by kill -9"
            assert np.array_equal(after, np.arange(1, len(after) + 1)), "gap or duplicate right after the kill"
            proc = _ingest_proc(ex, root, log)
        assert ex.wait_finished(30)
        last = int(ex.source_ids[-1])
        wait_until(lambda: len(_stored_ids(db)) and _stored_ids(db)[-1] >= last, 60, "all trades after restarts")
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    ids = _stored_ids(db)
    assert np.array_equal(ids, ex.source_ids), f"stored {len(ids)} ids, {len(np.unique(ids))} distinct"
    assert _assert_bars_consistent(db) >= 3  # 1s bars closed across both restarts


def test_restart_in_process_resumes_after_last_stored_id(exchange, tmp_path):
    ex = exchange(n=4_000, rate=4_000)
    cfg = dict(ws_url=ex.ws_url, rest_url=ex.rest_url, root=tmp_path, from_id=1, idle_resync_s=0.3)
    first = IngestClient(IngestConfig(**cfg)).start()
    wait_until(lambda: (first.journal_last_id() or 0) >= 1_000, 20, "1000 trades")
    first.stop()
    stopped_at = first.journal.last_id()
    first.journal.close()
    assert stopped_at < 4_000
    second = IngestClient(IngestConfig(**cfg)).start()
    try:
        assert second.last_id == stopped_at
        assert ex.wait_finished(10) and second.wait_for_id(4_000, 20)
        ids = second.call(lambda: second.journal.trades())["seq"].to_numpy()
        assert np.array_equal(ids, ex.source_ids)
        assert second.call(second.status)["counters"]["backfilled"] > 0
    finally:
        second.stop()
        second.journal.close()


def test_bars_from_the_live_stream_equal_bars_recomputed_from_stored_trades(exchange, ingest):
    ex = exchange(n=6_000, rate=3_000, faults=Faults(skip_every=41, reorder_every=23))
    client = ingest(ex, depth=False)
    seen = []
    client.on_bar(seen.append)
    assert ex.wait_finished(10) and client.wait_for_id(6_000, 20)
    client.stop()
    db = client.journal.path
    assert _assert_bars_consistent(db) >= 1
    stored_1s = client.journal.bars("1s")
    assert [b.start_us for b in seen if b.interval == "1s"] == (
        stored_1s["timestamp"].astype("int64") // 1000).tolist()[-len([b for b in seen if b.interval == "1s"]):]


def test_on_bar_callback_errors_are_counted_not_fatal(exchange, ingest):
    ex = exchange(n=4_000, rate=2_000)
    client = ingest(ex, depth=False)
    good = []

    def bad(bar):
        raise RuntimeError("strategy bug")

    client.on_bar(bad)
    client.on_bar(good.append)
    assert ex.wait_finished(10) and client.wait_for_id(4_000, 20)
    status = client.call(client.status)
    assert status["counters"]["bars"] >= 1
    assert status["counters"]["callback_errors"] == len(good) == status["counters"]["bars"]

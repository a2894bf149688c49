"""Adapters, book, bars, config validation, replay endpoints and CLI: small and fast."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from spark_research.streams.adapters import (
    BinanceAdapter,
    BookSnapshot,
    DepthUpdate,
    MalformedMessage,
    Trade,
    get_adapter,
)
from spark_research.streams.bars import BarAggregator
from spark_research.streams.book import LocalBook
from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.replay import Faults, ReplayExchange

from tests.streams.stream_helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
A = BinanceAdapter(time_unit="MILLISECOND")


def test_binance_trade_frame_is_normalised_to_microseconds():
    t = A.parse_trade(b'{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":42,"p":"30000.10","q":"0.5",'
                      b'"T":1700000000120,"m":false,"M":true}')
    assert t == Trade("BTCUSDT", 42, 30000.10, 0.5, 1700000000120_000, 1700000000123_000, False)
    assert t.side == "buy"


@pytest.mark.parametrize("raw, reason", [
    (b'{"e":"trade","E":1', "json"),
    (b'{"e":"kline","E":1}', "schema"),
    (b'{"e":"trade","E":1,"s":"X","p":"1","q":"1","T":1,"m":true}', "schema"),
    (b'{"e":"trade","E":1,"s":"X","t":1.5,"p":"1","q":"1","T":1,"m":true}', "invalid"),
    (b'{"e":"trade","E":1,"s":"X","t":1,"p":"0","q":"1","T":1,"m":true}', "invalid"),
    (b'{"e":"trade","E":1,"s":"X","t":1,"p":"nan","q":"1","T":1,"m":true}', "invalid"),
    (b'{"e":"trade","E":1,"s":"X","t":1,"p":"1","q":"abc","T":1,"m":true}', "schema"),
    (b"[1,2]", "schema"),
])
def test_malformed_trade_frames_raise_with_a_reason(raw, reason):
    with pytest.raises(MalformedMessage) as err:
        A.parse_trade(raw)
    assert err.value.reason == reason


def test_invalid_price_error_names_field_and_value():
    with pytest.raises(MalformedMessage, match=r"field 'p' = '-5'"):
        A.parse_trade(b'{"e":"trade","E":1,"s":"X","t":1,"p":"-5","q":"1","T":1,"m":true}')


def test_depth_frame_with_u_before_U_is_invalid():
    with pytest.raises(MalformedMessage, match="'U','u' = 9,3"):
        A.parse_depth(b'{"e":"depthUpdate","E":1,"s":"X","U":9,"u":3,"b":[],"a":[]}')


def test_unknown_exchange_and_time_unit_are_rejected_by_name():
    with pytest.raises(ValueError, match="'kraken'"):
        get_adapter("kraken")
    with pytest.raises(ValueError, match="'NANOSECOND'"):
        BinanceAdapter(time_unit="NANOSECOND")


@pytest.mark.parametrize("field, value", [
    ("ws_url", "http://127.0.0.1:1"), ("rest_url", "ws://x"), ("flush_interval_ms", 0),
    ("reorder_window_ms", -1), ("symbol", "BTC/USDT"), ("from_id", -3),
])
def test_ingest_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"IngestConfig\.{field} .*{value!r}".replace("(", r"\(").replace(")", r"\)")):
        IngestConfig(**{field: value})


def test_faults_reject_negative_knobs_and_parse_the_cli_form():
    with pytest.raises(ValueError, match="Faults.drop_every must be >= 0, got -1"):
        Faults(drop_every=-1)
    assert Faults.parse("skip_every=5, stall_ms=2.5") == Faults(skip_every=5, stall_ms=2.5)
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        Faults.parse("explode=1")


def test_replay_rate_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="rate must be in 1..1_000_000 msg/s, got 0"):
        ReplayExchange(n=10, rate=0)


def test_local_book_follows_the_chain_and_flags_a_gap():
    book = LocalBook("X")
    assert book.apply(DepthUpdate("X", 1, 2, 0, (), ())) == "gap"  # no snapshot yet
    book.load(BookSnapshot("X", 100, ((9.0, 1.0), (8.0, 2.0)), ((11.0, 1.0),)))
    assert book.apply(DepthUpdate("X", 95, 100, 0, ((9.0, 5.0),), ())) == "stale"
    assert book.bids[9.0] == 1.0
    assert book.apply(DepthUpdate("X", 99, 103, 0, ((9.0, 0.0),), ((10.5, 3.0),))) == "applied"
    assert (book.best_bid(), book.best_ask(), book.last_update_id) == (8.0, 10.5, 103)
    assert book.apply(DepthUpdate("X", 105, 106, 0, ((7.0, 1.0),), ())) == "gap"
    assert 7.0 not in book.bids and book.last_update_id == 103


def test_bar_aggregator_matches_a_pandas_resample():
    from spark_research.data.synthetic import generate_trades

    tr = generate_trades("BTCUSDT", n=3_000, seed=3, rate_per_s=20)
    agg = BarAggregator("BTCUSDT", {"1s": 1_000_000})
    closed = []
    us = (tr["ts"].astype("int64") // 1000).to_numpy()
    for i, (p, q, t) in enumerate(zip(tr["price"], tr["qty"], us)):
        closed += agg.add(Trade("BTCUSDT", i + 1, float(p), float(q), int(t), int(t), False))
    df = tr.set_index("ts")
    want = df["price"].resample("1s").ohlc().dropna().iloc[:-1]
    assert len(closed) == len(want)
    assert [b.close for b in closed] == want["close"].tolist()
    assert [b.high for b in closed] == want["high"].tolist()
    vol = df["qty"].resample("1s").sum()
    np.testing.assert_allclose([b.volume for b in closed], vol[vol > 0].iloc[:-1].to_numpy(), rtol=1e-12)


def test_replay_tape_and_book_are_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        ex = ReplayExchange(n=600, rate=20_000, seed=9, depth_every=5).start()
        try:
            assert ex.wait_finished(10)
            trades = ex.historical_trades(1, 1000)
            runs.append(([(t["id"], t["price"], t["qty"], t["isBuyerMaker"]) for t in trades], ex.book()))
        finally:
            ex.stop()
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 600 and runs[0][1][1]


def test_replay_rest_errors_name_the_parameter(exchange):
    ex = exchange(n=100, rate=1_000)
    for query, needle in (("symbol=ETHUSDT&fromId=1", "'symbol' = 'ETHUSDT'"),
                          ("symbol=BTCUSDT&fromId=1&limit=5000", "'limit' = 5000")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{ex.rest_url}/api/v3/historicalTrades?{query}", timeout=5)
        assert err.value.code == 400
        assert needle in json.loads(err.value.read())["msg"]


def test_backoff_is_exponential_capped_and_seeded(tmp_path):
    cfg = IngestConfig(root=tmp_path, backoff_initial_s=0.1, backoff_max_s=1.0, seed=5)
    a, b = IngestClient(cfg), IngestClient(IngestConfig(**{**cfg.__dict__, "root": tmp_path / "b"}))
    delays = [a._backoff(i) for i in range(8)]
    assert delays == [b._backoff(i) for i in range(8)]
    for i, d in enumerate(delays):
        cap = min(1.0, 0.1 * 2 ** i)
        assert cap / 2 <= d <= cap
    assert max(delays) <= 1.0 and delays[3] > delays[0]


def test_cli_replay_ingest_and_status(tmp_path):
    env_py = [sys.executable, "-m", "spark_research.cli", "stream"]
    replay = subprocess.Popen([*env_py, "replay", "--port", "0", "--n", "800", "--rate", "4000",
                               "--faults", "skip_every=25", "--exit-when-done", "30"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = json.loads(replay.stdout.readline())
        root = tmp_path / "ingest"
        rc = subprocess.run([*env_py, "ingest", "--ws-url", urls["ws_url"], "--rest-url", urls["rest_url"],
                             "--root", str(root), "--from-id", "1", "--duration", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert rc.returncode == 0, rc.stdout + rc.stderr
        out = subprocess.run([*env_py, "status", "--root", str(root), "--json"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        status = json.loads(out.stdout)[0]
        assert status["last_id"] == 800 and status["gaps_open"] == 0
        assert status["counters"]["backfilled"] >= 800 // 25 and status["counters"]["trades"] == 800
        text = subprocess.run([*env_py, "status", "--root", str(root)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60).stdout
        assert "binance:BTCUSDT" in text and "last_id=800" in text
    finally:
        replay.kill()
        replay.wait(5)


def test_metrics_follow_connection_state(exchange, ingest):
    from spark_research import metrics

    ex = exchange(n=1_000, rate=2_000)
    client = ingest(ex)
    state = metrics.WS_CONN_STATE.labels("binance", "btcusdt@trade")
    wait_until(lambda: state._value.get() == 2, 10, "ws_conn_state 2 (connected)")
    msgs = metrics.WS_MSGS.labels("binance", "btcusdt@trade")
    m0 = msgs._value.get()
    wait_until(lambda: msgs._value.get() > m0 + 100, 10, "ws_msgs_total to grow")
    client.stop()
    assert state._value.get() == 0


def test_malformed_frame_is_logged_with_truncated_raw_payload(tmp_path):
    import logging

    class Keep(logging.Handler):
        records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    logger, handler = logging.getLogger("spark_research.streams.ingest"), Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        client = IngestClient(IngestConfig(root=tmp_path, from_id=1, depth=False))
        client._on_trade_frame(b"{" + b"x" * 5_000)
    finally:
        logger.removeHandler(handler)
    assert client.counters.malformed == 1
    record = next(r for r in handler.records if "malformed" in r.getMessage())
    assert "raw='{xxxx" in record.getMessage()
    assert len(record.getMessage()) < 600  # the 5 kB payload is cut to 200 characters


def test_unresolvable_gap_stays_open_and_nothing_after_it_is_stored(exchange, tmp_path):
    from spark_research import metrics
    from tests.streams.stream_helpers import wait_until as wait

    ex = exchange(n=2_000, rate=2_000, faults=Faults(skip_every=300))
    dead_rest = "http://127.0.0.1:9"  # discard port: nothing listens, every backfill fails
    client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=dead_rest, root=tmp_path, from_id=1, depth=False,
                                       backoff_initial_s=0.02, backoff_max_s=0.2)).start()
    try:
        gauge = metrics.WS_SEQ_GAPS_OPEN.labels("binance", "BTCUSDT")
        wait(lambda: gauge._value.get() == 1, 10, "ws_seq_gaps_open to show the gap")
        assert ex.wait_finished(10)
        assert client.call(lambda: client.state["trade"]) == 3  # resyncing
        stored = client.call(lambda: client.journal.trades())["seq"].to_numpy()
        assert np.array_equal(stored, np.arange(1, len(stored) + 1)), "a gap was stored silently"
        assert len(stored) < 300
    finally:
        client.stop()
        client.journal.close()


def test_replay_serves_trades_loaded_from_the_store(tmp_store, exchange):
    from spark_research.data.synthetic import generate_trades
    from spark_research.streams.replay import load_tape

    tmp_store.write_trades(generate_trades("ETHUSDT", n=500, seed=4, first_seq=1_001))
    tape = load_tape("ETHUSDT", store=tmp_store, n=300)
    ex = ReplayExchange(tape, rate=20_000).start()
    try:
        assert ex.symbol == "ETHUSDT" and ex.wait_finished(5)
        rest = ex.historical_trades(1_201, 1000)
        assert [r["id"] for r in rest] == list(range(1_201, 1_501))
        assert [float(r["price"]) for r in rest] == [float(f"{p:.2f}") for p in tape["price"]]  # tick precision
    finally:
        ex.stop()


def test_observe_many_fills_the_same_buckets_as_observe():
    from prometheus_client import CollectorRegistry, Histogram

    from spark_research.streams.ingest import observe_many

    reg = CollectorRegistry()
    one = Histogram("one", "x", buckets=(0.1, 1, 5, 10), registry=reg)
    bulk = Histogram("bulk", "x", buckets=(0.1, 1, 5, 10), registry=reg)
    values = [float(v) for v in np.random.default_rng(1).exponential(3, 500)] + [0.1, 1.0, 5.0, 10.0, 11.0] * 10
    for v in values:
        one.observe(v)
    observe_many(bulk, values)
    samples = {m.name: {(s.name.split("_")[-1], tuple(s.labels.items())): s.value for s in m.samples
                        if not s.name.endswith("_created")} for m in reg.collect()}
    a, b = samples["one"], samples["bulk"]
    assert {k: v for k, v in a.items() if k[0] != "sum"} == {k: v for k, v in b.items() if k[0] != "sum"}
    assert a[("sum", ())] == pytest.approx(b[("sum", ())], rel=1e-12)

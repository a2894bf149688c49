"""Every fault knob of the replay exchange: the ingest stores exactly the source trade ids
(none lost, none duplicated) and its local book equals the exchange's at checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

from spark_research import metrics
from spark_research.streams.replay import Faults

from tests.streams.stream_helpers import assert_book_matches, wait_until

FAULTS = {
    "none": Faults(),
    "drop": Faults(drop_every=400),
    "skip": Faults(skip_every=37),
    "duplicate": Faults(duplicate_every=11),
    "reorder": Faults(reorder_every=13),
    "malformed": Faults(malformed_every=50),
    "stall": Faults(stall_every=900, stall_ms=700),
    "refuse_for": Faults(refuse_for_s=0.8),
    "refuse_n": Faults(refuse_connections=3),
    "all": Faults(drop_every=700, skip_every=53, duplicate_every=17, reorder_every=29, malformed_every=101,
                  stall_every=1100, stall_ms=300, refuse_connections=2),
}


def _gauge(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_knob_loses_and_duplicates_nothing(name, exchange, ingest):
    ex = exchange(n=3_000, rate=4_000, faults=FAULTS[name])
    client = ingest(ex)
    # checkpoint mid-stream: the local book equals the exchange's
    wait_until(lambda: (client.journal_last_id() or 0) >= 1_200, 20, "1200 trades stored")
    assert_book_matches(ex, client)
    assert ex.wait_finished(20)
    last = int(ex.source_ids[-1])
    assert client.wait_for_id(last, timeout=20), f"ingest stuck at {client.journal_last_id()} of {last}"
    assert_book_matches(ex, client)
    stored = client.call(lambda: client.journal.trades())["seq"].to_numpy()
    assert len(stored) == len(ex.source_ids), f"{len(stored) - len(ex.source_ids)} extra/missing rows"
    assert np.array_equal(stored, ex.source_ids)
    assert len(np.unique(stored)) == len(stored)
    status = client.call(client.status)
    assert status["gaps_open"] == 0
    assert _gauge(metrics.WS_SEQ_GAPS_OPEN, exchange="binance", symbol="BTCUSDT") == 0


def test_stored_trades_equal_exchange_prices_and_quantities(exchange, ingest):
    ex = exchange(n=1_500, rate=5_000, faults=Faults(skip_every=10, reorder_every=7))
    client = ingest(ex)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    rest = ex.historical_trades(1, 1000) + ex.historical_trades(1001, 1000)
    stored = client.call(lambda: client.journal.trades())
    assert [float(r["price"]) for r in rest] == stored["price"].tolist()
    assert [float(r["qty"]) for r in rest] == stored["qty"].tolist()
    assert [("sell" if r["isBuyerMaker"] else "buy") for r in rest] == stored["side"].tolist()


def test_malformed_frames_are_counted_and_client_stays_alive(exchange, ingest):
    before = sum(s.value for m in metrics.WS_MALFORMED.collect() for s in m.samples if s.name.endswith("_total"))
    ex = exchange(n=2_000, rate=4_000, faults=Faults(malformed_every=40))
    client = ingest(ex, depth=False)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    sent = ex.status()["counters"]["malformed"]
    assert sent >= 40
    counted = client.call(client.status)["counters"]["malformed"]
    assert counted == sent
    after = sum(s.value for m in metrics.WS_MALFORMED.collect() for s in m.samples if s.name.endswith("_total"))
    assert after - before == sent
    assert client.call(lambda: client.state["trade"]) == 2  # still connected


def test_duplicates_are_dropped_and_counted(exchange, ingest):
    ex = exchange(n=1_000, rate=4_000, faults=Faults(duplicate_every=10))
    client = ingest(ex, depth=False)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    wait_until(lambda: client.call(client.status)["counters"]["duplicates"] >= ex.status()["counters"]["duplicated"],
               5, "duplicate count to catch up")
    assert client.call(client.status)["counters"]["duplicates"] == ex.status()["counters"]["duplicated"]


def test_gaps_are_counted_resynced_and_closed(exchange, ingest):
    gaps = metrics.WS_SEQ_GAPS.labels("binance", "BTCUSDT", "trade")
    resyncs = metrics.WS_RESYNCS.labels("binance", "BTCUSDT", "trade")
    g0, r0 = gaps._value.get(), resyncs._value.get()
    ex = exchange(n=2_000, rate=2_000, faults=Faults(skip_every=100))
    client = ingest(ex, depth=False)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    skipped = ex.status()["counters"]["skipped"]
    assert gaps._value.get() - g0 >= skipped * 0.5  # nearby skips may fall into one gap
    assert resyncs._value.get() - r0 >= gaps._value.get() - g0
    assert client.call(client.status)["counters"]["backfilled"] >= skipped


def test_depth_chain_break_triggers_book_resync(exchange, ingest):
    ex = exchange(n=3_000, rate=4_000, faults=Faults(skip_every=7), depth_every=10)
    client = ingest(ex)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    assert client.call(client.status)["counters"]["book_resyncs"] >= 5
    assert_book_matches(ex, client)


def test_reconnects_after_dropped_socket_with_backoff(exchange, ingest):
    r0 = metrics.WS_RECONNECTS.labels("binance")._value.get()
    ex = exchange(n=2_000, rate=4_000, faults=Faults(drop_every=300))
    client = ingest(ex, depth=False)
    assert ex.wait_finished(10) and client.wait_for_id(int(ex.source_ids[-1]), 20)
    dropped = ex.status()["counters"]["dropped"]
    assert dropped >= 3
    assert client.call(client.status)["counters"]["reconnects"] >= dropped
    assert metrics.WS_RECONNECTS.labels("binance")._value.get() - r0 >= dropped


def test_reorder_buffer_stays_bounded_while_rest_is_down_and_nothing_is_lost_once_it_is_back(exchange, ingest):
    """A gap that cannot be backfilled (REST down) must not grow memory without bound: beyond
    ``pending_max`` live trades are shed, and the backfill fetches them once REST answers again."""
    import dataclasses
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on: REST refuses
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    ex = exchange(n=4_000, rate=8_000, faults=Faults(skip_every=25))
    client = ingest(ex, depth=False, pending_max=300)
    client.call(lambda: setattr(client, "config", dataclasses.replace(client.config, rest_url=dead)))
    assert ex.wait_finished(20)
    status = wait_until(lambda: (st := client.call(client.status))["counters"]["shed"] > 1_000 and st, 10,
                        "live trades shed while REST is down")
    assert client.call(lambda: len(client._pending)) <= 300
    assert status["gaps_open"] >= 1 and status["state"]["trade"] == "resyncing"
    assert _gauge(metrics.WS_BUFFER_SHED, exchange="binance", symbol="BTCUSDT") >= status["counters"]["shed"]
    assert (client.journal_last_id() or 0) < int(ex.source_ids[-1])  # held back by the gap
    client.call(lambda: setattr(client, "config", dataclasses.replace(client.config, rest_url=ex.rest_url)))
    last = int(ex.source_ids[-1])
    assert client.wait_for_id(last, timeout=20), f"ingest stuck at {client.journal_last_id()} of {last}"
    stored = client.call(lambda: client.journal.trades())["seq"].to_numpy()
    assert np.array_equal(stored, ex.source_ids), "lost or duplicated trades after REST came back"
    assert wait_until(lambda: client.call(client.status)["gaps_open"] == 0, 5, "gap closed")

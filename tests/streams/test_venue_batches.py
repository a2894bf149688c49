"""The batch path of the venue ingest gives what the trade-by-trade path gives: frames normalised
column by column, runs sequenced and aggregated as a whole, batches journalled as one row each.

Each test drives the two paths with the same seeded, partly corrupted input and compares all of
what they produce (trades, errors, sequencing state, bars, stored rows). No sockets."""
from __future__ import annotations

import dataclasses
import importlib
import random
import sqlite3

import orjson
import pytest

from spark_research.streams import venues
from spark_research.streams.adapters import MalformedMessage, Trade, TradeBatch
from spark_research.streams.bars import BarAggregator
from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.timeunits import us_to_rfc3339
from spark_research.streams.venues import base
from spark_research.streams.venues.journal import VenueJournal, stored_last_id

T0_US = 1_700_000_000_000_000
NATIVES = {"okx": ["BTC-USDT", "ETH-USDT"], "bybit": ["BTCUSDT", "ETHUSDT"], "kraken": ["BTC/USD", "ETH/USD"],
           "coinbase": ["BTC-USD", "ETH-USD"]}
#: per venue: (symbol, id, price, qty, side, time) field names, sides (taker or maker), how values are sent
FIELDS = {"okx": ("instId", "tradeId", "px", "sz", "side", "ts"), "bybit": ("s", "i", "p", "v", "S", "T"),
          "kraken": ("symbol", "trade_id", "price", "qty", "side", "timestamp"),
          "coinbase": ("product_id", "trade_id", "price", "size", "side", "time")}
SIDES = {"okx": ("buy", "sell"), "bybit": ("Buy", "Sell"), "kraken": ("buy", "sell"), "coinbase": ("BUY", "SELL")}
#: wrong values for each field, mixed in by the corruption step (some are accepted by both paths)
BAD = {
    "id": ["12a", "-3", " 7", "+7", -3, 1.5, True, None, "", "\u0663", 2 ** 62, "99999999999999999999999", [1]],
    "num": ["0", "-1", "nan", "inf", "1e400", "abc", None, 0, True, "1_000", " 2.5 ", -0.0, [1], 1e308],
    "side": ["up", None, ["x"], "Buy", "buy", "SELL", 1],
    "time": ["abc", "1.5", "-5", " 17", 1.5, None, "2023-13-45T00:00:00Z", "1700000000000", 1_700_000_000_000_000, 5],
}


def _trade(venue: str, rng: random.Random, native: str, tid: int, t_us: int) -> dict:
    sym, idf, pxf, qtyf, sidef, tf = FIELDS[venue]
    px, qty = round(rng.uniform(10, 20), 2), round(rng.uniform(0.001, 3), 6)
    d = {sym: native, sidef: rng.choice(SIDES[venue])}
    if venue == "kraken":
        d.update({idf: tid, pxf: px, qtyf: qty, tf: us_to_rfc3339(t_us), "ord_type": "market"})
    elif venue == "coinbase":
        d.update({idf: str(tid), pxf: str(px), qtyf: str(qty), tf: us_to_rfc3339(t_us)})
    else:
        ms = t_us // 1000
        d.update({idf: str(tid), pxf: str(px), qtyf: str(qty), tf: str(ms) if venue == "okx" else ms})
    return d


def _corrupt(venue: str, rng: random.Random, data: list[dict]) -> None:
    d = rng.choice(data)
    sym, idf, pxf, qtyf, sidef, tf = FIELDS[venue]
    kind = rng.choice(["id", "num", "num", "side", "time", "symbol", "missing"])
    if kind == "id":
        d[idf] = rng.choice(BAD["id"])
    elif kind == "num":
        d[rng.choice([pxf, qtyf])] = rng.choice(BAD["num"])
    elif kind == "side":
        d[sidef] = rng.choice(BAD["side"])
    elif kind == "time":
        d[tf] = rng.choice(BAD["time"])
    elif kind == "symbol":
        d[sym] = rng.choice([NATIVES[venue][1], NATIVES[venue][1].replace("-", "").replace("/", ""), 7])
    else:
        del d[rng.choice(FIELDS[venue])]


def _frame(venue: str, data: list[dict], seq: int) -> bytes:
    if venue == "okx":
        return orjson.dumps({"arg": {"channel": "trades", "instId": NATIVES[venue][0]}, "data": data})
    if venue == "bybit":
        return orjson.dumps({"topic": f"publicTrade.{NATIVES[venue][0]}", "ts": T0_US // 1000, "type": "snapshot",
                             "data": data})
    if venue == "kraken":
        return orjson.dumps({"channel": "trade", "type": "update", "data": data})
    return orjson.dumps({"channel": "market_trades", "client_id": "", "timestamp": us_to_rfc3339(T0_US),
                         "sequence_num": seq, "events": [{"type": "update", "trades": data}]})


def frames(venue: str, seed: int, n: int = 400) -> list[bytes]:
    """``n`` frames of 1–40 trades of one symbol (sometimes two), a third of them with one bad value."""
    rng = random.Random(seed)
    out, tid, t_us = [], 1, T0_US
    for k in range(n):
        if k == 1 and venue in ("okx", "bybit"):
            t_us *= 1000  # microseconds where milliseconds are documented: both paths detect it alike
        data = []
        for _ in range(3 if k == 0 else rng.randint(1, 40)):
            t_us += rng.choice([0, 0, 0, 1_000, 250_000])
            data.append(_trade(venue, rng, NATIVES[venue][rng.random() < 0.1], tid, t_us))
            tid += 1
        if rng.random() < 0.33:
            _corrupt(venue, rng, data)
        out.append(_frame(venue, data, k))
    return out


def _one_by_one(monkeypatch, venue: str) -> None:
    """Make ``venue``'s parser skip its column path (its ``frame_trades`` always falls back)."""
    module = importlib.import_module(f"spark_research.streams.venues.{venue}")
    monkeypatch.setattr(module, "frame_trades", lambda data, columns, one_by_one: (one_by_one(data), []))


def _parse_all(venue: str, raws: list[bytes]) -> tuple[list, dict, int]:
    """Per frame: its trades by symbol (frame order within each), or its error; the unit guards; frames in columns."""
    proto = venues.get_venue(venue)
    out, in_columns = [], 0
    for raw in raws:
        try:
            f = proto.parse(raw)
        except MalformedMessage as exc:
            out.append(("error", exc.reason, str(exc)))
            continue
        assert not (f.trades and f.batches)
        in_columns += bool(f.batches)
        by_symbol: dict[str, list[Trade]] = {}
        for t in list(f.trades) + [t for b in f.batches for t in b.trades()]:
            by_symbol.setdefault(t.symbol, []).append(t)
        out.append(by_symbol)
    units = {k: (g.unit, g.checks, g.fixed) for k, g in getattr(proto, "units", {}).items()}
    return out, units, in_columns


@pytest.mark.parametrize("venue", list(NATIVES))
def test_a_frame_parsed_column_by_column_equals_it_parsed_trade_by_trade(venue, monkeypatch):
    raws = frames(venue, seed=11)
    fast, fast_units, in_columns = _parse_all(venue, raws)
    _one_by_one(monkeypatch, venue)
    slow, slow_units, none = _parse_all(venue, raws)
    assert fast == slow
    assert fast_units == slow_units
    if venue in ("okx", "bybit"):
        assert any(fixed for _, _, fixed in fast_units.values())  # the unit change was caught, by both
    errors = sum(1 for r in fast if isinstance(r, tuple))
    mixed = sum(1 for r in fast if isinstance(r, dict) and len(r) > 1)
    assert none == 0 and in_columns > 100  # the column path was taken (and skipped when patched)
    assert 40 < errors < len(raws) - 100 and mixed > 10  # the errors and the grouping by symbol were exercised


def test_a_frame_of_a_few_trades_gives_trades_and_a_frame_of_many_one_batch_per_symbol():
    rng = random.Random(3)
    okx = venues.get_venue("okx")
    few = okx.parse(_frame("okx", [_trade("okx", rng, "BTC-USDT", i, T0_US) for i in range(1, base.COLUMNS_FROM)], 0))
    assert [t.id for t in few.trades] == list(range(1, base.COLUMNS_FROM)) and not few.batches
    many = okx.parse(_frame("okx", [_trade("okx", rng, "BTC-USDT" if i % 3 else "ETH-USDT", i, T0_US + i * 1000)
                                    for i in range(1, 31)], 0))
    assert not many.trades
    btc, eth = many.batches
    assert (btc.symbol, eth.symbol) == ("BTCUSDT", "ETHUSDT")
    assert btc.ids == [i for i in range(1, 31) if i % 3] and eth.ids == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert eth.times_us == [T0_US + i * 1000 for i in eth.ids] and TradeBatch.of("ETHUSDT", eth.trades()) == eth


# ------------------------------------------------------------------------- sequencing and bars
def _stream(seed: int, n: int = 3_000) -> list[Trade]:
    """Trades 1..n delayed (a gap, filled later), duplicated and reordered; one lost for good near the end.

    Times cross many 1 s buckets, and now and then a trade is stamped 2 s late.
    """
    rng = random.Random(seed)
    t_us, ts = T0_US, []
    for i in range(1, n + 1):
        t_us += rng.choice([0, 0, 10_000, 300_000])
        late = rng.random() < 0.01
        ts.append(Trade("BTCUSD", i, round(rng.uniform(10, 20), 2), round(rng.uniform(0.001, 3), 6),
                        t_us - 2_000_000 if late else t_us, t_us, rng.random() < 0.5))
    out, held, i = [], [], 0
    while i < len(ts):
        r = rng.random()
        if r < 0.01:
            k = rng.randint(1, 5)
            held.append((i + rng.randint(5, 30), ts[i:i + k]))  # sent once the stream gets there
            i += k
            continue
        if r < 0.03 and i:
            out.append(ts[rng.randint(max(0, i - 50), i - 1)])  # a duplicate
        if r < 0.05 and i + 3 < len(ts):
            out += [ts[i + 2], ts[i], ts[i + 1]]  # reordered
            i += 3
        elif i != len(ts) - 10:  # the one lost for good
            out.append(ts[i])
            i += 1
        else:
            i += 1
        for due, late_ones in [h for h in held if h[0] <= i]:
            out += late_ones
            held.remove((due, late_ones))
    return out + [t for _, late_ones in held for t in late_ones]


def _client(tmp_path, name: str) -> IngestClient:
    # reorder window and buffer so large that no REST backfill starts: only sequencing is compared
    cfg = IngestConfig(symbol="BTCUSD", exchange="okx", root=tmp_path / name, from_id=1, depth=False,
                       reorder_window_ms=1e9, reorder_max=10 ** 9, max_batch=10 ** 9, flush_interval_ms=1e9,
                       status_interval_s=1e9)
    return IngestClient(cfg, adapter=venues.get_venue("okx"))


def _state(c: IngestClient) -> dict:
    return {"last_id": c.last_id, "pending": sorted(c._pending), "counters": dataclasses.asdict(c.counters),
            "gaps": list(c.gaps_ms), "open_bars": c.bars.open_bars, "closed": c._closed_bars,
            "batch": c._batch if c._batch_cols is None else c._batch_cols.trades(), "batched": c._batch_n,
            "live": c._batch_live_us, "last": (c.last_price, c.last_time_us)}


def test_feed_batch_sequences_like_feed_trade_through_gaps_duplicates_and_reorders(tmp_path):
    stream = _stream(seed=5)
    one, many = _client(tmp_path, "one"), _client(tmp_path, "many")
    rng = random.Random(2)
    i, now, runs = 0, 100.0, 0
    while i < len(stream):
        k = rng.randint(1, 30)
        chunk = stream[i:i + k]
        i += k
        now += 0.001
        for t in chunk:
            one.feed_trade(t, now)
        b = TradeBatch.of("BTCUSD", chunk)
        runs += not many._pending and b.ids == list(range(many.last_id + 1, many.last_id + 1 + len(b.ids)))
        many.feed_batch(b, now)
        assert _state(many) == _state(one), f"after stream[{i - k}:{i}]"
    assert runs > 20 and one.counters.duplicates > 10 and one._pending  # every path was taken
    one._flush(), many._flush()
    assert one.journal.trades().equals(many.journal.trades())
    assert one.journal.bars("1s").equals(many.journal.bars("1s")) and len(one.journal.bars("1s")) > 100
    one.journal.close(), many.journal.close()


def test_bars_of_a_run_equal_bars_of_its_trades_one_by_one():
    rng = random.Random(8)
    one, run = BarAggregator("X"), BarAggregator("X")
    closed_one, closed_run, t_us, tid = [], [], T0_US, 1
    for _ in range(500):
        trades = []
        for _ in range(rng.randint(1, 60)):
            t_us += rng.choice([0, 0, 1_000, 90_000, 2_500_000])
            late = t_us - 3_000_000 if rng.random() < 0.02 else t_us
            trades.append(Trade("X", tid, rng.uniform(1, 2), rng.uniform(0.1, 1), late, late, False))
            tid += 1
        for t in trades:
            closed_one += one.add(t)
        b = TradeBatch.of("X", trades)
        closed_run += run.add_run(b.ids, b.prices, b.qtys, b.times_us)
        assert closed_run == closed_one and run.open_bars == one.open_bars
    assert len(closed_one) > 200


# ------------------------------------------------------------------------- the journal
def test_the_trades_view_shows_each_stored_trade_as_a_row(tmp_path):
    vj = VenueJournal(tmp_path / "okx.sqlite", "okx", checkpoint_every_s=None)
    btc, eth = vj.for_symbol("BTCUSDT"), vj.for_symbol("ETHUSDT")
    a = [Trade("BTCUSDT", i, 10.0 + i / 8, 0.5, T0_US + i, T0_US + i + 3, i % 2 == 0) for i in range(1, 6)]
    b = [Trade("ETHUSDT", 7, 2.25, 1.0, T0_US, T0_US + 9, True)]  # one trade, its event time its own
    with vj.group():
        btc.commit(TradeBatch.of("BTCUSDT", a[:3]), [])
        eth.commit(b, [])
    btc.commit(TradeBatch.of("BTCUSDT", a[3:]), [])
    rows = vj.con.execute("SELECT symbol, id, price, qty, time_us, event_us, buyer_maker FROM trades "
                          "ORDER BY symbol, id").fetchall()
    assert rows == [(t.symbol, t.id, t.price, t.qty, t.time_us, t.event_us, int(t.buyer_maker)) for t in a + b]
    assert btc.last_id() == 5 and eth.last_id() == 7 and vj.for_symbol("XRPUSDT").last_id() is None
    assert btc.last_trade() == a[-1] and btc.trades_since(T0_US + 4) == a[3:]
    assert btc.trades()["seq"].tolist() == [1, 2, 3, 4, 5]
    vj.close()


def test_a_journal_of_the_row_per_trade_layout_is_converted_when_opened(tmp_path):
    path = tmp_path / "kraken.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE trades (symbol TEXT NOT NULL, id INTEGER NOT NULL, price REAL NOT NULL, qty REAL NOT NULL,
            time_us INTEGER NOT NULL, buyer_maker INTEGER NOT NULL, event_us INTEGER NOT NULL);
        CREATE INDEX trades_by_symbol_id ON trades(symbol, id);""")
    old = [Trade("BTCUSD", i, 100.0 + i, 0.25, T0_US + i, T0_US + i, i % 3 == 0) for i in range(1, 25_001)]
    con.executemany("INSERT INTO trades (symbol, id, price, qty, time_us, event_us, buyer_maker) VALUES "
                    "(?,?,?,?,?,?,?)", old)
    con.commit()
    assert stored_last_id(con, "BTCUSD") == 25_000 and stored_last_id(con, "ETHUSD") is None  # read as it is
    con.close()
    vj = VenueJournal(path, "kraken", checkpoint_every_s=None)
    btc = vj.for_symbol("BTCUSD")
    assert btc.last_id() == 25_000 and btc.last_trade() == old[-1]
    assert stored_last_id(vj.con, "BTCUSD") == 25_000
    assert btc.trades_since(T0_US + 24_999) == old[-2:]
    btc.commit([Trade("BTCUSD", 25_001, 1.0, 1.0, T0_US, T0_US, False)], [])
    assert btc.trades()["seq"].tolist() == list(range(1, 25_002))
    assert vj.con.execute("SELECT type FROM sqlite_master WHERE name = 'trades'").fetchone() == ("view",)
    vj.close()


@pytest.mark.parametrize("bounds", [(0.5, 5.0, 10.0), (0.0, 1.0), (-1.0, 0.0)])
def test_observing_n_zeros_at_once_equals_observing_zero_n_times(bounds):
    from prometheus_client import CollectorRegistry, Histogram

    from spark_research.streams.ingest import observe_zeros

    reg = CollectorRegistry()
    one, many = (Histogram(name, "doc", buckets=bounds, registry=reg) for name in ("one", "many"))
    for _ in range(40):
        one.observe(0.0)
    observe_zeros(many, 40)
    samples = {m.name: [(s.name.replace("many", "one"), s.labels, s.value) for s in m.samples
                        if not s.name.endswith("_created")] for m in reg.collect()}
    assert samples["one"] == samples["many"] and any(s[2] == 40 for s in samples["one"])

"""Venue wire formats, checksums, sequence rules and time units: small and fast (no sockets)."""
from __future__ import annotations

import time
import zlib

import pytest

from spark_research import metrics
from spark_research.streams.adapters import BinanceAdapter, MalformedMessage
from spark_research.streams.multi import parse_venue_spec, parse_venue_url
from spark_research.streams.timeunits import UnitGuard, rfc3339_us, to_us, unit_of, us_to_rfc3339
from spark_research.streams.venues import get_venue
from spark_research.streams.venues.base import BookMsg, VenueBook, canonical, crc32_signed, split_symbol
from spark_research.streams.venues.bybit import BybitProtocol
from spark_research.streams.venues.coinbase import CoinbaseProtocol
from spark_research.streams.venues.kraken import KrakenProtocol, kraken_checksum
from spark_research.streams.venues.okx import OkxProtocol, okx_checksum


# ----------------------------------------------------------------- symbols
@pytest.mark.parametrize("venue, native", [("kraken", "BTC/USD"), ("okx", "BTC-USD"), ("coinbase", "BTC-USD"),
                                           ("bybit", "BTCUSD")])
def test_each_venue_spells_a_symbol_its_own_way_and_maps_back_to_the_canonical_name(venue, native):
    p = get_venue(venue)
    for spelling in ("BTCUSD", "BTC/USD", "btc-usd"):
        assert p.native(spelling) == native
    assert canonical(native) == "BTCUSD"


def test_symbol_without_a_known_quote_is_rejected_by_name():
    assert split_symbol("ETHUSDT") == ("ETH", "USDT")
    with pytest.raises(ValueError, match="'FOOBAR'"):
        split_symbol("FOOBAR")


def test_venue_specs_and_urls_parse_and_reject_bad_input_by_name():
    s = parse_venue_spec("kraken:BTC/USD, ETH/USD")
    assert (s.venue, s.symbols) == ("kraken", ("BTC/USD", "ETH/USD"))
    assert parse_venue_url("okx=ws://127.0.0.1:9") == ("okx", ("ws://127.0.0.1:9", "http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="'ftx'"):
        parse_venue_spec("ftx:BTC-USD")
    with pytest.raises(ValueError, match="no symbols"):
        parse_venue_spec("kraken:")
    with pytest.raises(ValueError, match="'http://x'"):
        parse_venue_url("kraken=http://x")
    with pytest.raises(ValueError, match="'bitmex'"):
        get_venue("bitmex")


# ----------------------------------------------------------------- Kraken v2
def test_kraken_checksum_follows_the_documented_formatting_step():
    # docs.kraken.com "Book checksum (v2)": 45285.2 / 0.00100000 -> "452852" + "100000"
    assert kraken_checksum([("45285.2", "0.00100000")], []) == zlib.crc32(b"452852100000")
    # asks low->high first, then bids high->low; leading zeros of the price go too
    asks, bids = [("0.05005", "0.00000500"), ("0.05010", "0.00000500")], [("0.05000", "0.00000500")]
    assert kraken_checksum(asks, bids) == zlib.crc32(b"5005500" + b"5010500" + b"5000500")


def test_kraken_book_numbers_are_formatted_with_the_instrument_precision_for_the_checksum():
    k = KrakenProtocol()
    k.parse(b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
            b'"price_precision":1,"qty_precision":8}]}}')
    f = k.parse(b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,'
                b'"qty":0.1}],"asks":[{"price":45285.2,"qty":0.001}],"checksum":1}]}')
    msg = f.books[0]
    assert msg.snapshot and msg.bids[0][2:] == ("45283.5", "0.10000000") and msg.asks[0][3] == "0.00100000"
    book = VenueBook("BTCUSD", 10)
    book.load(msg)
    assert k.checksum(book) == zlib.crc32(b"452852100000" + b"45283510000000")


def test_kraken_book_is_truncated_to_the_subscribed_depth_after_an_update():
    book = VenueBook("X", 10)
    lv = lambda p: (float(p), 1.0, str(p), "1")  # noqa: E731
    book.load(BookMsg("X", True, tuple(lv(100 - i) for i in range(10)), tuple(lv(101 + i) for i in range(10))))
    book.apply(BookMsg("X", False, (lv(99.5),), ()))  # an insert pushes the 10th bid (91) out
    assert len(book.bids) == 10 and 91.0 not in book.bids and 99.5 in book.bids


def test_kraken_trade_status_heartbeat_and_errors():
    k = KrakenProtocol()
    f = k.parse(b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,'
                b'"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}')
    t = f.trades[0]
    assert (t.symbol, t.id, t.price, t.qty, t.side) == ("MATICUSD", 4665846, 0.5147, 6423.46326, "buy")
    assert t.time_us == rfc3339_us("2023-09-25T07:48:36.925533Z") == 1695628116925533
    assert k.parse(b'{"channel":"heartbeat"}').control == "heartbeat"
    assert k.parse(b'{"method":"pong","req_id":1,"time_in":"x","time_out":"y"}').control == "pong"
    with pytest.raises(MalformedMessage) as err:
        k.parse(b'{"method":"subscribe","success":false,"error":"Currency pair not supported X/Y"}')
    assert err.value.reason == "rejected"
    with pytest.raises(MalformedMessage, match="'side' = 'up'"):
        k.parse(b'{"channel":"trade","type":"update","data":[{"symbol":"A/USD","side":"up","price":1,"qty":1,'
                b'"trade_id":1,"timestamp":"2023-09-25T07:48:36.925533Z"}]}')


# ----------------------------------------------------------------- OKX v5
def test_okx_checksum_interleaves_bids_and_asks_as_documented():
    # okx.com docs-v5 example: bids 3366.1/7, 3366/6; asks 3366.8/9, 3368/8
    bids, asks = [("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]
    assert okx_checksum(bids, asks) == crc32_signed("3366.1:7:3366.8:9:3366:6:3368:8")
    # a shorter side simply runs out; the result is a signed 32-bit integer
    assert okx_checksum([("1", "1"), ("0.5", "2")], [("2", "1")]) == crc32_signed("1:1:2:1:0.5:2")
    assert -(2 ** 31) <= okx_checksum(bids, asks) < 2 ** 31


def test_okx_book_chain_detects_a_lost_update_and_drops_a_duplicate():
    o = OkxProtocol()
    snap = o.parse(b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":'
                   b'[["3366.8","9","0","3"]],"bids":[["3366.1","7","0","3"]],"ts":"1597026383085","checksum":0,'
                   b'"prevSeqId":-1,"seqId":123}]}').books[0]
    book = VenueBook("BTCUSDT")
    book.load(snap)
    assert book.last_update_id == 123 and o.checksum(book) == crc32_signed("3366.1:7:3366.8:9")
    nxt = snap._replace(snapshot=False, prev_seq=123, seq=130, bids=(), asks=())
    assert o.book_check(book, nxt) == "apply"
    assert o.book_check(book, nxt._replace(prev_seq=125, seq=131)) == "gap"
    book.apply(nxt)
    assert o.book_check(book, nxt) == "stale"
    assert o.book_check(book, nxt._replace(prev_seq=130, seq=130)) == "apply"  # the venue's keep-alive update


def test_okx_text_pong_and_error_event():
    o = OkxProtocol()
    assert o.parse("pong").control == "pong"
    assert o.ping_message() == "ping"
    with pytest.raises(MalformedMessage, match="60018"):
        o.parse(b'{"event":"error","code":"60018","msg":"Wrong URL or channel","connId":"a4d3ae55"}')


# ----------------------------------------------------------------- Bybit v5
def test_bybit_u_chain_and_u_equal_one_resets_the_book():
    b = BybitProtocol()
    raw = (b'{"topic":"orderbook.50.BTCUSDT","type":"%s","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50",'
           b'"0.006"]],"a":[["16611.00","0.029"]],"u":%d,"seq":7961638724},"cts":1672304484976}')
    snap = b.parse(raw % (b"snapshot", 18521288)).books[0]
    book = VenueBook("BTCUSDT", 50)
    book.load(snap)
    d = b.parse(raw % (b"delta", 18521289)).books[0]
    assert not d.snapshot and b.book_check(book, d) == "apply"
    assert b.book_check(book, d._replace(seq=18521290)) == "gap"
    assert b.book_check(book, snap) == "stale"
    assert b.parse(raw % (b"delta", 1)).books[0].snapshot  # u == 1: the venue restarted
    assert snap.event_us == 1672304484978_000


def test_bybit_public_trade_and_pong():
    b = BybitProtocol()
    f = b.parse(b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
                b'"s":"BTCUSDT","S":"Sell","v":"0.001","p":"16578.50","L":"PlusTick","i":"2290000000061666327",'
                b'"BT":false,"seq":1783284617}]}')
    t = f.trades[0]
    assert (t.id, t.price, t.qty, t.time_us, t.side) == (2290000000061666327, 16578.5, 0.001, 1672304486865000, "sell")
    assert b.parse(b'{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"1","op":"ping"}').control == "pong"
    with pytest.raises(MalformedMessage, match="'i' = '20f43950"):
        b.parse(b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1672304486865,"s":"BTCUSDT",'
                b'"S":"Buy","v":"0.001","p":"1","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}')


# ----------------------------------------------------------------- Coinbase
def test_coinbase_level2_and_sequence_num():
    c = CoinbaseProtocol()
    f = c.parse(b'{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":0,'
                b'"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":'
                b'"1970-01-01T00:00:00Z","price_level":"21921.73","new_quantity":"0.06317902"},{"side":"offer",'
                b'"event_time":"1970-01-01T00:00:00Z","price_level":"21921.74","new_quantity":"0.3"}]}]}')
    msg = f.books[0]
    assert f.conn_seq == 0 and msg.snapshot and msg.bids[0][:2] == (21921.73, 0.06317902) and msg.asks[0][0] == 21921.74
    assert msg.event_us == 1675974770714964  # nanoseconds cut to the microsecond
    hb = c.parse(b'{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:56.121961769Z",'
                 b'"sequence_num":1,"events":[{"current_time":"2023-06-23 20:31:56 +0000 UTC","heartbeat_counter":3}]}')
    assert hb.control == "heartbeats" and hb.conn_seq == 1
    with pytest.raises(MalformedMessage, match="'sequence_num' = '7'"):
        c.parse(b'{"channel":"heartbeats","timestamp":"2023-06-23T20:31:56Z","sequence_num":"7","events":[]}')


# ----------------------------------------------------------------- time units
@pytest.mark.parametrize("value, unit", [(1_700_000_000, "s"), (1_700_000_000.5, "s"), (1_700_000_000_123, "ms"),
                                         (1_700_000_000_123_456, "us"), (1_700_000_000_123_456_789, "ns"), (42, None)])
def test_unit_of_reads_the_magnitude_of_an_epoch_time(value, unit):
    assert unit_of(value) == unit


def test_to_us_converts_every_unit_and_rejects_an_unknown_one():
    assert [to_us(1_700_000_000, "s"), to_us(1_700_000_000_000, "ms"), to_us(1_700_000_000_000_000, "us"),
            to_us(1_700_000_000_000_000_999, "ns")] == [1_700_000_000_000_000] * 4
    with pytest.raises(ValueError, match="'min'"):
        to_us(1, "min")


def test_unit_guard_detects_a_wrong_unit_corrects_it_and_counts_it_once():
    counter = metrics.WS_TIME_UNIT_FIXES.labels("doc-venue", "T")
    c0 = counter._value.get()
    g = UnitGuard("doc-venue", "T", expected="us", checks=4)
    ms = int(time.time() * 1000)
    assert [g.to_us(ms + i) for i in range(6)] == [(ms + i) * 1000 for i in range(6)]
    assert g.unit == "ms" and g.fixed and counter._value.get() - c0 == 1
    assert UnitGuard("doc-venue", "T", expected="us").to_us(ms * 1000) == ms * 1000  # honoured: untouched


def test_rfc3339_round_trip_and_bad_input_named():
    us = 1_765_000_000_123_456
    assert rfc3339_us(us_to_rfc3339(us)) == us and rfc3339_us(us_to_rfc3339(us, 9)) == us
    with pytest.raises(ValueError, match="'yesterday'"):
        rfc3339_us("yesterday")


def test_binance_adapter_converts_millisecond_frames_when_microseconds_were_requested():
    a = BinanceAdapter()  # asks for MICROSECOND
    ms = int(time.time() * 1000)
    raw = b'{"e":"trade","E":%d,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":%d,"m":true}' % (ms, ms)
    t = a.parse_trade(raw)
    assert t.time_us == ms * 1000 and t.event_us == ms * 1000  # not ms (1000x too small: 1970 + 55 years)
    assert abs(t.time_us / 1e6 - time.time()) < 60

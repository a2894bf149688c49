"""Consolidated top of book across venues: the best bid and ask name their venue, USD and USDT books
are one instrument, stale or resyncing books are listed but never best, crossed books are flagged."""
from __future__ import annotations

import itertools

import pytest

from spark_research.streams.consolidated import VenueTop, consolidated_top_of_book, instrument


def top(venue, symbol, bid, ask, bid_size=1.0, ask_size=1.0, **kw) -> VenueTop:
    return VenueTop(venue, symbol, bid, bid_size, ask, ask_size, **kw)


BOOKS = [top("coinbase", "BTC-USD", 100.0, 100.6), top("kraken", "BTC/USD", 100.2, 100.5),
         top("okx", "BTC-USDT", 100.1, 100.4), top("bybit", "BTCUSDT", 99.9, 100.7)]


def test_best_bid_is_the_highest_and_best_ask_the_lowest_each_naming_its_venue():
    c = consolidated_top_of_book(BOOKS)["BTC-USD"]
    assert (c.best_bid.venue, c.best_bid.bid) == ("kraken", 100.2)
    assert (c.best_ask.venue, c.best_ask.ask) == ("okx", 100.4)
    assert not c.crossed and c.spread == pytest.approx(0.2)
    assert [v.venue for v in c.venues] == ["bybit", "coinbase", "kraken", "okx"]


def test_usd_usdt_and_usdc_books_are_one_instrument_other_quotes_are_not():
    books = BOOKS + [top("coinbase", "BTC-USDC", 100.3, 100.9), top("kraken", "BTC/EUR", 92.0, 92.1),
                     top("okx", "ETH-USDT", 2000.0, 2000.5), top("kraken", "XBT/USD", 100.25, 100.8)]
    out = consolidated_top_of_book(books)
    assert sorted(out) == ["BTC-EUR", "BTC-USD", "ETH-USD"]
    btc = out["BTC-USD"]
    assert {(v.venue, v.symbol) for v in btc.venues} == {
        ("coinbase", "BTC-USD"), ("coinbase", "BTC-USDC"), ("kraken", "BTC/USD"), ("kraken", "XBT/USD"),
        ("okx", "BTC-USDT"), ("bybit", "BTCUSDT")}
    assert (btc.best_bid.venue, btc.best_bid.symbol) == ("coinbase", "BTC-USDC")  # a USDC bid competes with USD
    assert out["BTC-EUR"].best_bid.bid == 92.0 and len(out["BTC-EUR"].venues) == 1


@pytest.mark.parametrize("symbol, want", [("BTC-USD", "BTC-USD"), ("BTC/USD", "BTC-USD"), ("BTCUSD", "BTC-USD"),
                                          ("BTCUSDT", "BTC-USD"), ("btc-usdt", "BTC-USD"), ("XBT/USD", "BTC-USD"),
                                          ("ETHUSDC", "ETH-USD"), ("ETHBTC", "ETH-BTC"), ("SOL_EUR", "SOL-EUR"),
                                          ("WEIRD", "WEIRD")])
def test_instrument_of_every_spelling(symbol, want):
    assert instrument(symbol) == want


def test_a_crossed_book_is_flagged_and_a_locked_one_is_not():
    crossed = consolidated_top_of_book([top("kraken", "BTC/USD", 101.0, 101.5), top("okx", "BTC-USDT", 100.0, 100.8)])
    c = crossed["BTC-USD"]
    assert c.crossed and (c.best_bid.venue, c.best_ask.venue) == ("kraken", "okx")
    assert c.spread == pytest.approx(-0.2)
    locked = consolidated_top_of_book([top("kraken", "BTC/USD", 100.8, 101.5), top("okx", "BTC-USDT", 100.0, 100.8)])
    assert not locked["BTC-USD"].crossed and locked["BTC-USD"].spread == 0.0


def test_a_stale_book_is_listed_but_never_best():
    books = [top("kraken", "BTC/USD", 105.0, 105.1, age_s=30.0),  # would cross everything if it counted
             top("okx", "BTC-USDT", 100.0, 100.4, age_s=0.2), top("coinbase", "BTC-USD", 100.1, 100.5, age_s=None)]
    c = consolidated_top_of_book(books, stale_after_s=5.0)["BTC-USD"]
    assert c.stale == {("kraken", "BTC/USD")}
    assert (c.best_bid.venue, c.best_ask.venue) == ("coinbase", "okx") and not c.crossed
    rows = {v["venue"]: v for v in c.as_dict()["venues"]}
    assert rows["kraken"]["stale"] and not rows["okx"]["stale"] and rows["kraken"]["bid"] == 105.0
    # the same book is fresh with a longer tolerance: then it is best, and crosses
    assert consolidated_top_of_book(books, stale_after_s=60.0)["BTC-USD"].crossed


def test_a_resyncing_book_is_never_best():
    books = [top("kraken", "BTC/USD", None, None, None, None, synced=False), top("okx", "BTC-USDT", 100.0, 100.4),
             top("bybit", "BTCUSDT", 101.0, 101.2, synced=False)]
    c = consolidated_top_of_book(books)["BTC-USD"]
    assert (c.best_bid.venue, c.best_ask.venue) == ("okx", "okx") and not c.crossed
    assert c.stale == {("kraken", "BTC/USD"), ("bybit", "BTCUSDT")}


def test_a_missing_venue_or_side_leaves_the_others():
    one_sided = [top("kraken", "BTC/USD", 100.0, None, ask_size=None),
                 top("okx", "BTC-USDT", None, 100.5, bid_size=None)]
    c = consolidated_top_of_book(one_sided)["BTC-USD"]
    assert (c.best_bid.venue, c.best_ask.venue) == ("kraken", "okx") and c.spread == 0.5
    only_bids = consolidated_top_of_book([top("kraken", "BTC/USD", 100.0, None)])["BTC-USD"]
    assert only_bids.best_ask is None and only_bids.spread is None and not only_bids.crossed
    assert only_bids.as_dict()["best_ask"] is None
    all_stale = consolidated_top_of_book([top("kraken", "BTC/USD", 100.0, 100.5, age_s=99.0)])["BTC-USD"]
    assert all_stale.best_bid is None and all_stale.best_ask is None and not all_stale.crossed
    assert consolidated_top_of_book([]) == {}


def test_ties_go_to_the_larger_size_then_the_venue_name_whatever_the_input_order():
    books = [top("okx", "BTC-USDT", 100.0, 101.0, bid_size=2.0, ask_size=1.0),
             top("kraken", "BTC/USD", 100.0, 101.0, bid_size=2.0, ask_size=3.0),
             top("bybit", "BTCUSDT", 100.0, 101.0, bid_size=1.0, ask_size=3.0)]
    answers = {(c.best_bid.venue, c.best_ask.venue)
               for p in itertools.permutations(books) for c in [consolidated_top_of_book(p)["BTC-USD"]]}
    assert answers == {("kraken", "bybit")}


def test_as_dict_names_the_venue_price_and_size_of_each_best_side():
    d = consolidated_top_of_book(BOOKS)["BTC-USD"].as_dict()
    assert d["best_bid"] == {"venue": "kraken", "symbol": "BTC/USD", "price": 100.2, "size": 1.0}
    assert d["best_ask"] == {"venue": "okx", "symbol": "BTC-USDT", "price": 100.4, "size": 1.0}
    assert d["instrument"] == "BTC-USD" and d["crossed"] is False and len(d["venues"]) == 4


def test_stale_after_must_be_positive():
    with pytest.raises(ValueError, match="stale_after_s must be > 0, got 0"):
        consolidated_top_of_book(BOOKS, stale_after_s=0)

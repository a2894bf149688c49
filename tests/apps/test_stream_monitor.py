"""The stream monitor in a real browser: Debian chromium via Playwright against `panel serve`."""
from __future__ import annotations

import time

import pytest


def _int(page, cls: str) -> int:
    return int(page.locator(f".{cls}").first.inner_text(timeout=10_000).replace(",", ""))


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_stream_monitor_loads_clean_and_numbers_move(panel_server, page, tmp_path):
    url = panel_server("apps/stream_monitor.py", env={
        "SPARK_VAR": str(tmp_path / "var"), "SPARK_STREAM_RATE": "400",
        "SPARK_STREAM_FAULTS": "skip_every=150,drop_every=1500", "SPARK_STREAM_TAPE": "60000"})
    page.goto(f"{url}/stream_monitor", wait_until="domcontentloaded", timeout=60_000)
    page.locator(".sr-msgs").first.wait_for(timeout=30_000)
    page.locator("canvas").first.wait_for(timeout=30_000)
    deadline = time.monotonic() + 20
    first_msgs, first_updates = _int(page, "sr-msgs"), _int(page, "sr-updates")
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if _int(page, "sr-msgs") > first_msgs + 200 and _int(page, "sr-gaps") > 0 and \
                _int(page, "sr-updates") >= first_updates + 8:
            break
    msgs, updates = _int(page, "sr-msgs"), _int(page, "sr-updates")
    assert msgs > first_msgs + 200, f"message count did not move: {first_msgs} -> {msgs}"
    assert updates >= first_updates + 8, "the page refreshes at less than 2 Hz"
    assert _int(page, "sr-gaps") > 0 and _int(page, "sr-resyncs") > 0, "skip faults must show as gaps and resyncs"
    # drop_every makes the replay exchange cut the socket: "disconnected" is a true, brief state,
    # so the indicator must come back to a live state within the reconnect backoff
    live_states = ("connected", "resyncing", "connecting")
    state_deadline = time.monotonic() + 10
    while page.locator(".sr-state-trade").first.inner_text() not in live_states and time.monotonic() < state_deadline:
        time.sleep(0.2)
    assert page.locator(".sr-state-trade").first.inner_text() in live_states
    page.watch.screenshot("stream_monitor")
    page.watch.assert_clean()


def _tob_rows(page) -> dict[str, str]:
    """``{venue: symbol}`` of the consolidated top-of-book table's rows."""
    rows = page.locator(".sr-tob-row")
    return {rows.nth(i).get_attribute("data-venue"): rows.nth(i).get_attribute("data-symbol")
            for i in range(rows.count())}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_venue_and_symbol_selectors_switch_the_counters_and_the_consolidated_book(panel_server, page, tmp_path):
    url = panel_server("apps/stream_monitor.py", env={
        "SPARK_VAR": str(tmp_path / "var"), "SPARK_STREAM_RATE": "400", "SPARK_STREAM_FAULTS": "",
        "SPARK_STREAM_TAPE": "60000",
        "SPARK_STREAM_VENUES": "coinbase:BTC-USD,ETH-USD;kraken:BTC/USD;okx:BTC-USDT,ETH-USDT"})
    page.goto(f"{url}/stream_monitor", wait_until="domcontentloaded", timeout=60_000)
    page.locator(".sr-msgs").first.wait_for(timeout=30_000)
    # default: the demo stream, with BTC-USD consolidated over every venue quoting it
    assert page.locator(".sr-venue-select select").input_value() == "binance"
    assert page.locator(".sr-symbol-select select").input_value() == "BTCUSDT"
    _wait(lambda: _tob_rows(page) == {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "BTC/USD",
                                      "okx": "BTC-USDT"}, 30, "BTC-USD books of four venues")
    _wait(lambda: page.locator(".sr-best-bid-venue").count() and _int(page, "sr-msgs") > 1_000, 30,
          "a best bid and the demo stream's messages")
    demo_msgs = _int(page, "sr-msgs")

    page.locator(".sr-venue-select select").select_option("okx")
    # the instrument is kept: OKX's BTC book first, then the user picks ETH
    _wait(lambda: page.locator(".sr-symbol-select select").input_value() == "BTC-USDT", 10, "OKX's BTC symbol")
    page.locator(".sr-symbol-select select").select_option("ETH-USDT")
    _wait(lambda: " ".join(page.locator(".sr-stream").first.inner_text().split()) == "okx ETH-USDT", 10,
          "the stream label to follow the selection")
    _wait(lambda: page.locator(".sr-instrument").first.inner_text() == "ETH-USD"
          and _tob_rows(page) == {"coinbase": "ETH-USD", "okx": "ETH-USDT"}, 15, "the ETH-USD books of two venues")
    first = _int(page, "sr-msgs")
    assert 0 < first < demo_msgs, f"counters still show the demo stream: {first} vs {demo_msgs}"
    _wait(lambda: _int(page, "sr-msgs") > first + 10, 15, "OKX ETH-USDT's message count to move")
    assert page.locator(".sr-state-trade").first.inner_text() in ("connected", "resyncing")
    assert _int(page, "sr-trades") > 0
    best_bid = float(page.locator(".sr-best-bid").first.inner_text().replace(",", ""))
    assert 1_000 < best_bid < 4_000, f"ETH's best bid looks like another instrument's: {best_bid}"
    assert page.locator(".sr-best-bid-venue").first.inner_text() in ("coinbase", "okx")
    # the venues table lists every venue and symbol, the demo stream included
    venues = page.locator(".sr-venue-row")
    listed = {(venues.nth(i).get_attribute("data-venue"), venues.nth(i).get_attribute("data-symbol"))
              for i in range(venues.count())}
    assert listed == {("binance", "BTCUSDT"), ("coinbase", "BTC-USD"), ("coinbase", "ETH-USD"), ("kraken", "BTC/USD"),
                      ("okx", "BTC-USDT"), ("okx", "ETH-USDT")}
    page.watch.screenshot("stream_monitor_venues")
    page.watch.assert_clean()

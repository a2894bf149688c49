"""History downloads through ccxt, offline: a local HTTP server answers in Binance's and OKX's REST
formats (``/api/v3/klines``, ``/api/v3/aggTrades``, ``/api/v5/market/history-candles``) and every
ccxt URL is pointed at it. Covers pagination, the venue's rate limit, 429/5xx retries with backoff,
resume after a kill, and bad rows reported by row and field while the good ones land."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spark_research.data import BarStore, generate_bars, generate_trades
from spark_research.data.download import (DownloadConfig, DownloadError, ccxt_exchange, download_bars,
                                          download_trades, rebase_urls, store_symbol_for)

ROOT = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2024-01-01", tz="UTC")
MIN = 60_000
N_BARS = 2_000  # a bit under 1.4 days of 1-minute bars
FAST = DownloadConfig(backoff_s=0.005, max_backoff_s=0.05, progress=False)


def _ms(ts: pd.Timestamp | str) -> int:
    return pd.Timestamp(ts).value // 1_000_000


def _num(x: float) -> str:
    return "NaN" if not math.isfinite(x) else f"{x:.8f}"


# --------------------------------------------------------------------------- the venue server
class VenueServer:
    """Binance- and OKX-format REST market data on 127.0.0.1 over a seeded tape.

    ``fail(path, status, times, headers)`` answers the next ``times`` requests to ``path`` with
    ``status``; ``delay_s`` slows every data answer (so a client can be killed mid-way); ``log``
    holds ``(path, params, monotonic time)`` of every request, ``unknown`` the paths it has no route for.
    """

    def __init__(self, bars: pd.DataFrame, trades: pd.DataFrame):
        self.bars = bars.reset_index(drop=True).copy()
        self.bar_ms = pd.DatetimeIndex(self.bars["timestamp"]).asi8 // 1_000_000
        self.trades = trades.reset_index(drop=True).copy()
        self.trade_ms = pd.DatetimeIndex(self.trades["ts"]).asi8 // 1_000_000
        self.faults: dict[str, deque] = {}
        self.delay_s = 0.0
        self.log: list[tuple[str, dict, float]] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()
        b, t = self.bars, self.trades
        # rows in the venues' wire shapes, built once (answers only slice them)
        # Binance kline: [open time, open, high, low, close, volume, close time, quote volume, trades,
        #                 taker buy base, taker buy quote, ignore]
        self.kline_rows = [[int(ms), _num(o), _num(h), _num(lo), _num(c), _num(v), int(ms) + MIN - 1, _num(v * c),
                            10, "0.0", "0.0", "0"]
                           for ms, o, h, lo, c, v in zip(self.bar_ms, b["open"], b["high"], b["low"], b["close"],
                                                         b["volume"])]
        # OKX candle: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]
        self.okx_rows = [[str(k[0]), *k[1:6], k[7], k[7], "1"] for k in self.kline_rows]
        self.agg_rows = [{"a": int(seq), "p": _num(p), "q": _num(q), "f": int(seq), "l": int(seq), "T": int(ms),
                          "m": side == "sell", "M": True}
                         for seq, p, q, side, ms in zip(t["seq"], t["price"], t["qty"], t["side"], self.trade_ms)]
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                status, body, headers = server.answer(url.path, params)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, path: str, status: int, times: int = 1, headers: dict | None = None, body: object = None) -> None:
        with self._lock:
            q = self.faults.setdefault(path, deque())
            for _ in range(times):
                q.append((status, body if body is not None else {"code": -1003, "msg": "Too many requests."},
                          headers or {}))

    def requests(self, path: str) -> list[dict]:
        return [p for x, p, _ in self.log if x == path]

    def answer(self, path: str, params: dict) -> tuple[int, object, dict]:
        with self._lock:
            self.log.append((path, params, time.monotonic()))
            q = self.faults.get(path)
            if q:
                return q.popleft()
        route = ROUTES.get(path)
        if route is None:
            self.unknown.append(path)
            return 404, {"code": -1, "msg": f"no route {path}"}, {}
        if self.delay_s and path in DATA_PATHS:
            time.sleep(self.delay_s)
        return 200, route(self, params), {}

    # ---- Binance spot (https://developers.binance.com/docs/binance-spot-api-docs/rest-api)
    def binance_exchange_info(self, params: dict) -> dict:
        return {"timezone": "UTC", "serverTime": _ms(T0), "rateLimits": [], "exchangeFilters": [], "symbols": [{
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
            "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                         "tickSize": "0.01000000"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                         "stepSize": "0.00001000"}],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]}]}

    def empty_exchange_info(self, params: dict) -> dict:
        return {"timezone": "UTC", "serverTime": _ms(T0), "rateLimits": [], "exchangeFilters": [], "symbols": []}

    def binance_klines(self, params: dict) -> list:
        assert params["symbol"] == "BTCUSDT" and params["interval"] == "1m", params
        limit = min(int(params.get("limit", 500)), 1000)
        lo = np.searchsorted(self.bar_ms, int(params.get("startTime", 0)), "left")
        hi = np.searchsorted(self.bar_ms, int(params.get("endTime", 2**62)), "right")
        return self.kline_rows[lo:min(hi, lo + limit)]

    def binance_agg_trades(self, params: dict) -> list:
        assert params["symbol"] == "BTCUSDT", params
        limit = min(int(params.get("limit", 500)), 1000)
        start, end = int(params["startTime"]), int(params["endTime"])
        assert end - start <= 3_600_000, "Binance: startTime/endTime at most 1 hour apart"
        lo = np.searchsorted(self.trade_ms, start, "left")
        hi = np.searchsorted(self.trade_ms, end, "right")
        return self.agg_rows[lo:min(hi, lo + limit)]

    # ---- OKX v5 (https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments)
    def okx_instruments(self, params: dict) -> dict:
        data = [] if params.get("instType") != "SPOT" else [{
            "alias": "", "baseCcy": "BTC", "category": "1", "ctMult": "", "ctType": "", "ctVal": "", "ctValCcy": "",
            "expTime": "", "instFamily": "", "instId": "BTC-USDT", "instType": "SPOT", "lever": "10",
            "listTime": "1606468572000", "lotSz": "0.00000001", "maxIcebergSz": "9999999999.0000000000000000",
            "maxLmtAmt": "1000000", "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "",
            "maxStopSz": "", "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999", "minSz": "0.00001",
            "optType": "", "quoteCcy": "USDT", "settleCcy": "", "state": "live", "stk": "", "tickSz": "0.1",
            "uly": "", "ruleType": "normal"}]
        return {"code": "0", "msg": "", "data": data}

    def okx_candles(self, params: dict) -> dict:
        """Rows newer than ``before`` and older than ``after`` (both exclusive), newest first."""
        assert params["instId"] == "BTC-USDT" and params["bar"] == "1m", params
        limit = min(int(params.get("limit", 100)), 300)
        lo = np.searchsorted(self.bar_ms, int(params.get("before", -1)), "right")
        hi = np.searchsorted(self.bar_ms, int(params.get("after", 2**62)), "left")
        return {"code": "0", "msg": "", "data": self.okx_rows[lo:hi][::-1][:limit]}


    # ---- Kraken spot REST (https://docs.kraken.com/api-reference/market-data/get-ohlc-data)
    KRAKEN_WINDOW = 720  # Kraken serves only the latest 720 candles of an interval, whatever `since` says

    def kraken_assets(self, params: dict) -> dict:
        return {"error": [], "result": {
            "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5,
                     "collateral_value": 1.0, "status": "enabled"},
            "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4, "display_decimals": 2,
                     "collateral_value": 1.0, "status": "enabled"}}}

    def kraken_asset_pairs(self, params: dict) -> dict:
        return {"error": [], "result": {"XXBTZUSD": {
            "altname": "XBTUSD", "wsname": "XBT/USD", "aclass_base": "currency", "base": "XXBT",
            "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit", "cost_decimals": 5, "pair_decimals": 1,
            "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [2, 3], "leverage_sell": [2, 3],
            "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]], "fee_volume_currency": "ZUSD",
            "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1",
            "status": "online"}}}

    def kraken_ohlc(self, params: dict) -> dict:
        """Candles committed after ``since`` (seconds), from the latest 720 only; ``last`` is the cursor."""
        assert params["pair"] == "XXBTZUSD" and params["interval"] == "1", params
        window = self.kline_rows[-self.KRAKEN_WINDOW:]
        since_ms = int(params.get("since", 0)) * 1000
        # [time (s), open, high, low, close, vwap, volume, count]
        rows = [[k[0] // 1000, k[1], k[2], k[3], k[4], k[4], k[5], 10] for k in window if k[0] > since_ms]
        return {"error": [], "result": {"XXBTZUSD": rows, "last": window[-1][0] // 1000}}


ROUTES = {
    "/api/v3/exchangeInfo": VenueServer.binance_exchange_info,
    "/fapi/v1/exchangeInfo": VenueServer.empty_exchange_info,
    "/dapi/v1/exchangeInfo": VenueServer.empty_exchange_info,
    "/api/v3/klines": VenueServer.binance_klines,
    "/api/v3/aggTrades": VenueServer.binance_agg_trades,
    "/api/v5/public/instruments": VenueServer.okx_instruments,
    "/api/v5/market/candles": VenueServer.okx_candles,
    "/api/v5/market/history-candles": VenueServer.okx_candles,
    "/0/public/Assets": VenueServer.kraken_assets,
    "/0/public/AssetPairs": VenueServer.kraken_asset_pairs,
    "/0/public/OHLC": VenueServer.kraken_ohlc,
}
DATA_PATHS = {"/api/v3/klines", "/api/v3/aggTrades", "/api/v5/market/candles", "/api/v5/market/history-candles",
              "/0/public/OHLC"}

BARS = generate_bars("BTCUSDT", n=N_BARS, seed=7)
TRADES = generate_trades("BTCUSDT", n=6_000, seed=7, rate_per_s=2.0, first_seq=1_000)  # ~50 min of trades


@pytest.fixture
def venue():
    servers: list[VenueServer] = []

    def make(bars: pd.DataFrame = BARS, trades: pd.DataFrame = TRADES) -> VenueServer:
        servers.append(VenueServer(bars, trades))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _exchange(server: VenueServer, exchange_id: str = "binance", rate_limit_ms: float = 1):
    ex = ccxt_exchange(exchange_id, api_base=server.url, timeout=5_000)
    ex.rateLimit = rate_limit_ms  # the tests' venue has no limit; one test checks ccxt's throttle
    return ex


def _expected(bars: pd.DataFrame, since, until) -> pd.DataFrame:
    ts = bars["timestamp"]
    return bars[(ts >= pd.Timestamp(since)) & (ts < pd.Timestamp(until))].reset_index(drop=True)


def _assert_same_bars(stored: pd.DataFrame, source: pd.DataFrame) -> None:
    assert stored["timestamp"].is_unique and stored["timestamp"].is_monotonic_increasing
    assert len(stored) == len(source)
    assert (stored["timestamp"].to_numpy() == source["timestamp"].to_numpy()).all()
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(stored[col].to_numpy(), source[col].to_numpy(), rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- bars
def test_binance_bars_are_paged_and_stored_equal_to_the_source(venue, tmp_store):
    server = venue()
    since, until = T0 + pd.Timedelta(minutes=7), T0 + pd.Timedelta(minutes=1_907)
    report = download_bars(_exchange(server), "BTC/USDT", "1m", since, until, tmp_store,
                           config=DownloadConfig(page_limit=250, progress=False))
    pages = server.requests("/api/v3/klines")
    assert len(pages) == math.ceil(1_900 / 250) == report.pages == report.requests - 1  # + exchangeInfo
    starts = [int(p["startTime"]) for p in pages]
    assert starts == [_ms(since) + i * 250 * MIN for i in range(len(pages))]  # each page starts where the last ended
    _assert_same_bars(tmp_store.load_bars("BTCUSDT"), _expected(BARS, since, until))
    assert (report.rows, report.bad_rows, report.gaps, server.unknown) == (1_900, [], [], [])


def test_okx_history_candles_newest_first_are_paged_into_the_same_store_shape(venue, tmp_store):
    server = venue()
    since, until = T0, T0 + pd.Timedelta(minutes=1_000)
    report = download_bars(_exchange(server, "okx"), "BTC/USDT", "1m", since, until, tmp_store,
                           store_symbol="OKX_BTCUSDT", config=FAST)
    pages = server.requests("/api/v5/market/history-candles")
    assert len(pages) == math.ceil(1_000 / 300) == report.pages  # OKX: 300 candles per request
    assert [int(p["before"]) for p in pages] == [_ms(since) - 1 + i * 300 * MIN for i in range(len(pages))]
    _assert_same_bars(tmp_store.load_bars("OKX_BTCUSDT"), _expected(BARS, since, until).assign(symbol="OKX_BTCUSDT"))
    assert report.gaps == [] and server.unknown == []


def test_kraken_serves_only_its_latest_720_candles_and_the_rest_is_reported_as_a_gap(venue, tmp_store):
    server = venue()
    until = T0 + pd.Timedelta(minutes=N_BARS)
    report = download_bars(_exchange(server, "kraken"), "BTC/USD", "1m", T0, until, tmp_store, config=FAST)
    oldest_served = T0 + pd.Timedelta(minutes=N_BARS - 720)
    assert report.gaps == [(T0, oldest_served)]  # history Kraken does not serve: named, not silently missing
    assert server.requests("/0/public/OHLC")[0]["since"] == str(_ms(T0) // 1000 - 60)
    _assert_same_bars(tmp_store.load_bars("BTCUSD"), _expected(BARS, oldest_served, until).assign(symbol="BTCUSD"))
    assert server.unknown == []


def test_a_hole_at_the_venue_is_reported_as_a_gap_and_the_rest_is_stored(venue, tmp_store):
    holed = BARS.drop(index=range(300, 420))  # two hours the venue has no candles for
    server = venue(bars=holed)
    report = download_bars(_exchange(server), "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=600), tmp_store,
                           config=DownloadConfig(page_limit=200, progress=False))
    assert report.gaps == [(T0 + pd.Timedelta(minutes=300), T0 + pd.Timedelta(minutes=420))]
    _assert_same_bars(tmp_store.load_bars("BTCUSDT"), _expected(holed, T0, T0 + pd.Timedelta(minutes=600)))


def test_a_recent_stretch_the_venue_has_not_published_yet_is_asked_again_next_run(venue, tmp_store):
    start = pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(hours=3)
    published = generate_bars("BTCUSDT", n=120, seed=5, start=start.tz_localize(None))  # the last hour is missing
    server = venue(bars=published)
    ex = _exchange(server)
    cfg = DownloadConfig(page_limit=100, progress=False)
    first = download_bars(ex, "BTC/USDT", "1m", start, None, tmp_store, config=cfg)
    assert first.rows == 120 and first.gaps[-1][0] == start + pd.Timedelta(minutes=120)
    n = len(server.requests("/api/v3/klines"))
    download_bars(ex, "BTC/USDT", "1m", start, None, tmp_store, config=cfg)
    again = [int(p["startTime"]) for p in server.requests("/api/v3/klines")[n:]]
    assert again and again[0] == _ms(start + pd.Timedelta(minutes=120))  # the hole, not what is stored


def test_rate_limit_spaces_requests_by_the_venues_rate_limit(venue, tmp_store):
    server = venue()
    ex = _exchange(server, rate_limit_ms=40)
    assert ex.enableRateLimit
    download_bars(ex, "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=600), tmp_store,
                  config=DownloadConfig(page_limit=100, progress=False))
    times = [t for path, _, t in server.log if path == "/api/v3/klines"]
    assert len(times) == 6
    # ccxt's throttle sends one request per rateLimit ms (40 ms): five gaps span at least 200 ms, less the
    # scheduling jitter of when the first and the last request are read (a single gap can look shorter)
    assert times[-1] - times[0] >= 5 * 0.040 - 0.015, np.diff(times)


def test_http_429_and_5xx_are_retried_with_growing_pauses_and_nothing_is_lost(venue, tmp_store):
    server = venue()
    server.fail("/api/v3/klines", 429, times=2, headers={"Retry-After": "0.2"})
    server.fail("/api/v3/klines", 503, times=1, body=b"Service Unavailable")
    server.fail("/api/v3/klines", 502, times=1, body=b"<html>Bad Gateway</html>")
    cfg = DownloadConfig(page_limit=500, backoff_s=0.02, max_backoff_s=1.0, progress=False)
    t0 = time.monotonic()
    report = download_bars(_exchange(server), "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=1_000), tmp_store,
                           config=cfg)
    elapsed = time.monotonic() - t0
    assert report.retries == 4 and report.pages == 2
    assert elapsed >= 0.2 + 0.2 + 0.08 + 0.16  # Retry-After twice, then 4x and 8x the first pause
    _assert_same_bars(tmp_store.load_bars("BTCUSDT"), _expected(BARS, T0, T0 + pd.Timedelta(minutes=1_000)))


def test_a_venue_that_keeps_failing_stops_after_the_retry_budget_with_a_named_error(venue, tmp_store):
    server = venue()
    server.fail("/api/v3/klines", 500, times=50, body=b"Internal Server Error")
    cfg = DownloadConfig(page_limit=500, max_retries=3, backoff_s=0.005, progress=False)
    with pytest.raises(DownloadError, match=r"binance: fetch_ohlcv failed 4 times, last: ExchangeNotAvailable.*rerun"):
        download_bars(_exchange(server), "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=100), tmp_store, config=cfg)
    assert len(server.requests("/api/v3/klines")) == 4  # bounded: 1 + 3 retries


def test_bad_rows_are_reported_by_row_and_field_while_the_good_rows_land(venue, tmp_store):
    bad = BARS.copy()
    bad.loc[10, "high"] = bad.loc[10, "low"] - 1.0  # high < low
    bad.loc[250, "close"] = float("nan")  # NaN on the second page
    server = venue(bars=bad)
    before = generate_bars("BTCUSDT", n=30, seed=3, start="2023-12-31 23:30")
    tmp_store.write_bars(before)  # what was stored before must survive untouched
    report = download_bars(_exchange(server), "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=400), tmp_store,
                           config=DownloadConfig(page_limit=200, progress=False))
    rows = [(b.row, b.field, b.reason) for b in report.bad_rows]
    assert rows == [(T0 + pd.Timedelta(minutes=10), "high", "high < low"),
                    (T0 + pd.Timedelta(minutes=250), "close", "price is NaN or infinite")]
    assert math.isnan(report.bad_rows[1].value) and report.bad_rows[0].value == bad.loc[10, "high"]
    assert "BTCUSDT @ 2024-01-01 00:10:00+00:00: field 'high'" in str(report.bad_rows[0])
    stored = tmp_store.load_bars("BTCUSDT")
    good = pd.concat([before, _expected(BARS, T0, T0 + pd.Timedelta(minutes=400)).drop(index=[10, 250])])
    _assert_same_bars(stored, good.reset_index(drop=True))
    assert report.rows == 398


def test_a_second_run_fetches_only_what_is_missing(venue, tmp_store):
    server = venue()
    ex = _exchange(server)
    cfg = DownloadConfig(page_limit=300, progress=False)
    download_bars(ex, "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=600), tmp_store, config=cfg)
    n = len(server.requests("/api/v3/klines"))
    again = download_bars(ex, "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=600), tmp_store, config=cfg)
    assert len(server.requests("/api/v3/klines")) == n and again.requests == 0
    assert again.skipped == [(T0, T0 + pd.Timedelta(minutes=600))]
    wider = download_bars(ex, "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=900), tmp_store, config=cfg)
    assert [int(p["startTime"]) for p in server.requests("/api/v3/klines")[n:]] == [_ms(T0 + pd.Timedelta(minutes=600))]
    assert wider.rows == 300
    _assert_same_bars(tmp_store.load_bars("BTCUSDT"), _expected(BARS, T0, T0 + pd.Timedelta(minutes=900)))


def test_a_killed_download_resumes_where_it_stopped_without_duplicates_or_gaps(venue, tmp_path):
    server = venue()
    server.delay_s = 0.15  # slow pages: the kill lands mid-way
    store_dir = tmp_path / "store"
    until = T0 + pd.Timedelta(minutes=N_BARS)
    cmd = [sys.executable, "-m", "spark_research.cli", "data", "download", "--exchange", "binance",
           "--symbol", "BTC/USDT", "--timeframe", "1m", "--since", str(T0), "--until", str(until),
           "--store", str(store_dir), "--api-base", server.url, "--limit", "100", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while len(server.requests("/api/v3/klines")) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    asked_before = len(server.requests("/api/v3/klines"))
    assert 6 <= asked_before < N_BARS // 100, (asked_before, proc.stderr.read().decode()[-2000:])
    store = BarStore(store_dir)
    partial = store.load_bars("BTCUSDT")
    assert 0 < len(partial) < N_BARS
    server.delay_s = 0.0
    report = download_bars(_exchange(server), "BTC/USDT", "1m", T0, until, store,
                           config=DownloadConfig(page_limit=100, progress=False))
    resumed = [int(p["startTime"]) for p in server.requests("/api/v3/klines")[asked_before:]]
    assert resumed[0] >= _ms(partial["timestamp"].iloc[-1]) - 100 * MIN  # at most the page in flight again
    assert resumed[0] > _ms(T0)
    assert len(resumed) <= N_BARS // 100 - len(partial) // 100 + 1
    _assert_same_bars(store.load_bars("BTCUSDT"), _expected(BARS, T0, until))
    assert report.gaps == [] and report.bad_rows == []


def test_cli_download_prints_the_summary_and_bad_rows_exit_1(venue, tmp_path, capsys):
    from spark_research.cli import main

    bad = BARS.copy()
    bad.loc[5, "volume"] = -3.0
    server = venue(bars=bad)
    code = main(["data", "download", "--exchange", "binance", "--symbol", "BTC/USDT", "--since", "2024-01-01",
                 "--until", "2024-01-01 02:00", "--store", str(tmp_path / "s"), "--api-base", server.url, "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "binance BTC/USDT bars -> BTCUSDT: 119 rows" in out
    assert "bad row skipped: BTCUSDT @ 2024-01-01 00:05:00+00:00: field 'volume' = -3.0: volume must be >= 0" in out
    assert len(BarStore(tmp_path / "s").load_bars("BTCUSDT")) == 119


# --------------------------------------------------------------------------- trades
def test_binance_agg_trades_are_paged_with_no_trade_lost_or_duplicated(venue, tmp_store):
    server = venue()
    since = TRADES["ts"].iloc[0].floor("s")
    until = TRADES["ts"].iloc[4_500].ceil("s")
    report = download_trades(_exchange(server), "BTC/USDT", since, until, tmp_store,
                             config=DownloadConfig(page_limit=700, progress=False))
    src = TRADES[(TRADES["ts"] >= since) & (TRADES["ts"] < until)]
    stored = tmp_store.load_trades("BTCUSDT")
    assert stored["seq"].tolist() == src["seq"].tolist()  # every id once, in order
    np.testing.assert_allclose(stored["price"], src["price"], atol=1e-8)
    assert (stored["side"].to_numpy() == src["side"].to_numpy()).all()
    # stored times are the venue's milliseconds
    assert (stored["ts"].to_numpy() == src["ts"].dt.floor("ms").to_numpy()).all()
    assert report.pages >= math.ceil(len(src) / 700) and report.rows == len(src)


def test_trades_of_one_millisecond_split_over_two_pages_are_all_kept(venue, tmp_store):
    trades = TRADES.iloc[:50].copy()
    trades.loc[10:21, "ts"] = trades.loc[10, "ts"]  # 12 trades in one millisecond; pages of 15 split them
    server = venue(trades=trades)
    report = download_trades(_exchange(server), "BTC/USDT", T0, T0 + pd.Timedelta(hours=1), tmp_store,
                             config=DownloadConfig(page_limit=15, progress=False))
    assert tmp_store.load_trades("BTCUSDT")["seq"].tolist() == trades["seq"].tolist()
    assert report.rows == 50


def test_more_trades_in_one_millisecond_than_a_page_holds_is_a_named_error_not_a_loop(venue, tmp_store):
    trades = TRADES.iloc[:50].copy()
    trades.loc[10:29, "ts"] = trades.loc[10, "ts"]  # 20 trades in one millisecond, pages of 15
    server = venue(trades=trades)
    with pytest.raises(DownloadError, match="more than 15 trades of BTC/USDT in the millisecond .*page_limit"):
        download_trades(_exchange(server), "BTC/USDT", T0, T0 + pd.Timedelta(hours=1), tmp_store,
                        config=DownloadConfig(page_limit=15, progress=False))
    # what came before the crowded millisecond (and the part of it two pages held) is stored
    assert tmp_store.load_trades("BTCUSDT")["seq"].tolist() == trades["seq"].iloc[:25].tolist()
    assert len(server.requests("/api/v3/aggTrades")) <= 3


def test_a_bad_trade_is_reported_by_its_id_and_field(venue, tmp_store):
    trades = TRADES.iloc[:100].copy()
    trades.loc[40, "qty"] = 0.0
    server = venue(trades=trades)
    report = download_trades(_exchange(server), "BTC/USDT", T0, T0 + pd.Timedelta(hours=1), tmp_store, config=FAST)
    assert [(b.row, b.field, b.value) for b in report.bad_rows] == [(int(trades.loc[40, "seq"]), "qty", 0.0)]
    assert len(tmp_store.load_trades("BTCUSDT")) == 99


def test_trades_interrupted_by_a_failing_venue_resume_after_the_last_stored_page(venue, tmp_store):
    server = venue()
    since, until = TRADES["ts"].iloc[0].floor("s"), TRADES["ts"].iloc[3_000].ceil("s")
    ex = _exchange(server)
    cfg = DownloadConfig(page_limit=500, max_retries=1, backoff_s=0.001, progress=False)
    original = server.binance_agg_trades
    served = []

    def flaky(self, params):  # three good pages, then the venue breaks down
        served.append(params)
        if len(served) > 3:
            raise RuntimeError("venue down")
        return original(params)

    ROUTES["/api/v3/aggTrades"] = flaky
    try:
        with pytest.raises(Exception):
            download_trades(ex, "BTC/USDT", since, until, tmp_store, config=cfg)
    finally:
        ROUTES["/api/v3/aggTrades"] = VenueServer.binance_agg_trades
    first = tmp_store.load_trades("BTCUSDT")
    assert len(first) >= 3 * 499  # three pages landed (a page's last millisecond is asked again)
    n = len(server.requests("/api/v3/aggTrades"))
    report = download_trades(ex, "BTC/USDT", since, until, tmp_store, config=cfg)
    resumed = [int(p["startTime"]) for p in server.requests("/api/v3/aggTrades")[n:]]
    assert resumed[0] == _ms(first["ts"].iloc[-1])  # from the newest stored millisecond, not from since
    src = TRADES[(TRADES["ts"] >= since) & (TRADES["ts"] < until)]
    assert tmp_store.load_trades("BTCUSDT")["seq"].tolist() == src["seq"].tolist()
    assert report.skipped and report.skipped[0][0] == since


def test_progress_bar_shows_the_venue_symbol_and_timeframe(venue, tmp_store, capsys):
    server = venue()
    download_bars(_exchange(server), "BTC/USDT", "1m", T0, T0 + pd.Timedelta(minutes=300), tmp_store,
                  config=DownloadConfig(page_limit=100, progress=True))
    err = capsys.readouterr().err
    assert "binance BTC/USDT 1m" in err and "/300 [" in err  # total: the bars of the range


def test_docstring_examples_run():
    import doctest

    import spark_research.data.download as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- inputs
def test_bad_inputs_name_the_field_and_the_value(venue, tmp_store):
    server = venue()
    ex = _exchange(server)
    with pytest.raises(ValueError, match="exchange 'nope' is not one of ccxt's"):
        ccxt_exchange("nope")
    with pytest.raises(ValueError, match="timeframe '7x' is not offered by binance"):
        download_bars(ex, "BTC/USDT", "7x", T0, T0 + pd.Timedelta(hours=1), tmp_store, config=FAST)
    with pytest.raises(ValueError, match="since must be before until"):
        download_bars(ex, "BTC/USDT", "1m", T0, T0, tmp_store, config=FAST)
    with pytest.raises(ValueError, match="since must be a time"):
        download_bars(ex, "BTC/USDT", "1m", "yesterday-ish", T0, tmp_store, config=FAST)
    with pytest.raises(ValueError, match="symbol 'DOGE/EUR' is not a market of binance"):
        download_bars(ex, "DOGE/EUR", "1m", T0, T0 + pd.Timedelta(hours=1), tmp_store, config=FAST)
    with pytest.raises(ValueError, match="DownloadConfig.page_limit must be None or an integer >= 1, got 0"):
        DownloadConfig(page_limit=0)
    with pytest.raises(ValueError, match=r"api_base must be http\(s\)://host\[:port\] without a path, got 'ftp://x'"):
        rebase_urls(ex, "ftp://x")
    assert store_symbol_for("BTC/USDT:USDT") == "BTCUSDT-USDT"

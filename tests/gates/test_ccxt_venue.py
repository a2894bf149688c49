"""CcxtVenue: live orders through ccxt's ``binance`` class pointed at the replay exchange's REST order
entry on loopback (signed requests with a test key), its recovery of lost answers, and its errors."""
from __future__ import annotations

import doctest
import math
import socket
import threading

import pytest

import spark_research.gates.ccxt_venue as ccxt_venue_module
from spark_research.data.download import ccxt_exchange, rebase_urls
from spark_research.gates.ccxt_venue import CcxtVenue, CcxtVenueConfig
from spark_research.gates.errors import ExchangeRejectedError, OrderRejectedError, VenueUnavailableError
from spark_research.gates.model import Order
from spark_research.gates.venue import ExecutionVenue, GuardedVenue
from spark_research.streams.replay import Faults, ReplayExchange
from tests.gates.conftest import NS, T0

PLAIN = dict(latency_ms=0, latency_jitter_ms=0, slippage_bps=0, slippage_std_bps=0, partial_fill_prob=0)
#: what a spot-only Binance account needs from ccxt: no futures, margin or wallet endpoints on load_markets
SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}


@pytest.fixture
def venue():
    """``venue(exchange_or_url, **CcxtVenueConfig)`` → a :class:`CcxtVenue` over ccxt's binance class."""
    made: list[CcxtVenue] = []

    def make(target, **cfg) -> CcxtVenue:
        url = target if isinstance(target, str) else target.rest_url
        binance = ccxt_exchange("binance", api_base=url, apiKey="test-key", secret="test-secret", options=SPOT_ONLY)
        v = CcxtVenue(binance, CcxtVenueConfig(**cfg))
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


def _order(i: int = 0, side: str = "buy", size: float = 0.5, ref: float = 30_000.0, symbol: str = "BTCUSDT") -> Order:
    return Order(f"sma_cross-BTCUSDT-{i}", "sma_cross", symbol, T0 + i * NS, side, size, ref)


def _counters(ex: ReplayExchange) -> dict:
    return ex.status()["orders"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_market_order_fills_in_full_at_the_exchange_price_through_ccxt(exchange, venue):
    ex = exchange(**{**PLAIN, "fee_rate": 0.001})
    v = venue(ex)
    assert isinstance(v, ExecutionVenue)
    (fill,) = v.submit(_order(size=0.25))
    assert (fill.order_id, fill.symbol, fill.side, fill.size, fill.venue) == \
        ("sma_cross-BTCUSDT-0", "BTCUSDT", "buy", 0.25, "binance")
    assert fill.price == ex.last_price()  # the replay price, not the order's reference price
    assert fill.fees == pytest.approx(0.25 * fill.price * 0.001, rel=1e-9)
    report = v.reports[-1]
    assert (report.status, report.fills, report.recovered, report.exchange_order_id) == ("FILLED", 1, False, 1)
    assert _counters(ex)["received"] == 1


def test_the_client_order_id_reaches_the_exchange_and_finds_the_order(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex)
    v.submit(_order(3))
    cid = v.client_order_id(_order(3))
    assert v.reports[-1].client_order_id == cid
    looked_up = v.exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": cid})
    assert (looked_up["clientOrderId"], looked_up["status"], looked_up["filled"]) == (cid, "closed", 0.5)


def test_partial_fills_sum_to_the_order_size(exchange, venue):
    v = venue(exchange(**{**PLAIN, "partial_fill_prob": 0.99, "max_parts": 4}))
    counts = []
    for i, size in enumerate([0.3, 1.23456789, 0.00000123, 2.0]):
        fills = v.submit(_order(i, size=size))
        counts.append(len(fills))
        assert math.fsum(f.size for f in fills) == pytest.approx(size, abs=1e-12)
        assert len({f.ts for f in fills}) == 1
    assert max(counts) > 1


def test_measured_latency_is_at_least_the_configured_latency(exchange, venue):
    v = venue(exchange(**{**PLAIN, "latency_ms": 120}))
    order = _order()
    (fill,) = v.submit(order)
    assert v.reports[-1].round_trip_ms >= 120
    assert v.reports[-1].exec_delay_ms >= 119  # the exchange's transactTime has millisecond resolution
    assert fill.ts - order.ts >= 119 * 1_000_000


def test_slippage_is_adverse_to_the_taker_on_both_sides(exchange, venue):
    ex = exchange(**{**PLAIN, "slippage_bps": 15, "slippage_std_bps": 5, "partial_fill_prob": 0.5})
    v = venue(ex)
    last = ex.last_price()
    for i in range(6):
        side = "buy" if i % 2 == 0 else "sell"
        for f in v.submit(_order(i, side, size=0.2)):
            assert (f.price - last) * (1 if side == "buy" else -1) >= 0, (side, f.price, last)


def test_limit_ioc_protection_expires_instead_of_paying_the_slippage(exchange, venue):
    ex = exchange(**{**PLAIN, "slippage_bps": 50})
    last = ex.last_price()
    v = venue(ex, limit_bps=10)
    assert v.submit(_order(ref=last)) == []  # 50 bps away, the limit allows 10: nothing fills, no error
    assert v.reports[-1].status == "EXPIRED" and v.rejects == 0
    (fill,) = venue(ex, limit_bps=80).submit(_order(1, ref=last))
    assert last < fill.price <= last * 1.008


def test_lost_response_after_execution_is_found_by_client_order_id_and_not_resent(exchange, venue):
    ex = exchange(faults=Faults(order_drop_every=1), **{**PLAIN, "partial_fill_prob": 0.99})
    v = venue(ex)
    fills = v.submit(_order(size=0.4))
    assert math.fsum(f.size for f in fills) == pytest.approx(0.4) and len(fills) > 1
    assert v.reports[-1].recovered and v.reports[-1].status == "FILLED"
    orders = _counters(ex)
    assert (orders["received"], orders["filled"], orders["dropped"]) == (1, 1, 1)  # exactly one order
    assert orders["queries"] >= 2  # the order by its client id, then its executions


def test_stalled_answer_times_out_and_the_order_is_found_once(exchange, venue):
    ex = exchange(faults=Faults(order_stall_every=1, order_stall_ms=800), **PLAIN)
    v = venue(ex, timeout_s=0.2)
    (fill,) = v.submit(_order(size=0.3))
    assert fill.size == 0.3 and v.reports[-1].recovered
    assert v.reports[-1].round_trip_ms < 800  # found by the look-up, not by waiting out the stall
    assert _counters(ex)["received"] == 1


def test_exchange_down_is_a_venue_error_naming_the_client_order_id(venue):
    v = venue(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(VenueUnavailableError, match="not sent: cannot load binance's markets") as err:
        v.submit(_order())
    assert isinstance(err.value, OrderRejectedError) and err.value.client_order_id == v.client_order_id(_order())
    assert (v.orders, v.rejects, v.unresolved) == (1, 1, [])


def test_exchange_unreachable_after_markets_loaded_is_not_sent_and_not_looked_up(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex)
    v.submit(_order(0))
    rebase_urls(v.exchange, f"http://127.0.0.1:{_free_port()}")  # nothing listens there: no connection
    with pytest.raises(VenueUnavailableError, match="not sent: cannot connect to binance"):
        v.submit(_order(1, size=0.1))
    assert v.reports[-1].status == "ERROR" and v.unresolved == []


def test_exchange_error_is_an_exchange_rejected_error_with_the_venues_code(exchange, venue):
    v = venue(exchange(**{**PLAIN, "reject_prob": 0.99}))
    with pytest.raises(ExchangeRejectedError, match="code -2010") as err:
        v.submit(_order())
    assert (err.value.code, err.value.status) == (-2010, 400)
    assert v.rejects == 1 and v.reports[-1].status == "ERROR"


def test_an_order_sent_twice_by_client_id_is_refused_by_the_exchange_not_filled_twice(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex, client_prefix="dup")
    v.submit(_order(5))
    again = venue(ex, client_prefix="dup")  # another process with the same ids
    with pytest.raises(ExchangeRejectedError, match="Duplicate order sent"):
        again.submit(_order(5))
    assert _counters(ex)["filled"] == 1


def test_unknown_symbols_and_bad_orders_are_refused_before_the_exchange(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex)
    with pytest.raises(OrderRejectedError, match="symbol 'ETHUSDT' is not a market of binance"):
        v.submit(_order(symbol="ETHUSDT"))
    with pytest.raises(OrderRejectedError, match="size must be > 0, got -1.0"):
        v.submit(_order(size=-1.0))
    with pytest.raises(OrderRejectedError, match="side must be 'buy' or 'sell', got 'hold'"):
        v.submit(_order(side="hold"))
    with pytest.raises(OrderRejectedError, match="size 1e-09 is not valid on BTC/USDT: .*minimum amount precision"):
        v.submit(_order(size=1e-9))
    assert _counters(ex)["received"] == 0
    with pytest.raises(ValueError, match="CcxtVenueConfig.timeout_s must be a finite number > 0, got 0"):
        CcxtVenueConfig(timeout_s=0)
    with pytest.raises(ValueError, match="CcxtVenueConfig.client_prefix must be 0-12 of \\[a-zA-Z0-9\\], got 'a-b'"):
        CcxtVenueConfig(client_prefix="a-b")


def test_client_order_ids_are_stable_distinct_alphanumeric_and_short(venue):
    v = venue("http://127.0.0.1:9", client_prefix="t")
    assert v.client_order_id(_order(7)) == v.client_order_id(_order(7))
    ids = {v.client_order_id(Order(oid, "s", "BTCUSDT", T0, "buy", 1.0, 1.0))
           for oid in ["a_b", "a-b", "ab", "a5fb", "x" * 80, "é"]}
    assert len(ids) == 6
    assert all(c.isalnum() and c.isascii() and len(c) <= 32 and c.startswith("t") for c in ids)


def test_closed_gate_refuses_before_any_request_reaches_the_exchange(exchange, venue, gate):
    ex = exchange(**PLAIN)
    guarded = GuardedVenue(venue(ex), gate)
    gate.close("alice", "test: venue incident", now_ns=T0 + NS)
    with pytest.raises(Exception, match="CLOSED"):
        guarded.submit(_order(1))
    assert _counters(ex)["received"] == 0


class _SilentExchange:
    """Answers ``/api/v3/exchangeInfo`` like the replay exchange, then reads every other request and
    never answers: every order's outcome stays unknown."""

    def __init__(self, info: bytes):
        self.info = info
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            lines = [line for line in data.split(b"\r\n") if line.startswith((b"POST ", b"GET "))]
            self.requests += lines
            if any(b"/exchangeInfo" in line for line in lines):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(self.info)).encode() + b"\r\n\r\n" + self.info)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_an_order_whose_outcome_stays_unknown_is_an_error_and_is_never_resent(exchange, venue):
    import urllib.request

    info = urllib.request.urlopen(exchange(**PLAIN).rest_url + "/api/v3/exchangeInfo").read()
    silent = _SilentExchange(info)
    try:
        v = venue(silent.url, timeout_s=0.1, recover_timeout_s=0.5)
        with pytest.raises(VenueUnavailableError, match="outcome unknown .* not resent: reconcile it") as err:
            v.submit(_order())
        cid = v.client_order_id(_order())
        assert err.value.client_order_id == cid and v.unresolved == [cid]
        assert v.reports[-1].status == "UNKNOWN" and v.rejects == 1
        posts = [r for r in silent.requests if r.startswith(b"POST")]
        lookups = [r for r in silent.requests if r.startswith(b"GET /api/v3/order?")]
        assert len(posts) == 1 and len(lookups) >= 2
        assert all(b"origClientOrderId=" + cid.encode() in r for r in lookups)
    finally:
        silent.close()


def test_an_order_the_exchange_never_received_is_reported_after_three_lookups_not_resent(exchange, venue,
                                                                                          monkeypatch):
    import ccxt

    ex = exchange(**PLAIN)
    v = venue(ex)
    v.submit(_order(0))  # markets loaded, the connection works

    def lost(*args, **kwargs):  # the request dies on the way: the exchange never sees it
        raise ccxt.RequestTimeout("binance POST /api/v3/order (test: lost on the way)")

    monkeypatch.setattr(v.exchange, "create_order", lost)
    with pytest.raises(VenueUnavailableError, match="has no such order: not resent"):
        v.submit(_order(1))
    counters = _counters(ex)
    assert counters["received"] == 1 and counters["queries"] >= 3


def test_http_5xx_to_an_executed_order_is_looked_up_not_resent(exchange, venue, monkeypatch):
    import ccxt

    ex = exchange(**{**PLAIN, "partial_fill_prob": 0.99})
    v = venue(ex)
    real = v.exchange.create_order

    def executed_then_503(*args, **kwargs):  # Binance: a 5xx means "status UNKNOWN, could have been a success"
        real(*args, **kwargs)
        raise ccxt.ExchangeNotAvailable("binance POST /api/v3/order 503 Service Unavailable")

    monkeypatch.setattr(v.exchange, "create_order", executed_then_503)
    fills = v.submit(_order(size=0.7))
    assert math.fsum(f.size for f in fills) == pytest.approx(0.7) and v.reports[-1].recovered
    assert (_counters(ex)["received"], _counters(ex)["filled"]) == (1, 1)


def test_docstring_examples_run():
    result = doctest.testmod(ccxt_venue_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0

"""ExchangeVenue: live orders over the replay exchange's Binance REST API, its recovery and its gate."""
from __future__ import annotations

import math
import socket
import threading
import time

import pandas as pd
import pytest

from spark_research.data import generate_bars
from spark_research.gates.audit import MemoryAudit
from spark_research.gates.errors import (ExchangeRejectedError, OrderRefusedError, OrderRejectedError,
                                         VenueUnavailableError)
from spark_research.gates.gate import GateBook, GateThresholds
from spark_research.gates.model import Order
from spark_research.gates.session import PaperLiveSession, stream_bar_callback
from spark_research.gates.venue import ExchangeConfig, ExchangeVenue, ExecutionVenue, GuardedVenue
from spark_research.streams.replay import Faults, ReplayExchange
from tests.gates.conftest import NS, T0, QuickSma

PLAIN = dict(latency_ms=0, latency_jitter_ms=0, slippage_bps=0, slippage_std_bps=0, partial_fill_prob=0)


@pytest.fixture
def venue():
    """``venue(exchange_or_url, **ExchangeConfig)`` → an :class:`ExchangeVenue`, closed at teardown."""
    made: list[ExchangeVenue] = []

    def make(target, **cfg) -> ExchangeVenue:
        v = ExchangeVenue(target if isinstance(target, str) else target.rest_url, ExchangeConfig(**cfg))
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


def _order(i: int = 0, side: str = "buy", size: float = 0.5, ref: float = 30_000.0) -> Order:
    return Order(f"sma_cross-BTCUSDT-{i}", "sma_cross", "BTCUSDT", T0 + i * NS, side, size, ref)


def _orders_on_exchange(ex: ReplayExchange) -> int:
    return ex.status()["orders"]["received"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_market_order_fills_in_full_at_the_exchange_price(exchange, venue):
    ex = exchange(**{**PLAIN, "fee_rate": 0.001})
    v = venue(ex)
    assert isinstance(v, ExecutionVenue)
    (fill,) = v.submit(_order(size=0.25))
    assert (fill.order_id, fill.side, fill.size, fill.venue) == ("sma_cross-BTCUSDT-0", "buy", 0.25, "exchange")
    assert fill.price == ex.last_price()  # the replay price, not the order's reference price
    assert fill.fees == pytest.approx(0.25 * fill.price * 0.001, rel=1e-9)
    report = v.reports[-1]
    assert (report.status, report.fills, report.recovered, report.exchange_order_id) == ("FILLED", 1, False, 1)
    assert _orders_on_exchange(ex) == 1


def test_partial_fills_sum_to_the_order_size(exchange, venue):
    v = venue(exchange(**{**PLAIN, "partial_fill_prob": 0.99, "max_parts": 4}))
    counts = []
    for i, size in enumerate([0.3, 1.23456789, 0.00000123, 2.0]):
        fills = v.submit(_order(i, size=size))
        counts.append(len(fills))
        assert math.fsum(f.size for f in fills) == pytest.approx(size, abs=1e-12)
        assert len({f.ts for f in fills}) == 1  # one execution time per order, as Binance reports it
    assert max(counts) > 1


def test_measured_latency_is_at_least_the_configured_latency(exchange, venue):
    v = venue(exchange(**{**PLAIN, "latency_ms": 120}))
    order = _order()
    (fill,) = v.submit(order)
    report = v.reports[-1]
    assert report.round_trip_ms >= 120
    assert report.exec_delay_ms >= 119  # the exchange's transactTime has millisecond resolution
    assert fill.ts - order.ts >= 119 * 1_000_000  # the fill time is the order time plus the venue's delay


def test_slippage_is_adverse_to_the_taker_on_both_sides(exchange, venue):
    ex = exchange(**{**PLAIN, "slippage_bps": 15, "slippage_std_bps": 5, "partial_fill_prob": 0.5})
    v = venue(ex)
    last = ex.last_price()
    for i in range(10):
        side = "buy" if i % 2 == 0 else "sell"
        for f in v.submit(_order(i, side, size=0.2)):
            assert (f.price - last) * (1 if side == "buy" else -1) >= 0, (side, f.price, last)
            assert abs(f.price / last - 1) * 1e4 < 60


def test_same_seed_and_orders_give_identical_fills(exchange, venue):
    cfg = dict(latency_ms=1, latency_jitter_ms=1, slippage_bps=4, slippage_std_bps=3, partial_fill_prob=0.5,
               expire_prob=0.2, seed=11)

    def run(**over):
        v = venue(exchange(**{**cfg, **over}))
        return [(f.side, f.size, f.price, f.fees) for i in range(12)
                for f in v.submit(_order(i, "buy" if i % 2 == 0 else "sell", size=0.1 * (i + 1)))]

    first, again, other = run(), run(), run(seed=12)
    assert first == again
    assert first != other


def test_limit_ioc_protection_expires_instead_of_paying_the_slippage(exchange, venue):
    ex = exchange(**{**PLAIN, "slippage_bps": 50})
    v = venue(ex, limit_bps=10)
    last = ex.last_price()
    assert v.submit(_order(ref=last)) == []  # 50 bps away, the limit allows 10: nothing fills, no error
    assert v.reports[-1].status == "EXPIRED" and v.rejects == 0
    wide = venue(ex, limit_bps=80)
    (fill,) = wide.submit(_order(1, ref=last))
    assert last < fill.price <= last * 1.008


def test_dropped_connection_after_execution_is_recovered_by_lookup_without_resending(exchange, venue):
    ex = exchange(faults=Faults(order_drop_every=1), **{**PLAIN, "partial_fill_prob": 0.99})
    v = venue(ex)
    fills = v.submit(_order(size=0.4))
    assert math.fsum(f.size for f in fills) == pytest.approx(0.4) and len(fills) > 1
    assert v.reports[-1].recovered and v.reports[-1].status == "FILLED"
    orders = ex.status()["orders"]
    assert (orders["received"], orders["filled"], orders["dropped"]) == (1, 1, 1)  # exactly one order
    assert orders["queries"] >= 2  # the order, then its executions (myTrades)


def test_stalled_answer_times_out_and_the_order_is_found_once(exchange, venue):
    ex = exchange(faults=Faults(order_stall_every=1, order_stall_ms=600), **PLAIN)
    v = venue(ex, timeout_s=0.15)
    (fill,) = v.submit(_order(size=0.3))
    assert fill.size == 0.3 and v.reports[-1].recovered
    assert v.reports[-1].round_trip_ms < 600  # found by the look-up, not by waiting out the stall
    assert ex.status()["orders"]["received"] == 1


def test_exchange_down_is_a_clear_venue_error_counted_by_the_session(venue):
    url = f"http://127.0.0.1:{_free_port()}"
    v = venue(url)
    with pytest.raises(VenueUnavailableError, match=f"not sent: cannot connect to {url}") as err:
        v.submit(_order())
    assert isinstance(err.value, OrderRejectedError) and err.value.client_order_id == v.client_order_id(_order())
    s = _session(v, max_error_rate=0.5, min_events_for_rate=3)
    s.replay(_bars_near(30_000.0))
    assert s.errors and all(url in msg for _, msg in s.errors)
    assert not s.live_fills
    assert any(e.reason == "error_rate" for e in s.gate.audit.entries())


def test_exchange_error_is_an_exchange_rejected_error_counted_by_the_session(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex)
    with pytest.raises(ExchangeRejectedError, match="code -1121") as err:
        v.submit(Order("e1", "sma_cross", "ETHUSDT", T0, "buy", 0.1, 2_000.0))  # this exchange trades BTCUSDT
    assert (err.value.code, err.value.status) == (-1121, 400) and "'ETHUSDT'" in str(err.value)
    rejecting = venue(exchange(**{**PLAIN, "reject_prob": 0.9}))
    s = _session(rejecting, max_error_rate=0.5, min_events_for_rate=3)
    s.replay(_bars_near(ex.last_price()))
    assert s.errors and all("-2010" in msg for _, msg in s.errors)
    assert any(e.reason == "error_rate" for e in s.gate.audit.entries())


def test_closed_gate_refuses_before_any_request_reaches_the_exchange(exchange, venue, gate):
    ex = exchange(**PLAIN)
    guarded = GuardedVenue(venue(ex), gate)
    gate.close("alice", "test: venue incident", now_ns=T0 + NS)
    with pytest.raises(OrderRefusedError, match="CLOSED"):
        guarded.submit(_order(1))
    assert _orders_on_exchange(ex) == 0
    gate.open("alice", "test: incident over", now_ns=T0 + 2 * NS)
    assert len(guarded.submit(_order(2))) == 1
    assert _orders_on_exchange(ex) == 1


def test_bad_orders_are_refused_locally(venue):
    v = venue(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(OrderRejectedError, match="size must be >= 1e-8, got 1e-09"):
        v.submit(_order(size=1e-9))
    with pytest.raises(OrderRejectedError, match="side must be 'buy' or 'sell', got 'hold'"):
        v.submit(_order(side="hold"))
    with pytest.raises(ValueError, match="base_url must be http\\(s\\)://host\\[:port\\], got 'ftp://x'"):
        ExchangeVenue("ftp://x")
    with pytest.raises(ValueError, match="ExchangeConfig.timeout_s must be a finite number > 0, got 0"):
        ExchangeConfig(timeout_s=0)


def test_client_order_ids_are_stable_valid_and_short(venue):
    v = venue("http://127.0.0.1:9", client_prefix="t-")
    assert v.client_order_id(_order(7)) == "t-sma_cross-BTCUSDT-7" == v.client_order_id(_order(7))
    long_id = Order("x" * 80 + "/é", "s", "BTCUSDT", T0, "buy", 1.0, 1.0)
    cid = v.client_order_id(long_id)
    assert len(cid) <= 36 and cid.startswith("t-") and cid.replace("-", "").replace("_", "").isalnum()


def test_signed_requests_carry_key_and_signature_and_the_embedded_exchange_accepts_them(exchange, venue):
    ex = exchange(**PLAIN)
    v = venue(ex, api_key="demo-key", api_secret="demo-secret")
    assert len(v.submit(_order())) == 1
    assert "demo-secret" not in repr(v.config)


# --------------------------------------------------------------------------- paper beside live
BARS = generate_bars("BTCUSDT", n=220, seed=21)


def _bars_near(price: float, spread_bps: float = 10.0) -> pd.DataFrame:
    """``BARS`` squeezed into +-``spread_bps`` around ``price``: the same crossings (an increasing
    affine map keeps SMA order), prices the exchange's tape agrees with."""
    out = BARS.copy()
    mid, lo, hi = out["close"].mean(), out["low"].min(), out["high"].max()
    scale = price * spread_bps / 1e4 / max(hi - mid, mid - lo)
    for col in ("open", "high", "low", "close"):
        out[col] = price + (out[col] - mid) * scale
    return out


def _session(venue, **th) -> PaperLiveSession:
    thresholds = GateThresholds(**{"cooldown_s": 600, "probation_fills": 2, "max_fill_drift_bps": 30,
                                   "max_drift_bps": 20, "max_pnl_delta": None, **th})
    return PaperLiveSession.create(QuickSma, "BTCUSDT", GateBook(MemoryAudit()), venue, params={"fast": 3, "slow": 10},
                                   thresholds=thresholds, start_ns=BARS["timestamp"].iloc[0].value)


def test_session_on_the_exchange_measures_drift_and_stays_open_on_a_calm_venue(exchange, venue):
    ex = exchange(**{**PLAIN, "latency_ms": 1, "slippage_bps": 2, "slippage_std_bps": 1, "partial_fill_prob": 0.3})
    s = _session(venue(ex))
    s.replay(_bars_near(ex.last_price()))
    d = s.drift_frame()
    assert len(s.live_fills) >= 6 and len(d) + len(s.awaiting_fills) == len(s.live_fills)
    assert (d["drift_bps"] > 0).any() and d["drift_bps"].max() < 30
    assert s.gate.state.name == "OPEN" and not s.refused and not s.errors
    assert _orders_on_exchange(ex) == len(s.sent)


def test_session_on_the_exchange_closes_its_gate_when_slippage_breaches_the_threshold(exchange, venue):
    ex = exchange(**{**PLAIN, "latency_ms": 1, "slippage_bps": 45, "slippage_std_bps": 5})
    s = _session(venue(ex))
    s.replay(_bars_near(ex.last_price()))
    d = s.drift_frame()
    assert d["drift_bps"].max() > 30
    assert (d["price_drift"] > 0).all()  # adverse: live bought higher / sold lower than paper
    states = set(s.state_frame()["state"])
    assert "CLOSED" in states
    assert s.refused, "an order must have met the closed gate"
    assert _orders_on_exchange(ex) == len(s.sent)  # the refused ones never reached the exchange
    first_close = next(e for e in s.gate.audit.entries() if e.new_state == "CLOSED")
    assert first_close.reason == "fill_drift_bps" and first_close.values["last_fill_drift_bps"] > 30


class _StreamBar:
    """What the ingest hands to bar callbacks (``symbol``, ``interval``, ``as_row()``)."""

    def __init__(self, row: dict, symbol: str = "BTCUSDT", interval: str = "1s"):
        self.row, self.symbol, self.interval = row, symbol, interval

    def as_row(self) -> dict:
        return self.row


def test_background_bar_callback_keeps_the_caller_free_and_the_bars_in_order(exchange, venue):
    ex = exchange(**{**PLAIN, "latency_ms": 60})
    bars = _bars_near(ex.last_price())
    reference = _session(venue(ex))
    reference.replay(bars)
    s = _session(venue(ex))
    callback = stream_bar_callback(s, interval="1s", background=True)
    t0 = time.perf_counter()
    for row in bars.to_dict("records"):
        callback(_StreamBar(row))
        callback(_StreamBar(row, interval="1m"))  # other intervals and symbols are not this session's
        callback(_StreamBar(row, symbol="ETHUSDT"))
    handed_over_s = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while s.engine.bars_seen < len(bars) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.engine.bars_seen == len(bars)
    # 60 ms per order: a synchronous caller would have waited for every one of them
    assert handed_over_s < 0.06 * len(reference.sent) / 2, (handed_over_s, len(reference.sent))
    assert [(f.ts, f.side, f.size, f.price) for f in s.paper_fills] == \
        [(f.ts, f.side, f.size, f.price) for f in reference.paper_fills]
    assert len(s.live_fills) > 0


class _SilentExchange:
    """Accepts connections, reads requests, never answers: every outcome stays unknown."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while data := _recv(conn):
            self.requests += [line for line in data.split(b"\r\n") if line.startswith((b"POST ", b"GET "))]

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def test_an_order_whose_outcome_stays_unknown_is_an_error_and_is_never_resent(venue):
    silent = _SilentExchange()
    try:
        v = venue(silent.url, timeout_s=0.1, recover_timeout_s=0.4)
        with pytest.raises(VenueUnavailableError, match="outcome unknown .* not resent: reconcile it") as err:
            v.submit(_order())
        cid = v.client_order_id(_order())
        assert err.value.client_order_id == cid and v.unresolved == [cid]
        assert v.reports[-1].status == "UNKNOWN" and v.rejects == 1
        posts = [r for r in silent.requests if r.startswith(b"POST")]
        lookups = [r for r in silent.requests if r.startswith(b"GET /api/v3/order?")]
        assert len(posts) == 1 and len(lookups) >= 2
        assert all(cid.encode() in r for r in lookups)
    finally:
        silent.close()

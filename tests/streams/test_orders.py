"""Order entry of the replay exchange: Binance's spot REST shapes, execution model, errors, faults."""
from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from decimal import Decimal

import orjson
import pytest

from spark_research.streams.orders import OrderConfig
from spark_research.streams.replay import Faults, ReplayExchange

#: No latency, one fill, no slippage: the reference execution the tests perturb one knob at a time.
PLAIN = dict(latency_ms=0, latency_jitter_ms=0, slippage_bps=0, slippage_std_bps=0, partial_fill_prob=0)


def call(ex: ReplayExchange, method: str, path: str, params: dict | None = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, object]:
    """One request on a fresh connection; ``(HTTP status, decoded JSON)``."""
    conn = http.client.HTTPConnection("127.0.0.1", ex.port, timeout=timeout)
    try:
        query = urllib.parse.urlencode(params or {})
        if method == "POST":
            conn.request("POST", path, body=query.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
        else:
            conn.request(method, f"{path}?{query}", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read())
    finally:
        conn.close()


def market(side: str = "BUY", qty: str = "0.10000000", cid: str | None = None, **extra) -> dict:
    p = {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": qty, **extra}
    if cid:
        p["newClientOrderId"] = cid
    return p


@pytest.fixture
def quiet_exchange(exchange):
    """``quiet_exchange(**order_config)``: an exchange whose short tape is fully published, so the
    price orders execute around stays put (deterministic fills)."""

    def make(faults: Faults | None = None, **cfg) -> ReplayExchange:
        ex = exchange(n=300, rate=50_000, faults=faults, orders=OrderConfig(**cfg))
        assert ex.wait_finished(10)
        return ex

    return make


def test_market_order_fills_in_full_in_binance_full_shape(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "fee_rate": 0.001})
    status, r = call(ex, "POST", "/api/v3/order", market(qty="0.25", cid="full-1"))
    assert status == 200, r
    assert {"symbol", "orderId", "clientOrderId", "transactTime", "price", "origQty", "executedQty",
            "cummulativeQuoteQty", "status", "type", "side", "fills"} <= set(r)
    assert (r["status"], r["type"], r["side"], r["clientOrderId"]) == ("FILLED", "MARKET", "BUY", "full-1")
    assert r["origQty"] == r["executedQty"] == "0.25000000"
    (fill,) = r["fills"]
    assert float(fill["price"]) == ex.last_price()  # no slippage configured: the replay price itself
    assert fill["qty"] == "0.25000000" and fill["commissionAsset"] == "USDT"
    assert float(fill["commission"]) == pytest.approx(0.001 * 0.25 * ex.last_price(), rel=1e-9)
    assert float(r["cummulativeQuoteQty"]) == pytest.approx(0.25 * ex.last_price(), rel=1e-12)
    # the order and its executions can be read back
    status, q = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "full-1"})
    assert status == 200 and (q["orderId"], q["status"], q["executedQty"]) == (r["orderId"], "FILLED", "0.25000000")
    status, by_id = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": r["orderId"]})
    assert by_id == q
    status, trades = call(ex, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": r["orderId"]})
    assert [(t["price"], t["qty"], t["commission"]) for t in trades] == [
        (fill["price"], fill["qty"], fill["commission"])]
    assert ex.status()["orders"]["received"] == 1 and ex.status()["orders"]["filled"] == 1


def test_partial_fills_sum_exactly_to_the_quantity(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "partial_fill_prob": 0.99, "max_parts": 4})
    parts = []
    for i, qty in enumerate(["0.12345678", "1.00000001", "0.00000007", "3.5"]):
        status, r = call(ex, "POST", "/api/v3/order", market(qty=qty, cid=f"part-{i}"))
        assert status == 200 and r["status"] == "FILLED", r
        assert sum(Decimal(f["qty"]) for f in r["fills"]) == Decimal(qty) == Decimal(r["executedQty"])
        assert all(Decimal(f["qty"]) > 0 for f in r["fills"])
        quote = sum(Decimal(f["price"]) * Decimal(f["qty"]) for f in r["fills"])
        assert Decimal(r["cummulativeQuoteQty"]) == quote.quantize(Decimal("1e-8"))  # 8 decimals, like Binance
        parts.append(len(r["fills"]))
    assert max(parts) > 1, f"no order was split: {parts}"
    assert max(parts) <= 4


def test_execution_waits_for_the_latency_without_blocking_the_exchange(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "latency_ms": 250})
    result = {}

    def send() -> None:
        t0 = time.perf_counter()
        result["answer"] = call(ex, "POST", "/api/v3/order", market(cid="slow-1"))
        result["ms"] = (time.perf_counter() - t0) * 1e3

    t = threading.Thread(target=send)
    t.start()
    deadline = time.monotonic() + 2
    while ex.status()["orders"]["open"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    # while the order travels: the exchange answers other requests at once, and shows it as NEW
    t0 = time.perf_counter()
    status, travelling = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "slow-1"})
    ping_ms = (time.perf_counter() - t0) * 1e3
    t.join(5)
    assert status == 200 and travelling["status"] == "NEW" and travelling["executedQty"] == "0.00000000"
    assert ping_ms < 150, f"the exchange was blocked for {ping_ms:.0f} ms"
    status, r = result["answer"]
    assert status == 200 and r["status"] == "FILLED"
    assert result["ms"] >= 250
    q = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": r["orderId"]})[1]
    assert q["updateTime"] - q["time"] >= 249  # execution time - arrival time, in ms


def test_slippage_is_against_the_taker(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "slippage_bps": 20})
    last = ex.last_price()
    _, buy = call(ex, "POST", "/api/v3/order", market("BUY"))
    _, sell = call(ex, "POST", "/api/v3/order", market("SELL"))
    buy_px, sell_px = float(buy["fills"][0]["price"]), float(sell["fills"][0]["price"])
    assert buy_px > last > sell_px
    assert (buy_px / last - 1) * 1e4 == pytest.approx(20, abs=0.01)  # 20 bps, rounded to the tick against the taker
    assert (1 - sell_px / last) * 1e4 == pytest.approx(20, abs=0.01)


def _fills(ex: ReplayExchange, n: int = 12) -> list[tuple]:
    out = []
    for i in range(n):
        side = "BUY" if i % 2 == 0 else "SELL"
        status, r = call(ex, "POST", "/api/v3/order", market(side, qty=f"0.{i + 1:02d}", cid=f"det-{i}"))
        assert status == 200, r
        out.append((r["status"], r["executedQty"], tuple((f["price"], f["qty"], f["commission"]) for f in r["fills"])))
    return out


def test_same_seed_and_orders_give_identical_fills(quiet_exchange):
    cfg = dict(latency_ms=1, latency_jitter_ms=1, slippage_bps=5, slippage_std_bps=3, partial_fill_prob=0.5,
               max_parts=3, expire_prob=0.2)
    first = _fills(quiet_exchange(**cfg, seed=3))
    again = _fills(quiet_exchange(**cfg, seed=3))
    other = _fills(quiet_exchange(**cfg, seed=4))
    assert first == again
    assert first != other  # the draws come from the seed, not from nowhere
    assert {s for s, _, _ in first} <= {"FILLED", "EXPIRED"}


def test_ioc_limit_that_does_not_cross_expires_and_one_that_crosses_fills(quiet_exchange):
    ex = quiet_exchange(**PLAIN)
    last = ex.last_price()
    low = f"{last * 0.99:.2f}"
    status, r = call(ex, "POST", "/api/v3/order", {**market(cid="ioc-1"), "type": "LIMIT", "timeInForce": "IOC",
                                                    "price": low})
    assert status == 200, r
    assert (r["status"], r["executedQty"], r["fills"], r["type"]) == ("EXPIRED", "0.00000000", [], "LIMIT")
    assert r["timeInForce"] == "IOC" and float(r["price"]) == float(low)
    high = f"{last * 1.01:.2f}"
    _, r = call(ex, "POST", "/api/v3/order", {**market(cid="ioc-2"), "type": "LIMIT", "timeInForce": "IOC",
                                               "price": high})
    assert r["status"] == "FILLED" and float(r["fills"][0]["price"]) <= float(high)
    counters = ex.status()["orders"]
    assert (counters["expired"], counters["filled"]) == (1, 1)


def test_expiry_leaves_part_of_a_market_order_unfilled(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "expire_prob": 0.99})
    _, r = call(ex, "POST", "/api/v3/order", market(qty="1"))
    assert r["status"] == "EXPIRED"
    assert 0 < Decimal(r["executedQty"]) < Decimal(r["origQty"])
    assert sum(Decimal(f["qty"]) for f in r["fills"]) == Decimal(r["executedQty"])


BAD = [  # (changes to a valid MARKET order, code, field, value)
    ({"quantity": None}, -1102, "quantity", "None"),
    ({"quantity": "abc"}, -1100, "quantity", "abc"),
    ({"quantity": "0"}, -1013, "quantity", "0"),
    ({"quantity": "0.123456789"}, -1111, "quantity", "0.123456789"),
    ({"side": "HOLD"}, -1117, "side", "HOLD"),
    ({"type": "STOP_LOSS"}, -1116, "type", "STOP_LOSS"),
    ({"symbol": "DOGEUSDT"}, -1121, "symbol", "DOGEUSDT"),
    ({"symbol": None}, -1102, "symbol", "None"),
    ({"price": "30000"}, -1106, "price", "30000"),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "30000"}, -1115, "timeInForce", "GTC"),
    ({"type": "LIMIT", "timeInForce": "IOC"}, -1102, "price", "None"),
    ({"type": "LIMIT", "timeInForce": "IOC", "price": "30000.001"}, -1013, "price", "30000.001"),
    ({"type": "LIMIT", "timeInForce": "IOC", "price": "-5"}, -1100, "price", "-5"),
    ({"newClientOrderId": "no spaces!"}, -1100, "newClientOrderId", "no spaces!"),
    ({"newOrderRespType": "VERBOSE"}, -1100, "newOrderRespType", "VERBOSE"),
]


@pytest.mark.parametrize("change,code,field,value", BAD, ids=[f"{b[2]}={b[3]}" for b in BAD])
def test_bad_parameters_answer_400_with_the_binance_code_naming_field_and_value(quiet_exchange, change, code, field,
                                                                                value):
    ex = quiet_exchange(**PLAIN)
    params = {k: v for k, v in {**market(), **change}.items() if v is not None}
    status, r = call(ex, "POST", "/api/v3/order", params)
    assert status == 400 and r["code"] == code, r
    assert f"'{field}'" in r["msg"] and value in r["msg"], r["msg"]
    counters = ex.status()["orders"]
    assert (counters["received"], counters["rejected"], counters["filled"]) == (1, 1, 0)


def test_duplicate_client_order_id_is_refused_and_the_first_order_stands(quiet_exchange):
    ex = quiet_exchange(**PLAIN)
    assert call(ex, "POST", "/api/v3/order", market(cid="dup-1"))[0] == 200
    status, r = call(ex, "POST", "/api/v3/order", market("SELL", cid="dup-1"))
    assert status == 400 and r["code"] == -2010 and "Duplicate order sent" in r["msg"] and "'dup-1'" in r["msg"]
    _, trades = call(ex, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert len(trades) == 1 and trades[0]["isBuyer"] is True


def test_order_lookups_errors(quiet_exchange):
    ex = quiet_exchange(**PLAIN)
    status, r = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "never-sent"})
    assert (status, r["code"]) == (400, -2013) and "'never-sent'" in r["msg"]
    status, r = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT"})
    assert (status, r["code"]) == (400, -1102) and "origClientOrderId" in r["msg"]
    status, r = call(ex, "GET", "/api/v3/order", {"symbol": "ETHUSDT", "orderId": "1"})
    assert (status, r["code"]) == (400, -1121) and "'ETHUSDT'" in r["msg"]
    status, r = call(ex, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": "x1"})
    assert (status, r["code"]) == (400, -1100) and "'orderId'" in r["msg"] and "'x1'" in r["msg"]


def test_simulated_reject_is_an_error_response_and_leaves_no_order(quiet_exchange):
    ex = quiet_exchange(**{**PLAIN, "reject_prob": 0.99})
    status, r = call(ex, "POST", "/api/v3/order", market(cid="rej-1"))
    assert (status, r["code"]) == (400, -2010) and "'rej-1'" in r["msg"]
    assert call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "rej-1"})[1]["code"] == -2013
    assert ex.status()["orders"]["rejected"] == 1


def test_signature_parameters_and_api_key_header_are_accepted_and_ignored(quiet_exchange):
    ex = quiet_exchange(**PLAIN)
    status, r = call(ex, "POST", "/api/v3/order",
                     market(cid="signed-1", timestamp=str(int(time.time() * 1e3)), recvWindow="5000",
                            signature="ab" * 32), headers={"X-MBX-APIKEY": "any-key"})
    assert status == 200 and r["status"] == "FILLED"


def test_response_types_ack_and_result(quiet_exchange):
    ex = quiet_exchange(**PLAIN)
    _, ack = call(ex, "POST", "/api/v3/order", market(newOrderRespType="ACK"))
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    _, result = call(ex, "POST", "/api/v3/order", market(newOrderRespType="RESULT"))
    assert result["status"] == "FILLED" and "fills" not in result


def test_dropped_connection_after_execution_the_order_exists_once(quiet_exchange):
    ex = quiet_exchange(faults=Faults(order_drop_every=1), **PLAIN)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        call(ex, "POST", "/api/v3/order", market(cid="drop-1"))
    status, q = call(ex, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "drop-1"})
    assert status == 200 and q["status"] == "FILLED"
    counters = ex.status()["orders"]
    assert (counters["received"], counters["filled"], counters["dropped"]) == (1, 1, 1)


def test_stalled_answer_arrives_late(quiet_exchange):
    ex = quiet_exchange(faults=Faults(order_stall_every=2, order_stall_ms=300), **PLAIN)
    t0 = time.perf_counter()
    call(ex, "POST", "/api/v3/order", market())
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    status, r = call(ex, "POST", "/api/v3/order", market())
    slow = time.perf_counter() - t0
    assert status == 200 and r["status"] == "FILLED"
    assert slow >= 0.3 > fast
    assert ex.status()["orders"]["stalled"] == 1


def test_order_config_and_fault_specs_parse_and_name_bad_values():
    assert OrderConfig.parse("latency_ms=5, max_parts=4, seed=2") == OrderConfig(latency_ms=5, max_parts=4, seed=2)
    assert Faults.parse("order_drop_every=3,order_stall_every=2,order_stall_ms=150") == Faults(
        order_drop_every=3, order_stall_every=2, order_stall_ms=150.0)
    with pytest.raises(ValueError, match=r"OrderConfig.partial_fill_prob must be in \[0, 1\), got 1.5"):
        OrderConfig(partial_fill_prob=1.5)
    with pytest.raises(ValueError, match="OrderConfig.latency_ms must be a finite number >= 0, got -1"):
        OrderConfig(latency_ms=-1)
    with pytest.raises(ValueError, match="unknown order setting 'latency'"):
        OrderConfig.parse("latency=5")
    with pytest.raises(ValueError, match="order setting 'slippage_bps' = 'lots' is not a number"):
        OrderConfig.parse("slippage_bps=lots")

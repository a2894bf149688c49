"""Each pre-trade check at, just under and just over its limit; every denial names check, limit and value."""
from __future__ import annotations

import math

import pytest

from spark_research.gates.model import Order
from spark_research.risk.engine import Denial, TradingState

from .conftest import make_engine, order, trade

BTC = "BTCUSDT"


def _passes(out) -> bool:
    return isinstance(out, Order)


# (name, config, price, [(size, passes)]): at the limit, just inside, just outside
ORDER_BOUNDS = [
    ("max_qty", {"instruments": {BTC: {"max_qty": 2}}}, 100.0, [(2.0, True), (1.999, True), (2.001, False)]),
    ("min_qty", {"instruments": {BTC: {"min_qty": 0.5}}}, 100.0, [(0.5, True), (0.5001, True), (0.4999, False)]),
    ("max_notional", {"instruments": {BTC: {"max_notional": 1000}}}, 100.0,
     [(10.0, True), (9.99, True), (10.01, False)]),
    ("min_notional", {"instruments": {BTC: {"min_notional": 50}}}, 100.0, [(0.5, True), (0.51, True), (0.49, False)]),
    ("max_order_notional", {"global": {"max_order_notional": 1000}}, 100.0,
     [(10.0, True), (9.99, True), (10.01, False)]),
    ("max_position", {"instruments": {BTC: {"max_position": 5}}}, 100.0, [(5.0, True), (4.99, True), (5.01, False)]),
    ("max_gross_exposure", {"global": {"max_gross_exposure": 1000}}, 100.0,
     [(10.0, True), (9.99, True), (10.01, False)]),
    ("max_net_exposure", {"global": {"max_net_exposure": 1000}}, 100.0, [(10.0, True), (9.99, True), (10.01, False)]),
    ("budget", {"strategies": {"s1": {"budget": 1000}}}, 100.0, [(10.0, True), (9.99, True), (10.01, False)]),
]


@pytest.mark.parametrize("check,doc,price,cases", ORDER_BOUNDS, ids=[c[0] for c in ORDER_BOUNDS])
def test_order_bound_at_just_under_and_just_over_its_limit(check, doc, price, cases):
    for size, ok in cases:
        eng = make_engine(doc)
        out = eng.evaluate(order("buy", size, price))
        assert _passes(out) is ok, (check, size, out)
        if not ok:
            assert out.check == check
            assert out.value > out.limit if check not in ("min_qty", "min_notional") else out.value < out.limit
            assert check in out.message and f"{out.limit:.10g}" in out.message


@pytest.mark.parametrize("price,ok", [(101.0, True), (100.99, True), (101.01, False), (99.0, True), (98.99, False)])
def test_price_collar_against_the_last_trade(price, ok):
    eng = make_engine({"instruments": {BTC: {"price_collar_bps": 100}}})
    out = eng.evaluate(order("buy", 1.0, price))
    assert _passes(out) is ok
    if not ok:
        assert out.check == "price_collar" and out.limit == 100.0 and out.value > 100.0


def test_no_price_for_the_symbol_fails_closed():
    eng = make_engine(prices={})
    out = eng.evaluate(order("buy", 1.0, 100.0))
    assert out.check == "mark_price"


def test_lot_size_rounds_down_or_rejects():
    eng = make_engine({"instruments": {BTC: {"lot_size": 0.01}}})
    assert eng.evaluate(order("buy", 1.237)).size == pytest.approx(1.23)
    assert eng.evaluate(order("buy", 1.23)).size == 1.23  # on the grid: unchanged
    assert eng.evaluate(order("buy", 0.004)).check == "lot_size"  # rounds to nothing
    strict = make_engine({"instruments": {BTC: {"lot_size": 0.01, "rounding": "reject"}}})
    d = strict.evaluate(order("buy", 1.237))
    assert (d.check, d.limit, d.value) == ("lot_size", 0.01, 1.237)
    assert _passes(strict.evaluate(order("buy", 1.24)))


def test_tick_size_rounds_to_nearest_or_rejects():
    eng = make_engine({"instruments": {BTC: {"tick_size": 0.5}}})
    assert eng.evaluate(order("buy", 1.0, 100.3)).ref_price == 100.5
    assert eng.evaluate(order("buy", 1.0, 100.2)).ref_price == 100.0
    strict = make_engine({"instruments": {BTC: {"tick_size": 0.5, "rounding": "reject"}}})
    assert strict.evaluate(order("buy", 1.0, 100.2)).check == "tick_size"
    assert _passes(strict.evaluate(order("buy", 1.0, 100.5)))


@pytest.mark.parametrize("bad", [
    dict(size=0.0), dict(size=-1.0), dict(size=math.nan), dict(size=math.inf), dict(price=0.0), dict(price=math.nan),
])
def test_malformed_orders_are_denied(bad):
    eng = make_engine()
    out = eng.evaluate(order("buy", bad.get("size", 1.0), bad.get("price", 100.0)))
    assert isinstance(out, Denial) and out.check in ("qty", "price")


def test_position_limit_counts_open_orders_worst_case():
    eng = make_engine({"instruments": {BTC: {"max_position": 5}}})
    assert _passes(eng.evaluate(order("buy", 3.0)))  # open, not filled
    d = eng.evaluate(order("buy", 2.5))
    assert (d.check, d.limit, d.value) == ("max_position", 5.0, 5.5)
    assert _passes(eng.evaluate(order("buy", 2.0)))  # exactly at the limit with both open


def test_reducing_orders_pass_position_and_exposure_limits_even_over_them(tmp_path):
    cfg = tmp_path / "risk.yml"
    cfg.write_text("instruments: {BTCUSDT: {max_position: 5}}\n")
    eng = make_engine(config_path=cfg)
    eng.reload(cfg)
    trade(eng, order("buy", 5.0))
    cfg.write_text("instruments: {BTCUSDT: {max_position: 2}}\n")  # the limit is lowered under the position
    eng.reload()
    assert eng.evaluate(order("buy", 0.1)).check == "max_position"
    assert _passes(eng.evaluate(order("sell", 1.0)))


def test_net_exposure_nets_longs_and_shorts():
    eng = make_engine({"global": {"max_net_exposure": 1000, "max_gross_exposure": 5000}},
                      prices={BTC: 100.0, "ETHUSDT": 100.0})
    assert _passes(trade(eng, order("buy", 10.0)))
    assert _passes(trade(eng, order("sell", 10.0, symbol="ETHUSDT")))  # net back to 0
    assert _passes(trade(eng, order("buy", 10.0)))  # net 1000: at the limit
    d = eng.evaluate(order("buy", 0.01))
    assert d.check == "max_net_exposure" and d.value == pytest.approx(1001.0)


@pytest.mark.parametrize("scope,doc", [("max_open_orders", {"global": {"max_open_orders": 3}}),
                                       ("strategy_open_orders", {"strategies": {"s1": {"max_open_orders": 3}}})])
def test_open_order_limit_at_and_over(scope, doc):
    eng = make_engine(doc)
    approved = [eng.evaluate(order("buy", 0.1)) for _ in range(3)]
    assert all(_passes(o) for o in approved)
    d = eng.evaluate(order("buy", 0.1))
    assert (d.check, d.limit, d.value) == (scope, 3, 4)
    eng.on_order_done(approved[0].order_id)
    assert _passes(eng.evaluate(order("buy", 0.1)))


def test_strategy_open_orders_do_not_count_other_strategies():
    eng = make_engine({"strategies": {"s1": {"max_open_orders": 1}}})
    assert _passes(eng.evaluate(order("buy", 0.1)))
    assert _passes(eng.evaluate(order("buy", 0.1, strategy="s2")))
    assert eng.evaluate(order("buy", 0.1)).check == "strategy_open_orders"


def test_submit_throttle_under_a_burst_then_refills(clock):
    eng = make_engine({"global": {"submit_rate": 10, "submit_burst": 5}}, clock=clock)
    outs = [trade(eng, order("buy", 0.01)) for _ in range(8)]
    assert [_passes(o) for o in outs] == [True] * 5 + [False] * 3
    assert {o.check for o in outs[5:]} == {"submit_rate"}
    clock.advance(0.099)
    assert eng.evaluate(order("buy", 0.01)).check == "submit_rate"  # 0.99 token: not yet
    clock.advance(0.001)
    assert _passes(trade(eng, order("buy", 0.01)))  # exactly one token
    assert eng.evaluate(order("buy", 0.01)).check == "submit_rate"
    clock.advance(10)
    assert sum(_passes(trade(eng, order("buy", 0.01))) for _ in range(10)) == 5  # refill capped at the burst


def test_cancels_are_throttled_apart_from_submits(clock):
    eng = make_engine({"global": {"submit_rate": 1, "submit_burst": 2, "cancel_rate": 1, "cancel_burst": 3}},
                      clock=clock)
    opened = [eng.evaluate(order("buy", 0.01)) for _ in range(2)]
    assert all(_passes(o) for o in opened)
    assert eng.evaluate(order("buy", 0.01)).check == "submit_rate"  # submits spent
    results = [eng.check_cancel(f"c{i}", "s1") for i in range(4)]  # cancels have their own bucket
    assert results[:3] == [None, None, None] and results[3].check == "cancel_rate"


def test_denial_is_counted_and_audited_with_the_order():
    from spark_research import metrics

    eng = make_engine({"instruments": {BTC: {"max_qty": 1}}})
    before = metrics.RISK_DENIALS.labels(check="max_qty", strategy="s-audit")._value.get()
    d = eng.evaluate(order("buy", 2.0, strategy="s-audit", order_id="deny-me"))
    assert eng.flush()
    after = metrics.RISK_DENIALS.labels(check="max_qty", strategy="s-audit")._value.get()
    assert after == before + 1
    [entry] = [e for e in eng.audit.entries() if e.kind == "risk_denial"]
    assert entry.values["check"] == "max_qty" and entry.values["limit"] == 1.0 and entry.values["value"] == 2.0
    assert entry.values["order"]["order_id"] == "deny-me" and entry.reason == d.message
    assert eng.audit.verify().ok


def test_latency_histogram_observes_every_check():
    from spark_research import metrics

    eng = make_engine()
    count = lambda: sum(s.value for s in metrics.RISK_CHECK_LATENCY_US.collect()[0].samples  # noqa: E731
                        if s.name.endswith("_count"))
    before = count()
    for _ in range(5):
        eng.evaluate(order("buy", 0.01))
    assert count() == before + 5


def test_state_is_active_without_limits():
    assert make_engine().state_of("s1", BTC) == TradingState.ACTIVE


def test_a_denial_burst_is_audited_in_batches_with_every_order():
    import threading

    from spark_research.gates.audit import MemoryAudit

    queued = threading.Event()

    class SlowDisk(MemoryAudit):  # the first write waits until the burst is queued: a slow fsync
        def append(self, **kw):
            queued.wait(10)
            return super().append(**kw)

    eng = make_engine({"instruments": {BTC: {"max_qty": 1}}}, audit=SlowDisk())
    ids = [f"burst{i}" for i in range(600)]
    for oid in ids:
        eng.evaluate(order("buy", 2.0, order_id=oid))
    queued.set()
    assert eng.flush()
    seen = []
    for e in eng.audit.entries():
        if e.kind == "risk_denial":
            seen.append(e.values["order"]["order_id"])
        elif e.kind == "risk_denials":
            seen.extend(d["order"]["order_id"] for d in e.values["denials"])
            assert all(d["check"] == "max_qty" and d["value"] == 2.0 for d in e.values["denials"])
    assert seen == ids
    assert len(eng.audit.entries()) <= 5 and eng.audit.verify().ok  # 1 + ceil(599 / 256)


def test_the_denial_writer_thread_ends_when_idle_and_comes_back():
    import time

    eng = make_engine({"instruments": {BTC: {"max_qty": 1}}})
    eng._writer.IDLE_S = 0.05
    eng.evaluate(order("buy", 2.0))
    assert eng.flush()
    deadline = time.monotonic() + 5
    while eng._writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert eng._writer._thread is None
    eng.evaluate(order("buy", 3.0))  # a new denial starts it again
    assert eng.flush()
    assert [e.values["value"] for e in eng.audit.entries() if e.kind == "risk_denial"] == [2.0, 3.0]

"""Trading states: reduce-only (long, short, flip), halt per scope, breakers, gate agreement, audit."""
from __future__ import annotations

import queue
import threading

import pytest

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.gate import GateBook, GateState
from spark_research.gates.model import Order
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
from spark_research.risk.engine import DAY_NS, TradingState
from spark_research.risk.errors import OrderDeniedError, RiskPermissionError
from spark_research.risk.venue import RiskGuardedVenue

from .conftest import make_engine, order, trade

BTC = "BTCUSDT"


def _ok(out) -> bool:
    return isinstance(out, Order)


@pytest.fixture
def long_book():
    eng = make_engine()
    trade(eng, order("buy", 2.0))
    return eng


@pytest.fixture
def short_book():
    eng = make_engine()
    trade(eng, order("sell", 2.0))
    return eng


@pytest.mark.parametrize("scope", ["global", "instrument:BTCUSDT", "strategy:s1"])
def test_reducing_long_lets_sells_up_to_the_position_and_refuses_buys_and_flips(long_book, scope):
    eng = long_book
    eng.reduce(scope, actor="alice", reason="risk review")
    assert eng.evaluate(order("buy", 0.1)).check == "reduce_only"
    assert _ok(eng.evaluate(order("sell", 1.5)))  # open: leaves 0.5 of room
    flip = eng.evaluate(order("sell", 1.0))  # 1.0 > the 0.5 left (the open sell counts): a flip, refused
    assert flip.check == "reduce_only" and "flip" in flip.limit
    assert _ok(eng.evaluate(order("sell", 0.5)))  # exactly to flat


@pytest.mark.parametrize("scope", ["global", "instrument:BTCUSDT", "strategy:s1"])
def test_reducing_short_lets_buys_up_to_the_position(short_book, scope):
    eng = short_book
    eng.reduce(scope, actor="alice", reason="risk review")
    assert eng.evaluate(order("sell", 0.1)).check == "reduce_only"
    assert eng.evaluate(order("buy", 2.01)).check == "reduce_only"  # flip to long: refused
    assert _ok(trade(eng, order("buy", 2.0)))
    assert eng.book.position(BTC).qty == 0.0
    assert eng.evaluate(order("buy", 0.1)).check == "reduce_only"  # flat: nothing reduces


def test_reducing_other_strategy_or_instrument_does_not_bind():
    eng = make_engine(prices={BTC: 100.0, "ETHUSDT": 10.0})
    eng.reduce("strategy:s2", actor="alice", reason="review s2")
    eng.reduce("instrument:ETHUSDT", actor="alice", reason="ETH delisting")
    assert _ok(eng.evaluate(order("buy", 1.0)))
    assert eng.evaluate(order("buy", 1.0, strategy="s2")).check == "reduce_only"
    assert eng.evaluate(order("buy", 1.0, symbol="ETHUSDT", price=10.0)).check == "reduce_only"


@pytest.mark.parametrize("scope", ["global", "instrument:BTCUSDT", "strategy:s1"])
def test_halted_passes_nothing_not_even_reducing_orders(long_book, scope):
    eng = long_book
    assert eng.halt(scope, actor="alice", reason="kill switch") == TradingState.HALTED
    for side in ("buy", "sell"):
        d = eng.evaluate(order(side, 0.1))
        assert d.check == "halted" and scope in d.limit
    eng.resume(scope, actor="alice", reason="all clear")
    assert _ok(eng.evaluate(order("buy", 0.1)))


def test_state_transitions_are_audited_before_effect_with_who_and_why():
    eng = make_engine()
    eng.halt("strategy:s1", actor="alice", reason="runaway orders")
    eng.resume("strategy:s1", actor="bob", reason="fixed")
    entries = [e for e in eng.audit.entries() if e.kind == "risk_state"]
    assert [(e.actor, e.gate, e.old_state, e.new_state, e.reason) for e in entries] == [
        ("alice", "risk/strategy:s1", "ACTIVE", "HALTED", "runaway orders"),
        ("bob", "risk/strategy:s1", "HALTED", "ACTIVE", "fixed")]
    assert eng.audit.verify().ok


def test_a_failing_audit_write_leaves_the_state_unchanged():
    class Broken(MemoryAudit):
        def append(self, **kw):
            raise OSError("disk full")

    eng = make_engine(audit=Broken())
    with pytest.raises(OSError):
        eng.halt("global", actor="alice", reason="x")
    assert eng.state_of() == TradingState.ACTIVE


def test_manual_changes_need_a_reason_and_an_authorised_actor():
    eng = make_engine(authorize=lambda actor: actor == "alice")
    with pytest.raises(ValueError, match="reason"):
        eng.halt("global", actor="alice", reason=" ")
    with pytest.raises(RiskPermissionError, match="mallory"):
        eng.halt("global", actor="mallory", reason="because")
    assert eng.state_of() == TradingState.ACTIVE
    assert [e.kind for e in eng.audit.entries()] == ["risk_refused"]
    with pytest.raises(ValueError, match="scope"):
        eng.halt("desk:x", actor="alice", reason="typo")


# --- loss and drawdown breakers -----------------------------------------------------------------
@pytest.mark.parametrize("price,state", [(90.0, "ACTIVE"), (90.01, "ACTIVE"), (89.99, "HALTED")])
def test_daily_loss_at_under_and_over_the_limit(price, state):
    # start equity 100000; 100 units bought at 100: at 90 the loss is exactly 1000
    eng = make_engine({"global": {"max_daily_loss": 1000, "on_daily_loss": "HALTED"}})
    trade(eng, order("buy", 100.0))
    eng.on_price(BTC, price)
    assert eng.state_of().name == state
    if state == "HALTED":
        [e] = [e for e in eng.audit.entries() if e.new_state == "HALTED"]
        assert e.actor == "system" and e.values["cause"] == "daily_loss" and "1000" in e.reason


@pytest.mark.parametrize("equity_drop,state", [(0.10, "ACTIVE"), (0.0999, "ACTIVE"), (0.1001, "REDUCING")])
def test_drawdown_limit_exactly(equity_drop, state):
    eng = make_engine({"global": {"max_drawdown": 0.1, "on_drawdown": "REDUCING"}}, prices={BTC: 100.0})
    trade(eng, order("buy", 1000.0))  # equity 100000 = cash 0 + 1000 x 100
    eng.on_price(BTC, 200.0)  # equity 200000: the day's peak
    eng.on_price(BTC, 200.0 - 200.0 * equity_drop)  # equity falls by exactly equity_drop of the peak
    assert eng.state_of().name == state
    if state == "REDUCING":
        assert eng.evaluate(order("buy", 1.0, price=180.0)).check == "reduce_only"


def test_strategy_daily_loss_moves_only_that_strategy():
    eng = make_engine({"strategies": {"s1": {"max_daily_loss": 100}}})
    trade(eng, order("buy", 10.0))
    trade(eng, order("buy", 10.0, strategy="s2"))
    eng.on_price(BTC, 89.0)  # each strategy lost 110
    assert eng.state_of("s1").name == "HALTED" and eng.state_of("s2").name == "ACTIVE"


def test_a_new_day_resets_automatic_states_but_not_manual_ones(clock):
    eng = make_engine({"global": {"max_daily_loss": 100}}, clock=clock)
    trade(eng, order("buy", 10.0))
    eng.halt("strategy:s9", actor="alice", reason="manual")
    eng.on_price(BTC, 80.0)
    assert eng.state_of().name == "HALTED"
    clock.advance(DAY_NS / 1e9)
    eng.end_bar()
    assert eng.state_of().name == "ACTIVE" and eng.state_of("s9").name == "HALTED"
    assert eng.day_pnl() == 0.0


# --- gate agreement -----------------------------------------------------------------------------
def test_closed_gate_is_at_least_reducing_for_its_strategy(long_book):
    eng = long_book
    assert eng.on_gate_state("s1", GateState.CLOSED, BTC) == TradingState.REDUCING
    assert eng.evaluate(order("buy", 0.1)).check == "reduce_only"
    assert _ok(eng.evaluate(order("sell", 0.1)))
    eng.halt("strategy:s1", actor="alice", reason="worse")
    assert eng.on_gate_state("s1", "OPEN", BTC) == TradingState.HALTED  # the gate never lowers an operator state
    eng.resume("strategy:s1", actor="alice", reason="ok")
    assert eng.state_of("s1") == TradingState.ACTIVE
    gate_entries = [e for e in eng.audit.entries() if e.values.get("cause") == "gate"]
    assert [e.new_state for e in gate_entries] == ["REDUCING", "HALTED"]


def test_follow_gates_adopts_a_gatebook():
    book = GateBook(MemoryAudit())
    book.add("s1", BTC, now_ns=0)
    book.add("s1", "ETHUSDT", now_ns=0)
    eng = make_engine()
    book.close("s1", BTC, actor="alice", reason="drift", now_ns=1)
    eng.follow_gates(book)
    assert eng.state_of("s1") == TradingState.REDUCING
    book.open("s1", BTC, actor="alice", reason="ok", now_ns=2)
    eng.follow_gates(book)
    assert eng.state_of("s1") == TradingState.ACTIVE


# --- the guarded venue and an order already queued ---------------------------------------------
def test_guarded_venue_only_sends_approved_orders_and_books_fills():
    class Recorder(SimulatedVenue):
        def __init__(self):
            super().__init__(SimulatorConfig(seed=3, partial_fill_prob=0.5))
            self.seen: list[Order] = []

        def submit(self, o):
            self.seen.append(o)
            return super().submit(o)

    eng = make_engine({"instruments": {BTC: {"max_position": 3, "lot_size": 0.1}}})
    inner = Recorder()
    venue = RiskGuardedVenue(inner, eng, strategy="s1")
    venue.submit(order("buy", 2.55, strategy="other"))
    with pytest.raises(OrderDeniedError) as err:
        venue.submit(order("buy", 1.0))
    assert err.value.denial.check == "max_position"
    assert [o.size for o in inner.seen] == [2.5] and inner.seen[0].strategy == "s1"
    assert eng.book.position(BTC).qty == pytest.approx(2.5) and eng.open_orders == 0


def test_halt_stops_an_order_already_queued():
    eng = make_engine()
    inner = SimulatedVenue(SimulatorConfig(seed=1))
    venue = RiskGuardedVenue(inner, eng)
    orders: queue.Queue = queue.Queue()
    results: list[str] = []
    release = threading.Event()

    def session_worker():  # a session's order thread, blocked behind a slow bar
        release.wait(5)
        while True:
            o = orders.get(timeout=5)
            if o is None:
                return
            try:
                venue.submit(o)
                results.append("sent")
            except OrderDeniedError as exc:
                results.append(exc.denial.check)

    t = threading.Thread(target=session_worker, daemon=True)
    t.start()
    orders.put(order("buy", 0.5))
    orders.put(None)
    eng.halt("global", actor="alice", reason="kill switch")  # after queueing, before sending
    release.set()
    t.join(5)
    assert results == ["halted"] and inner.orders == 0

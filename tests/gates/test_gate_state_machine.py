"""The gate state machine: every transition, thresholds, fail-closed, refusals, bad input."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from spark_research import metrics
from spark_research.gates.errors import (
    AuditError,
    EmptyReasonError,
    GatePermissionError,
    InvalidMeasurementError,
    OrderRefusedError,
    UnknownGateError,
)
from spark_research.gates.gate import Gate, GateBook, GateState, GateThresholds
from tests.gates.conftest import NS, T0, drift


def _close_by_drift(gate, ts=T0 + NS):
    gate.heartbeat(ts)
    return gate.observe_fill(drift(bps=80, ts=ts))


def test_a_new_gate_is_open_and_trades_full_size(gate):
    assert gate.state == GateState.OPEN
    assert gate.check_order(T0 + NS) == 1.0


def test_clean_fills_keep_the_gate_open(gate):
    for i in range(20):
        gate.heartbeat(T0 + i * NS)
        d = gate.observe_fill(drift(bps=2, pnl=-0.5, ts=T0 + i * NS))
        assert not d.changed
    assert gate.state == GateState.OPEN


def test_single_fill_drift_above_limit_closes(gate):
    decision = _close_by_drift(gate)
    assert (decision.old, decision.new, decision.reason) == (GateState.OPEN, GateState.CLOSED, "fill_drift_bps")


def test_rolling_mean_drift_above_limit_closes_after_min_fills(gate):
    states = []
    for i in range(3):
        states.append(gate.observe_fill(drift(bps=12, ts=T0 + i)).new)
    assert states == [GateState.OPEN, GateState.OPEN, GateState.CLOSED]
    assert gate.close_reason == "drift_bps"


def test_rolling_mean_below_limit_stays_open(gate):
    for i in range(10):
        gate.observe_fill(drift(bps=9.9, ts=T0 + i))
    assert gate.state == GateState.OPEN


def test_absolute_price_drift_threshold_closes(thresholds, audit):
    g = Gate("sma_cross", "BTCUSDT", replace(thresholds, max_price_drift_abs=0.05), audit, created_ns=T0)
    g.heartbeat(T0)
    assert g.observe_fill(drift(bps=4, price=100.0, ts=T0)).new == GateState.OPEN  # 0.04 price units
    assert g.observe_fill(drift(bps=6, price=100.0, ts=T0)).reason == "price_drift"  # 0.06


def test_pnl_delta_over_the_window_closes(gate):
    gate.observe_fill(drift(bps=1, pnl=-60, ts=T0))
    assert gate.state == GateState.OPEN
    assert gate.observe_fill(drift(bps=1, pnl=-41, ts=T0)).reason == "pnl_delta"


def test_error_rate_above_limit_closes(gate):
    gate.observe_fill(drift(ts=T0))
    gate.observe_fill(drift(ts=T0))
    assert gate.observe_error("reject", T0).new == GateState.OPEN  # 1/3 (too few events anyway)
    assert gate.observe_error("reject", T0).new == GateState.OPEN  # 2/4 = 0.5, not above
    d = gate.observe_error("reject", T0)  # 3/5
    assert d.new == GateState.CLOSED and d.reason == "error_rate"


def test_stale_data_closes_the_gate(gate):
    assert gate.tick(T0 + 120 * NS).new == GateState.OPEN
    d = gate.tick(T0 + 121 * NS)
    assert (d.new, d.reason) == (GateState.CLOSED, "stale_data")


def test_missing_data_closes_the_gate(thresholds, audit):
    g = Gate("sma_cross", "BTCUSDT", thresholds, audit, created_ns=T0)  # never a heartbeat
    assert g.tick(T0 + 60 * NS).new == GateState.OPEN
    assert g.tick(T0 + 121 * NS).reason == "missing_data"


def test_order_is_refused_while_closed_and_the_check_itself_fails_closed_on_stale_data(gate):
    with pytest.raises(OrderRefusedError, match="sma_cross/BTCUSDT is CLOSED .stale_data."):
        gate.check_order(T0 + 500 * NS)
    assert gate.state == GateState.CLOSED


def test_cooldown_moves_closed_to_half_open_with_reduced_size(gate):
    _close_by_drift(gate, ts=T0)
    gate.heartbeat(T0 + 59 * NS)
    assert gate.tick(T0 + 59 * NS).new == GateState.CLOSED
    gate.heartbeat(T0 + 60 * NS)
    d = gate.tick(T0 + 60 * NS)
    assert (d.old, d.new) == (GateState.CLOSED, GateState.HALF_OPEN)
    assert gate.check_order(T0 + 60 * NS) == 0.25


def test_cooldown_does_not_reopen_on_stale_data(gate):
    _close_by_drift(gate, ts=T0)
    assert gate.tick(T0 + 1000 * NS).new == GateState.CLOSED  # no bar since T0


def test_probation_passes_after_n_clean_fills(gate):
    _close_by_drift(gate, ts=T0)
    gate.heartbeat(T0 + 60 * NS)
    gate.tick(T0 + 60 * NS)
    new = [gate.observe_fill(drift(bps=1, ts=T0 + 61 * NS)).new for _ in range(3)]
    assert new == [GateState.HALF_OPEN, GateState.HALF_OPEN, GateState.OPEN]
    assert gate.check_order(T0 + 61 * NS) == 1.0


def test_probation_failure_closes_again_and_restarts_cooldown(gate):
    _close_by_drift(gate, ts=T0)
    gate.heartbeat(T0 + 60 * NS)
    gate.tick(T0 + 60 * NS)
    gate.observe_fill(drift(bps=1, ts=T0 + 61 * NS))
    d = gate.observe_fill(drift(bps=90, ts=T0 + 62 * NS))
    assert (d.old, d.new) == (GateState.HALF_OPEN, GateState.CLOSED)
    gate.heartbeat(T0 + 100 * NS)
    assert gate.tick(T0 + 100 * NS).new == GateState.CLOSED  # cooldown counts from the new close
    gate.heartbeat(T0 + 122 * NS)
    assert gate.tick(T0 + 122 * NS).new == GateState.HALF_OPEN


def test_manual_close_holds_until_manual_open(gate):
    gate.close("alice", "exchange incident", now_ns=T0)
    gate.heartbeat(T0 + 3600 * NS)
    assert gate.tick(T0 + 3600 * NS).new == GateState.CLOSED  # no automatic probation
    assert gate.open("alice", "incident resolved", now_ns=T0 + 3601 * NS) == GateState.OPEN


def test_manual_open_ends_probation(gate):
    _close_by_drift(gate, ts=T0)
    gate.heartbeat(T0 + 60 * NS)
    gate.tick(T0 + 60 * NS)
    assert gate.open("alice", "drift explained: venue fee change", now_ns=T0 + 61 * NS) == GateState.OPEN


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_manual_actions_need_a_reason(gate, reason):
    with pytest.raises(EmptyReasonError, match="reason must be a non-empty text to close gate sma_cross/BTCUSDT"):
        gate.close("alice", reason)
    with pytest.raises(EmptyReasonError, match="to open gate"):
        gate.open("alice", reason)
    assert gate.state == GateState.OPEN


def test_manual_action_needs_an_actor(gate):
    with pytest.raises(GatePermissionError, match="actor must be a logged-in user"):
        gate.close("", "why not")


@pytest.mark.parametrize("field", ["drift_bps", "pnl_delta", "live_price"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_measurement_is_rejected_by_name(gate, field, bad):
    d = replace(drift(), **{field: bad})
    with pytest.raises(InvalidMeasurementError, match=f"{field} is {bad!r}"):
        gate.observe_fill(d)
    assert gate.state == GateState.OPEN and gate.rolling.count == 0


def test_every_transition_is_in_the_audit_log_with_values(gate, audit):
    _close_by_drift(gate, ts=T0)
    gate.heartbeat(T0 + 60 * NS)
    gate.tick(T0 + 60 * NS)
    for i in range(3):
        gate.observe_fill(drift(bps=1, ts=T0 + 61 * NS))
    gate.close("alice", "end of day", now_ns=T0 + 70 * NS)
    entries = audit.entries()
    assert [(e.old_state, e.new_state, e.actor) for e in entries] == [
        ("OPEN", "CLOSED", "system"), ("CLOSED", "HALF_OPEN", "system"),
        ("HALF_OPEN", "OPEN", "system"), ("OPEN", "CLOSED", "alice")]
    assert entries[0].values["last_fill_drift_bps"] == pytest.approx(80)
    assert entries[-1].reason == "end of day" and entries[-1].kind == "manual"
    assert audit.verify().ok


def test_audit_failure_leaves_the_state_unchanged(gate):
    class BrokenAudit:
        def append(self, **kw):
            raise AuditError("disk full")

    gate.audit = BrokenAudit()
    with pytest.raises(AuditError, match="disk full"):
        gate.observe_fill(drift(bps=90))
    assert gate.state == GateState.OPEN
    with pytest.raises(AuditError):
        gate.close("alice", "test")
    assert gate.state == GateState.OPEN


def test_metrics_follow_the_state(thresholds, audit):
    g = Gate("metrics_probe", "XUSDT", thresholds, audit, created_ns=T0)
    g.heartbeat(T0)
    closes = metrics.GATE_CLOSE.labels(strategy="metrics_probe", symbol="XUSDT", reason="fill_drift_bps")
    before = closes._value.get()
    g.observe_fill(drift(bps=75, ts=T0))
    assert metrics.GATE_STATE.labels(strategy="metrics_probe", symbol="XUSDT")._value.get() == 2
    assert metrics.DRIFT_PRICE_ABS.labels(strategy="metrics_probe", symbol="XUSDT")._value.get() == pytest.approx(0.75)
    assert closes._value.get() == before + 1


def test_thresholds_reject_bad_values():
    with pytest.raises(ValueError, match="max_drift_bps must be a finite number > 0 or None, got nan"):
        GateThresholds(max_drift_bps=math.nan)
    with pytest.raises(ValueError, match="probation_size must be in"):
        GateThresholds(probation_size=0)
    with pytest.raises(ValueError, match="window must be an integer >= 1, got 0"):
        GateThresholds(window=0)


def test_book_unknown_gate_is_a_clear_error(audit):
    book = GateBook(audit)
    book.add("sma_cross", "BTCUSDT")
    with pytest.raises(UnknownGateError, match=r"unknown gate 'rsi_reversion/BTCUSDT'; known: \['sma_cross/BTCUSDT'\]"):
        book.close("rsi_reversion", "BTCUSDT", actor="alice", reason="x")


def test_book_refuses_non_operators_and_logs_the_attempt(audit):
    book = GateBook(audit, authorize=lambda user: user == "alice")
    book.add("sma_cross", "BTCUSDT")
    with pytest.raises(GatePermissionError, match="actor 'bob' is not authorised to close gate sma_cross/BTCUSDT"):
        book.close("sma_cross", "BTCUSDT", actor="bob", reason="let me")
    with pytest.raises(GatePermissionError, match="actor None"):
        book.open("sma_cross", "BTCUSDT", actor=None, reason="anon")
    assert book.get("sma_cross", "BTCUSDT").state == GateState.OPEN
    refused = [e for e in audit.entries() if e.kind == "refused"]
    assert [(e.actor, e.values["action"]) for e in refused] == [("bob", "close"), ("anonymous", "open")]
    assert book.close("sma_cross", "BTCUSDT", actor="alice", reason="ok") == GateState.CLOSED


def test_book_rebuilds_state_from_the_audit_log(sqlite_audit):
    book = GateBook(sqlite_audit)
    book.add("sma_cross", "BTCUSDT")
    book.add("sma_cross", "ETHUSDT", GateThresholds(max_drift_bps=7))
    book.close("sma_cross", "ETHUSDT", actor="alice", reason="manual")
    other = GateBook.from_audit(sqlite_audit)
    status = other.status().set_index("gate")
    assert status.loc["sma_cross/ETHUSDT", "state"] == "CLOSED"
    assert bool(status.loc["sma_cross/ETHUSDT", "manual_hold"])
    assert status.loc["sma_cross/BTCUSDT", "state"] == "OPEN"
    assert other.get("sma_cross/ETHUSDT").thresholds.max_drift_bps == 7
    # a change made by another writer is picked up
    book.open("sma_cross", "ETHUSDT", actor="alice", reason="back")
    assert other.sync() == 1 and other.get("sma_cross/ETHUSDT").state == GateState.OPEN


def test_concurrent_manual_and_automatic_decisions_keep_a_consistent_history(thresholds, audit):
    import threading

    g = Gate("sma_cross", "BTCUSDT", replace(thresholds, cooldown_s=0, probation_fills=1), audit, created_ns=T0)
    g.heartbeat(T0)

    def auto():
        for i in range(600):
            g.observe_fill(drift(bps=90 if i % 2 == 0 else 1, ts=T0))
            g.tick(T0)

    def manual():
        for i in range(300):
            (g.close if i % 2 == 0 else g.open)("alice", f"manual {i}", now_ns=T0)

    threads = [threading.Thread(target=auto), threading.Thread(target=manual)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    entries = audit.entries()
    assert len(entries) > 600
    # each entry starts from the state the previous one left: no interleaved half-decisions
    assert all(b.old_state == a.new_state for a, b in zip(entries, entries[1:]))
    assert entries[-1].new_state == g.state.name and audit.verify().ok

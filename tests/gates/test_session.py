"""Paper beside live: drift closes the gate, orders are refused while closed, replays are deterministic."""
from __future__ import annotations

import pandas as pd
import pytest

from spark_research.cli import main as spark
from spark_research.data import generate_bars
from spark_research.gates.audit import AuditLog, MemoryAudit
from spark_research.gates.gate import GateBook, GateThresholds
from spark_research.gates.model import Fill, Order
from spark_research.gates.session import PaperLiveSession
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
from tests.gates.conftest import QuickSma

BARS = generate_bars("BTCUSDT", n=220, seed=21)
PARAMS = {"fast": 3, "slow": 10}


class MirrorVenue:
    """Fills exactly like the paper engine: the zero-drift reference venue."""

    name = "mirror"

    def submit(self, order: Order) -> list[Fill]:
        sign = 1 if order.side == "buy" else -1
        price = order.ref_price * (1 + sign * 0.0005)
        return [Fill(order.order_id, order.strategy, order.symbol, order.ts, order.side, order.size, price,
                     order.size * price * 0.001, self.name)]


def _session(venue, audit=None, strategy=QuickSma, **th):
    book = GateBook(audit or MemoryAudit())
    thresholds = GateThresholds(**{"cooldown_s": 600, "probation_fills": 2, **th})
    return PaperLiveSession.create(strategy, "BTCUSDT", book, venue, params=PARAMS, thresholds=thresholds,
                                   start_ns=BARS["timestamp"].iloc[0].value)


def _state_at(states: pd.DataFrame, ts: int) -> str:
    before = states[states["timestamp"] <= pd.Timestamp(ts, unit="ns", tz="UTC")]
    return before["state"].iloc[-1]


def test_zero_drift_venue_never_closes_the_gate():
    s = _session(MirrorVenue(), strategy="sma_cross")  # the shipped strategy, end to end
    s.replay(BARS)
    assert len(s.paper_fills) >= 6
    assert s.gate.state.name == "OPEN" and not s.refused
    d = s.drift_frame()
    assert (d["drift_bps"].abs() < 1e-9).all() and (d["pnl_delta"].abs() < 1e-6).all()


def test_drifting_venue_closes_the_gate_and_orders_are_refused_while_closed():
    venue = SimulatedVenue(SimulatorConfig(seed=5, slippage_bps=40, slippage_std_bps=5))
    s = _session(venue, max_fill_drift_bps=30)
    s.replay(BARS)
    states = s.state_frame()
    assert "CLOSED" in set(states["state"])
    assert s.refused, "at least one order must have met the closed gate"
    assert all(_state_at(states, o.ts) == "CLOSED" for o in s.refused)
    assert all(state != "CLOSED" for _, state in s.sent)


def test_probation_trades_reduced_size():
    venue = SimulatedVenue(SimulatorConfig(seed=5, slippage_bps=40, slippage_std_bps=5, partial_fill_prob=0))
    s = _session(venue, max_fill_drift_bps=30, cooldown_s=60)
    s.replay(BARS)
    states = list(s.state_frame()["state"])
    assert "HALF_OPEN" in states
    paper = {f.order_id: f for f in s.paper_fills}
    ratios = {round(f.size / paper[f.order_id].size, 3) for f in s.live_fills if f.side == "buy" and f.order_id in paper}
    assert 0.25 in ratios


def test_replay_is_deterministic_including_the_audit_chain(tmp_path):
    heads = []
    for run in range(2):
        with AuditLog(tmp_path / f"a{run}.db", synchronous="NORMAL") as log:
            s = _session(SimulatedVenue(SimulatorConfig(seed=9, slippage_bps=30, reject_prob=0.1)), audit=log,
                         max_fill_drift_bps=35)
            s.replay(BARS)
            heads.append((log.verify().head, s.drift_frame(), s.live_frame()))
    assert heads[0][0] == heads[1][0]
    pd.testing.assert_frame_equal(heads[0][1], heads[1][1])
    pd.testing.assert_frame_equal(heads[0][2], heads[1][2])


def test_venue_rejects_feed_the_error_rate():
    venue = SimulatedVenue(SimulatorConfig(seed=2, reject_prob=0.9, slippage_bps=0.5))
    s = _session(venue, max_error_rate=0.5, min_events_for_rate=3)
    s.replay(BARS)
    assert s.errors
    assert any(e.reason == "error_rate" for e in s.gate.audit.entries())


def test_cli_gate_status_close_open(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path))
    with AuditLog() as log:
        GateBook(log).add("sma_cross", "BTCUSDT")
    assert spark(["gate", "status"]) == 0
    assert "sma_cross/BTCUSDT  OPEN" in capsys.readouterr().out
    assert spark(["gate", "close", "sma_cross", "BTCUSDT", "--reason", "venue outage", "--actor", "ops"]) == 0
    assert spark(["gate", "status"]) == 0
    out = capsys.readouterr().out
    assert "CLOSED" in out and "venue outage" in out
    assert spark(["gate", "open", "sma_cross", "BTCUSDT", "--reason", "  "]) == 2
    assert "reason must be a non-empty text" in capsys.readouterr().out
    assert spark(["gate", "open", "sma_cross", "ETHUSDT", "--reason", "x"]) == 2
    assert "unknown gate 'sma_cross/ETHUSDT'" in capsys.readouterr().out
    assert spark(["gate", "open", "sma_cross", "BTCUSDT", "--reason", "back"]) == 0
    with AuditLog() as log:
        last = log.tail(1)[0]
        assert (last.old_state, last.new_state, last.reason, last.actor[:4]) == ("CLOSED", "OPEN", "back", "cli:")
        assert log.verify().ok

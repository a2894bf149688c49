"""The states and the day's counters survive a restart and ``kill -9``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from spark_research.gates.audit import AuditLog
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import DAY_NS, RiskEngine, TradingState
from spark_research.risk.store import RiskStore

from .conftest import T0, Clock, fill_of, order

DOC = {"global": {"max_daily_loss": 5000}, "portfolio": {"cash": 100000}}


def _engine(root, clock) -> RiskEngine:
    return RiskEngine(RiskConfig.from_dict(DOC), store=RiskStore(root / "state.db"), audit=AuditLog(root / "audit.db"),
                      clock=clock)


def _lose_money(eng: RiskEngine) -> None:
    """Buy 10 at 100, sell at 90: a realised loss of 100; then 5 more open at 90."""
    eng.on_price("BTCUSDT", 100.0)
    b = eng.check(order("buy", 10.0, 100.0))
    eng.on_fill(fill_of(b))
    eng.on_order_done(b.order_id)
    eng.on_price("BTCUSDT", 90.0)
    s = eng.check(order("sell", 10.0, 90.0))
    eng.on_fill(fill_of(s))
    eng.on_order_done(s.order_id)
    o = eng.check(order("buy", 5.0, 90.0))
    eng.on_fill(fill_of(o))
    eng.on_order_done(o.order_id)


def test_restart_mid_day_keeps_states_realised_loss_and_positions(tmp_path):
    clock = Clock()
    eng = _engine(tmp_path, clock)
    _lose_money(eng)
    eng.halt("strategy:s1", actor="alice", reason="review")
    eng.reduce("instrument:ETHUSDT", actor="alice", reason="thin book")
    eng.on_gate_state("s2", "CLOSED", "BTCUSDT")
    before = (eng.day_pnl(), eng.book.realised, eng.book.position("BTCUSDT").qty, eng.states())
    eng.close()
    clock.advance(3600)
    again = _engine(tmp_path, clock)
    assert (again.day_pnl(), again.book.realised, again.book.position("BTCUSDT").qty, again.states()) == before
    assert again.book.realised == pytest.approx(-100.0)
    assert again.state_of("s2") == TradingState.REDUCING
    assert again.audit.verify().ok
    again.close()


def test_restart_on_a_new_day_starts_a_new_days_counters(tmp_path):
    clock = Clock()
    eng = _engine(tmp_path, clock)
    _lose_money(eng)
    eng.close()
    clock.advance(DAY_NS / 1e9)
    again = _engine(tmp_path, clock)
    assert again.day_pnl() == 0.0 and again.book.realised == pytest.approx(-100.0)
    assert again.book.position("BTCUSDT").qty == 5.0
    again.close()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from spark_research.gates.audit import AuditLog
    from spark_research.gates.model import Fill, Order
    from spark_research.risk.config import RiskConfig
    from spark_research.risk.engine import RiskEngine
    from spark_research.risk.store import RiskStore

    root = Path(sys.argv[1])
    eng = RiskEngine(RiskConfig.from_dict({doc!r}), store=RiskStore(root / "state.db"),
                     audit=AuditLog(root / "audit.db"), clock=lambda: {t0})
    def trade(i, side, size, price):
        eng.on_price("BTCUSDT", price)
        o = eng.check(Order(f"c{{i}}", "s1", "BTCUSDT", {t0}, side, size, price))
        eng.on_fill(Fill(o.order_id, "s1", "BTCUSDT", {t0}, side, size, price, 0.0, "test"))
        eng.on_order_done(o.order_id)
    trade(1, "buy", 10.0, 100.0)
    trade(2, "sell", 10.0, 90.0)
    trade(3, "buy", 5.0, 90.0)
    eng.halt("global", actor="alice", reason="before the crash")
    eng.on_fill(Fill("c4", "s1", "BTCUSDT", {t0}, "sell", 5.0, 80.0, 0.0, "test"))  # a fill after the halt
    print("READY", eng.book.realised, eng.day_pnl(), flush=True)
    while True:
        time.sleep(0.1)
""")


def test_kill_9_keeps_state_and_the_days_realised_loss(tmp_path):
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(doc=DOC, t0=T0))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(tests_dir))
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("READY") or proc.poll() is not None:
                break
        assert line.startswith("READY"), f"child did not get ready: {line!r} rc={proc.poll()}"
        _, realised, day_pnl = line.split()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    eng = _engine(tmp_path, Clock(T0 + 7200 * 10**9))
    # bought 10 @ 100, sold 10 @ 90 (-100), bought 5 @ 90, sold 5 @ 80 (-50): all realised
    assert eng.book.realised == pytest.approx(float(realised)) == pytest.approx(-150.0)
    assert eng.day_pnl() == pytest.approx(float(day_pnl)) == pytest.approx(-150.0)
    assert eng.state_of() == TradingState.HALTED
    assert eng.book.position("BTCUSDT").qty == 0.0
    report = eng.audit.verify()
    assert report.ok and report.entries >= 1
    eng.close()

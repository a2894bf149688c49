"""The audit log: hash chain, tamper detection, concurrent writers, SIGKILL durability, CLI."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from spark_research.cli import main as spark
from spark_research.gates.audit import GENESIS, AuditLog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.append(actor="alice", gate="sma_cross/BTCUSDT", old_state="OPEN" if i % 2 == 0 else "CLOSED",
                   new_state="CLOSED" if i % 2 == 0 else "OPEN", reason=f"step {i}", values={"drift_bps": i * 1.5},
                   ts_ns=1_700_000_000_000_000_000 + i)


def _raw(log: AuditLog) -> sqlite3.Connection:
    # a tamperer with file access, outside the AuditLog API
    return sqlite3.connect(log.path, isolation_level=None)


def test_entries_are_chained_and_verify(sqlite_audit):
    _fill(sqlite_audit)
    entries = sqlite_audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    report = sqlite_audit.verify()
    assert report.ok and report.entries == 5 and report.head == entries[-1].hash


def test_wal_mode_and_full_sync_are_on(sqlite_audit):
    db = _raw(sqlite_audit)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sqlite_audit._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_edited_entry_is_detected(sqlite_audit):
    _fill(sqlite_audit)
    _raw(sqlite_audit).execute("UPDATE audit SET reason='nothing to see' WHERE seq=3")
    report = sqlite_audit.verify()
    assert not report.ok
    assert report.problems == ["entry seq=3: content does not match its hash (entry edited)"]


def test_edited_values_are_detected(sqlite_audit):
    _fill(sqlite_audit)
    _raw(sqlite_audit).execute("""UPDATE audit SET vals='{"drift_bps":0.0}' WHERE seq=2""")
    assert "entry seq=2: content does not match its hash (entry edited)" in sqlite_audit.verify().problems


def test_deleted_entry_is_detected(sqlite_audit):
    _fill(sqlite_audit)
    _raw(sqlite_audit).execute("DELETE FROM audit WHERE seq=2")
    problems = sqlite_audit.verify().problems
    assert problems[0].startswith("entry seq=3: expected seq=2")


def test_deleted_last_entry_is_detected(sqlite_audit):
    _fill(sqlite_audit)
    _raw(sqlite_audit).execute("DELETE FROM audit WHERE seq=5")
    assert sqlite_audit.verify().problems == ["entries seq=5..5 were written and are missing (tail deleted)"]


def test_reordered_entries_are_detected(sqlite_audit):
    _fill(sqlite_audit)
    db = _raw(sqlite_audit)
    cols = "ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev_hash, hash"
    r2 = db.execute(f"SELECT {cols} FROM audit WHERE seq=2").fetchone()
    r3 = db.execute(f"SELECT {cols} FROM audit WHERE seq=3").fetchone()
    sets = ", ".join(f"{c}=?" for c in cols.split(", "))
    db.execute(f"UPDATE audit SET {sets} WHERE seq=2", r3)
    db.execute(f"UPDATE audit SET {sets} WHERE seq=3", r2)
    report = sqlite_audit.verify()
    assert not report.ok
    assert any("seq=2" in p and "prev_hash" in p for p in report.problems)


def test_new_entries_continue_after_the_high_water_mark(sqlite_audit):
    _fill(sqlite_audit, 3)
    _raw(sqlite_audit).execute("DELETE FROM audit WHERE seq=3")
    e = sqlite_audit.append(actor="a", gate="g/X", old_state="OPEN", new_state="CLOSED", reason="r")
    assert e.seq == 4  # the gap stays visible
    assert not sqlite_audit.verify().ok


_WRITER = textwrap.dedent("""
    import sys
    from spark_research.gates.audit import AuditLog
    log = AuditLog(sys.argv[1])
    tag = sys.argv[2]
    for i in range(int(sys.argv[3])):
        e = log.append(actor=tag, gate="sma_cross/BTCUSDT", old_state="OPEN", new_state="CLOSED",
                       reason=f"{tag} {i}", values={"i": i})
""")


def test_concurrent_writers_in_two_processes_keep_one_chain(tmp_path):
    path = tmp_path / "audit.db"
    AuditLog(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, "150"], cwd=ROOT)
             for tag in ("p1", "p2")]
    for p in procs:
        assert p.wait(timeout=120) == 0
    with AuditLog(path) as log:
        report = log.verify()
        assert report.ok, str(report)
        assert report.entries == 300
        assert {e.actor for e in log.entries()} == {"p1", "p2"}


_DECIDER = textwrap.dedent("""
    import sys
    from spark_research.gates.audit import AuditLog
    from spark_research.gates.drift import FillDrift
    from spark_research.gates.gate import Gate, GateThresholds
    log = AuditLog(sys.argv[1])
    gate = Gate("sma_cross", "BTCUSDT", GateThresholds(max_fill_drift_bps=50), log, created_ns=0)
    i = 0
    while True:
        i += 1
        gate.heartbeat(i)
        d = gate.observe_fill(FillDrift("sma_cross", "BTCUSDT", str(i), i, "buy", 1.0, 100.0, 101.0, 1.0, 1.0, 100.0, -1.0),
                              now_ns=i)
        assert d.changed
        print("ACK", log.last.seq, log.last.hash, flush=True)   # acknowledged: the decision took effect
        gate.open("operator", f"reopen {i}", now_ns=i)
        print("ACK", log.last.seq, log.last.hash, flush=True)
""")


def test_sigkill_during_gate_decisions_loses_no_acknowledged_entry(tmp_path):
    path = tmp_path / "audit.db"
    proc = subprocess.Popen([sys.executable, "-c", _DECIDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acked: dict[int, str] = {}
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, seq, h = line.split()
            acked[int(seq)] = h
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-loop: the writer is busy deciding
        proc.wait(timeout=10)
        for line in proc.stdout:  # acks flushed just before the kill count too
            _, seq, h = line.split()
            acked[int(seq)] = h
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 300
    with AuditLog(path) as log:
        report = log.verify()
        assert report.ok, str(report)
        stored = {e.seq: e.hash for e in log.entries()}
    assert all(stored.get(seq) == h for seq, h in acked.items())
    assert report.entries >= max(acked)


def test_cli_verify_and_tail(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path))
    from spark_research.gates.audit import default_audit_path

    with AuditLog() as log:
        assert log.path == default_audit_path() == tmp_path / "audit" / "gates.db"
        _fill(log, 4)
    assert spark(["audit", "verify"]) == 0
    assert "audit OK: 4 entries" in capsys.readouterr().out
    assert spark(["audit", "tail", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "step 3" in out and "step 2" in out and "step 1" not in out
    _raw(AuditLog()).execute("UPDATE audit SET actor='mallory' WHERE seq=2")
    assert spark(["audit", "verify"]) == 1
    assert "entry seq=2: content does not match its hash" in capsys.readouterr().out

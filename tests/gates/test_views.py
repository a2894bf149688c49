"""The gate control state (no browser): who may act, what happens, what gets logged."""
from __future__ import annotations

import pandas as pd

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.auth import UserDirectory
from spark_research.gates.gate import GateBook, GateState
from spark_research.views.gates import GateControl, drift_histogram, gate_timeline, pnl_delta_curve


def _control(user):
    users = UserDirectory.default()
    book = GateBook(MemoryAudit(), authorize=users.is_operator)
    book.add("sma_cross", "BTCUSDT")
    book.add("sma_cross", "ETHUSDT")
    return GateControl(book=book, users=users, user=user), book


def test_operator_closes_and_opens_with_a_reason():
    ctl, book = _control("operator")
    assert ctl.can_act and ctl.gate == "sma_cross/BTCUSDT"
    ctl.gate = "sma_cross/ETHUSDT"
    ctl.reason = "funding spike"
    ctl.close_gate()
    assert book.get("sma_cross/ETHUSDT").state == GateState.CLOSED
    assert ctl.message == "sma_cross/ETHUSDT is CLOSED (close by operator: funding spike)" and ctl.reason == ""
    ctl.open_gate()
    assert ctl.message.startswith("refused: reason must be a non-empty text")
    ctl.reason = "funding normal"
    ctl.open_gate()
    assert book.get("sma_cross/ETHUSDT").state == GateState.OPEN


def test_viewer_and_anonymous_are_refused_and_logged():
    for user in ("viewer", None, "intruder"):
        ctl, book = _control(user)
        assert not ctl.can_act
        ctl.reason = "try"
        ctl.close_gate()
        assert ctl.message.startswith("refused: actor")
        assert book.get("sma_cross/BTCUSDT").state == GateState.OPEN
        refused = [e for e in book.audit.entries() if e.kind == "refused"]
        assert [(e.actor, e.gate) for e in refused] == [(user or "anonymous", "sma_cross/BTCUSDT")]


def test_audit_filter_narrows_the_trail():
    ctl, _ = _control("operator")
    ctl.reason = "needle in the trail"
    ctl.close_gate()
    ctl.audit_filter = "needle"
    shown = ctl.audit_view().object
    assert list(shown["reason"]) == ["needle in the trail"]


def test_analysis_charts_have_one_element_per_gate():
    drift = pd.DataFrame({
        "timestamp": pd.to_datetime([1, 2, 3, 4], unit="s", utc=True), "strategy": "s",
        "symbol": ["A", "A", "B", "B"], "drift_bps": [1.0, 2.0, 3.0, 4.0], "pnl_delta": [-1.0, 0.5, -2.0, 1.0]})
    assert len(drift_histogram(drift)) == 2 and len(pnl_delta_curve(drift)) == 2
    trail = pd.DataFrame({"time": pd.to_datetime([1, 2, 3], unit="s", utc=True), "gate": ["s/A", "s/A", "s/B"],
                          "new_state": ["OPEN", "CLOSED", "OPEN"]})
    timeline = gate_timeline(trail)
    assert len(timeline) == 2
    assert list(timeline.get(0).dframe()["state"]) == [0, 2]


def test_users_file_roles_hashes_and_errors(tmp_path, monkeypatch):
    import json

    import pytest

    from spark_research.gates.auth import hash_password

    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {
        "alice": {"role": "operator", "bcrypt": hash_password("pw-alice", rounds=4)},
        "sso-bob": {"role": "viewer"},  # an OAuth user: a role, no password
    }}))
    monkeypatch.setenv("SPARK_GATE_USERS", str(path))
    users = UserDirectory.default()
    assert users.authenticate("alice", "pw-alice") and not users.authenticate("alice", "operator-demo")
    assert not users.authenticate("operator", "operator-demo")  # demo users are gone
    assert not users.authenticate("sso-bob", "") and users.role("sso-bob") == "viewer"
    with pytest.raises(ValueError, match="user 'x': role must be one of"):
        UserDirectory({"x": {"role": "admin", "bcrypt": "$2b$..."}})
    with pytest.raises(ValueError, match="user 'y': field 'bcrypt' must be a bcrypt hash, got 'plain'"):
        UserDirectory({"y": {"role": "viewer", "bcrypt": "plain"}})

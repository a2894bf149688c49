"""``spark risk ...``: operator-authenticated changes that a running engine adopts on its next bar."""
from __future__ import annotations

import pytest

from spark_research.cli import main
from spark_research.gates.audit import AuditLog
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import RiskEngine, TradingState
from spark_research.risk.store import RiskStore

from .conftest import Clock, order


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_RISK_USER", "operator")
    monkeypatch.setenv("SPARK_RISK_PASSWORD", "operator-demo")
    monkeypatch.delenv("SPARK_GATE_USERS", raising=False)
    return tmp_path


def _engine(root, cfg=None) -> RiskEngine:
    eng = RiskEngine(RiskConfig.load(cfg) if cfg else RiskConfig.from_dict({}), store=RiskStore(root / "state.db"),
                     audit=AuditLog(root / "audit.db"), clock=Clock(), config_path=cfg)
    eng.on_price("BTCUSDT", 100.0)
    return eng


def test_halt_from_the_cli_reaches_a_running_engine_on_its_next_bar(root, capsys):
    eng = _engine(root)
    assert main(["risk", "halt", "global", "--reason", "exchange incident", "--root", str(root)]) == 0
    assert "global: HALTED" in capsys.readouterr().out
    eng.on_bar("BTCUSDT", 100.0)
    assert eng.evaluate(order("buy", 1.0)).check == "halted"
    assert main(["risk", "resume", "global", "--reason", "over", "--root", str(root)]) == 0
    eng.on_bar("BTCUSDT", 100.0)
    assert eng.state_of() == TradingState.ACTIVE
    entries = [e for e in eng.audit.entries() if e.kind == "risk_state"]
    assert [(e.actor, e.new_state, e.reason) for e in entries] == [
        ("cli:operator", "HALTED", "exchange incident"), ("cli:operator", "ACTIVE", "over")]
    assert eng.audit.verify().ok
    eng.close()


@pytest.mark.parametrize("user,password", [("operator", "wrong"), ("viewer", "viewer-demo"), ("nobody", "x")])
def test_changes_need_an_operator_and_refusals_are_audited(root, monkeypatch, capsys, user, password):
    monkeypatch.setenv("SPARK_RISK_USER", user)
    monkeypatch.setenv("SPARK_RISK_PASSWORD", password)
    assert main(["risk", "reduce", "strategy:s1", "--reason", "x", "--root", str(root)]) == 2
    assert user in capsys.readouterr().out
    log = AuditLog(root / "audit.db")
    assert [e.kind for e in log.entries()] == ["risk_refused"]
    assert RiskStore(root / "state.db").load("state:") == {}


def test_reload_validates_first_then_running_engines_reload(root, tmp_path, capsys):
    cfg = tmp_path / "risk.yml"
    cfg.write_text("instruments: {BTCUSDT: {max_qty: 5}}\n")
    eng = _engine(root, cfg)
    cfg.write_text("instruments: {BTCUSDT: {max_qty: -2}}\n")
    assert main(["risk", "reload", "--config", str(cfg), "--root", str(root)]) == 1
    assert "instruments.BTCUSDT.max_qty" in capsys.readouterr().err
    cfg.write_text("instruments: {BTCUSDT: {max_qty: 2}}\n")
    assert main(["risk", "reload", "--config", str(cfg), "--root", str(root)]) == 0
    eng.on_bar("BTCUSDT", 100.0)
    assert eng.evaluate(order("buy", 3.0)).check == "max_qty"
    reloads = [(e.actor, e.reason.split(":")[0]) for e in eng.audit.entries() if e.kind == "risk_config"]
    assert reloads == [("cli:operator", "reload requested"), ("cli:operator", "limits reloaded from " + str(cfg))]
    eng.close()


def test_status_and_limits_print_what_is_stored(root, capsys):
    eng = _engine(root)
    eng.reduce("instrument:ETHUSDT", actor="alice", reason="thin")
    eng.on_bar("BTCUSDT", 100.0)
    assert main(["risk", "status", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "instrument:ETHUSDT" in out and "REDUCING" in out and "equity 100000.00" in out
    assert main(["risk", "limits"]) == 0
    assert "max_daily_loss" in capsys.readouterr().out
    eng.close()

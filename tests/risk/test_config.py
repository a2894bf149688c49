"""``risk.yml``: validation names the field and the value; hot reload is validated first and audited."""
from __future__ import annotations

import pytest

from spark_research.risk.config import RiskConfig, default_config_path
from spark_research.risk.errors import RiskConfigError

from .conftest import make_engine, order


def test_the_shipped_default_config_loads():
    cfg = RiskConfig.load(default_config_path())
    assert cfg.limits.max_daily_loss > 0 and cfg.instrument("BTCUSDT").lot_size > 0
    assert cfg.instrument("NEWCOIN").price_collar_bps == cfg.instruments["default"].price_collar_bps
    assert cfg.digest and len(cfg.digest) == 64


def test_spark_risk_config_env_points_elsewhere(tmp_path, monkeypatch):
    path = tmp_path / "mine.yml"
    path.write_text("global: {max_open_orders: 3}\n")
    monkeypatch.setenv("SPARK_RISK_CONFIG", str(path))
    assert default_config_path() == path and RiskConfig.load().limits.max_open_orders == 3


@pytest.mark.parametrize("doc,field,value", [
    ({"global": {"max_gross_exposure": -5}}, "global.max_gross_exposure", "-5"),
    ({"global": {"max_open_orders": 2.5}}, "global.max_open_orders", "2.5"),
    ({"global": {"max_drawdown": 1.5}}, "global.max_drawdown", "1.5"),
    ({"global": {"on_daily_loss": "PANIC"}}, "global.on_daily_loss", "'PANIC'"),
    ({"global": {"submit_burst": 5}}, "global.submit_burst", "None"),
    ({"global": {"max_daily_los": 5}}, "global.max_daily_los", "5"),
    ({"instruments": {"BTCUSDT": {"max_qty": "lots"}}}, "instruments.BTCUSDT.max_qty", "'lots'"),
    ({"instruments": {"BTCUSDT": {"min_qty": 5, "max_qty": 1}}}, "instruments.BTCUSDT.min_qty", "5"),
    ({"instruments": {"BTCUSDT": {"rounding": "up"}}}, "instruments.BTCUSDT.rounding", "'up'"),
    ({"strategies": {"s1": {"budget": float("nan")}}}, "strategies.s1.budget", "nan"),
    ({"portfolio": {"var_window": 5}}, "portfolio.var_window", "5"),
    ({"limits": {}}, "limits", "{}"),
])
def test_invalid_config_names_the_field_and_the_value(doc, field, value):
    with pytest.raises(RiskConfigError) as err:
        RiskConfig.from_dict(doc, source="risk.yml")
    msg = str(err.value)
    assert msg.startswith("risk.yml: ") and field in msg and value in msg


def test_instrument_entries_inherit_the_default():
    cfg = RiskConfig.from_dict({"instruments": {"default": {"price_collar_bps": 100, "max_qty": 5},
                                                "BTCUSDT": {"max_qty": 1}}})
    assert (cfg.instrument("BTCUSDT").max_qty, cfg.instrument("BTCUSDT").price_collar_bps) == (1.0, 100.0)


def test_reload_applies_new_limits_and_is_audited(tmp_path):
    path = tmp_path / "risk.yml"
    path.write_text("instruments: {BTCUSDT: {max_qty: 5}}\n")
    eng = make_engine(config_path=path)
    eng.reload()
    assert isinstance(eng.evaluate(order("buy", 4.0)), type(order()))
    path.write_text("instruments: {BTCUSDT: {max_qty: 2}}\n")
    eng.reload(actor="alice")
    assert eng.evaluate(order("buy", 4.0)).check == "max_qty"
    entry = [e for e in eng.audit.entries() if e.kind == "risk_config"][-1]
    assert entry.actor == "alice" and "instruments.BTCUSDT.max_qty: 5.0 -> 2.0" in entry.values["changes"]
    assert entry.values["old_digest"] != entry.values["new_digest"]


def test_an_invalid_reload_changes_nothing(tmp_path):
    path = tmp_path / "risk.yml"
    path.write_text("instruments: {BTCUSDT: {max_qty: 5}}\n")
    eng = make_engine(config_path=path)
    eng.reload()
    path.write_text("instruments: {BTCUSDT: {max_qty: -1}}\n")
    with pytest.raises(RiskConfigError, match="max_qty"):
        eng.reload()
    assert eng.config.instrument("BTCUSDT").max_qty == 5.0
    assert [e.kind for e in eng.audit.entries()] == ["risk_config"]

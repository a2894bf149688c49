"""``run_backtest(..., risk=...)``: what the limits would have done; identical when no limit binds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import run_backtest
from spark_research.data import generate_bars
from spark_research.gates.audit import MemoryAudit
from spark_research.gates.gate import GateBook
from spark_research.gates.paper import PaperEngine
from spark_research.gates.session import PaperLiveSession
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import RiskEngine
from spark_research.risk.venue import RiskGuardedVenue

PARAMS = {"fast": 5, "slow": 20}
LOOSE = RiskConfig.from_dict({
    "global": {"max_order_notional": 1e9, "max_gross_exposure": 1e9, "max_net_exposure": 1e9, "max_open_orders": 10,
               "submit_rate": 1, "submit_burst": 10, "max_daily_loss": 1e9, "max_drawdown": 0.99},
    "instruments": {"default": {"max_qty": 1e6, "max_position": 1e6, "price_collar_bps": 100, "min_notional": 1}},
    "strategies": {"default": {"budget": 1e9}}})


@pytest.fixture(scope="module")
def bars():
    return generate_bars("ETHUSDT", n=200, seed=11)


@pytest.fixture(scope="module")
def plain(bars):
    return run_backtest("sma_cross", bars, PARAMS)


def test_limits_that_never_bind_change_nothing_and_match_the_paper_engine(bars, plain):
    res = run_backtest("sma_cross", bars, PARAMS, risk=LOOSE)
    assert len(plain.orders) >= 4, "the case must trade to prove anything"
    pd.testing.assert_frame_equal(res.orders, plain.orders, check_exact=True)
    assert res.stats == plain.stats
    assert res.risk.denials.empty and res.risk.approved == len(plain.orders)
    paper = PaperEngine("sma_cross", PARAMS, symbol="ETHUSDT").run(bars)
    pd.testing.assert_frame_equal(paper[list(plain.orders.columns)], res.orders, check_exact=True, check_dtype=False)
    # the engine's own book agrees with vectorbt's
    assert res.risk.engine.book.equity == pytest.approx(res.stats["final_equity"], rel=1e-9)


def test_a_binding_limit_removes_signals_and_says_which(bars, plain):
    first_value = plain.orders["size"].iloc[0] * plain.orders["price"].iloc[0]
    cfg = RiskConfig.from_dict({"global": {"max_order_notional": first_value * 0.5}})
    res = run_backtest("sma_cross", bars, PARAMS, risk=cfg)
    assert len(res.orders) == 0 and res.stats["trades"] == 0
    assert set(res.risk.denials["check"]) == {"max_order_notional"}
    assert (res.risk.denials["value"] > res.risk.denials["limit"]).all()


def test_lot_rounding_is_honoured_by_the_simulation(bars):
    cfg = RiskConfig.from_dict({"instruments": {"ETHUSDT": {"lot_size": 0.01}}})
    res = run_backtest("sma_cross", bars, PARAMS, risk=cfg)
    buys = res.orders[res.orders["side"] == "buy"]
    assert len(buys) >= 2
    assert np.allclose(np.round(buys["size"] / 0.01), buys["size"] / 0.01, atol=1e-6)


def test_a_drawdown_breaker_shows_in_the_result():
    bars = generate_bars("BTCUSDT", n=3000, seed=4)
    cfg = RiskConfig.from_dict({"global": {"max_drawdown": 0.01, "on_drawdown": "HALTED"}})
    res = run_backtest("sma_cross", bars, PARAMS, risk=cfg)
    assert (res.risk.states["new_state"] == "HALTED").any()
    halted_at = res.risk.states.loc[res.risk.states["new_state"] == "HALTED", "timestamp"].iloc[0]
    day = halted_at.floor("D") + pd.Timedelta(days=1)
    traded = res.orders["timestamp"]
    assert not ((traded > halted_at) & (traded < day)).any(), "nothing trades while HALTED the same day"
    assert (res.risk.denials["check"] == "halted").any()


def test_risk_in_a_backtest_needs_long_only(bars):
    with pytest.raises(ValueError, match="direction"):
        run_backtest("sma_cross", bars, PARAMS, direction="both", risk=LOOSE)


def test_several_symbols_share_the_engine():
    bars = {s: generate_bars(s, n=300, seed=i) for i, s in enumerate(("BTCUSDT", "ETHUSDT"))}
    plain = run_backtest("sma_cross", bars, PARAMS)
    same = run_backtest("sma_cross", bars, PARAMS, risk=LOOSE)
    pd.testing.assert_frame_equal(same.orders, plain.orders, check_exact=True)
    capped = run_backtest("sma_cross", bars, PARAMS, risk=RiskConfig.from_dict(
        {"global": {"max_gross_exposure": 6000}}))
    assert len(capped.orders) < len(plain.orders) and set(capped.risk.denials["check"]) == {"max_gross_exposure"}


def test_a_paper_live_session_behind_loose_limits_sends_every_order():
    bars = generate_bars("ETHUSDT", n=80, seed=2)  # short and busy: the paper engine re-signals every bar
    params = {"fast": 3, "slow": 8}
    def session(venue, risk):
        s = PaperLiveSession.create("sma_cross", "ETHUSDT", GateBook(MemoryAudit()), venue, params=params,
                                    start_ns=int(bars["timestamp"].iloc[0].value), risk=risk)
        s.gate.thresholds = s.gate.thresholds.__class__(max_stale_s=None, max_fill_drift_bps=None, max_drift_bps=None,
                                                        max_pnl_delta=None, max_error_rate=None)
        return s

    bare = session(SimulatedVenue(SimulatorConfig(seed=2)), RiskEngine())  # every limit off
    bare.replay(bars)
    now = [int(bars["timestamp"].iloc[0].value)]
    engine = RiskEngine(LOOSE, clock=lambda: now[0])  # the session's time is the bars' time
    guarded = session(SimulatedVenue(SimulatorConfig(seed=2)), engine)
    assert guarded.risk is engine  # the session put the venue behind it, so it marks it on every bar
    for bar in bars.to_dict("records"):
        now[0] = int(pd.Timestamp(bar["timestamp"]).value)
        guarded.on_bar(bar)
    assert len(bare.sent) >= 4 and not guarded.refused
    assert [o for o, _ in guarded.sent] == [o for o, _ in bare.sent]
    assert [(f.size, f.price) for f in guarded.live_fills] == [(f.size, f.price) for f in bare.live_fills]
    assert engine.book.marks["ETHUSDT"] == bars["close"].iloc[-1]
    assert engine.book.position("ETHUSDT").qty == pytest.approx(bare.live_position)


def _desk_session(bars, venue=None, **kw):
    return PaperLiveSession.create("sma_cross", "ETHUSDT", GateBook(MemoryAudit()),
                                   venue or SimulatedVenue(SimulatorConfig(seed=2)), params={"fast": 3, "slow": 8},
                                   start_ns=int(bars["timestamp"].iloc[0].value), **kw)


def test_a_session_built_without_a_risk_engine_is_checked_against_the_desks_limits(tmp_path, monkeypatch):
    # a notebook's session: nobody passed an engine, the desk's risk.yml still stands between it and the venue
    (tmp_path / "risk.yml").write_text("version: 1\ninstruments:\n  ETHUSDT: {max_position: 0.5}\n")
    monkeypatch.setenv("SPARK_RISK_CONFIG", str(tmp_path / "risk.yml"))
    bars = generate_bars("ETHUSDT", n=80, seed=2)
    s = _desk_session(bars)
    assert isinstance(s.venue, RiskGuardedVenue) and s.venue.engine is s.risk
    s.replay(bars)
    assert s.refused, "every buy is over the 0.5 ETH position limit"
    assert not s.live_fills
    assert {d.check for d in s.risk.denials} == {"max_position"}
    assert s.risk.denials[0].limit == 0.5


def test_a_session_without_a_risk_file_runs_with_limits_off_but_a_halt_still_stops_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_RISK_CONFIG", str(tmp_path / "absent.yml"))
    bars = generate_bars("ETHUSDT", n=80, seed=2)
    s = _desk_session(bars)
    s.replay(bars.iloc[:40])
    reached = s.venue.sent  # orders that reached the venue
    assert reached > 0 and not s.refused
    s.risk.halt(actor="notebook", reason="stop everything")
    s.replay(bars.iloc[40:])
    assert s.refused and s.venue.sent == reached and {d.check for d in s.risk.denials} == {"halted"}


def test_a_venue_already_behind_an_engine_keeps_it_and_a_second_engine_is_refused():
    bars = generate_bars("ETHUSDT", n=10, seed=2)
    engine = RiskEngine()
    guarded = RiskGuardedVenue(SimulatedVenue(SimulatorConfig(seed=2)), engine)
    s = _desk_session(bars, guarded)
    assert s.venue is guarded and s.risk is None  # its owner marks that engine, not the session
    with pytest.raises(ValueError, match="already behind another risk engine"):
        _desk_session(bars, guarded, risk=RiskEngine())

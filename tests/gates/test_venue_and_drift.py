"""Execution simulator, gate guard, exchange CSV importer and drift arithmetic."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from spark_research.gates.drift import RollingDrift, fill_drift, match_fills
from spark_research.gates.errors import FillsImportError, InvalidMeasurementError, OrderRefusedError, OrderRejectedError
from spark_research.gates.gate import Gate, GateState
from spark_research.gates.model import Fill, Order, fills_frame
from spark_research.gates.venue import ExecutionVenue, GuardedVenue, SimulatedVenue, SimulatorConfig, load_fills_csv
from tests.gates.conftest import NS, T0


def _orders(n=50):
    return [Order(f"o{i}", "sma_cross", "BTCUSDT", T0 + i * NS, "buy" if i % 2 else "sell", 0.5, 30_000.0)
            for i in range(n)]


def test_simulator_is_seeded_and_deterministic():
    a = [f for o in _orders() for f in SimulatedVenue(SimulatorConfig(seed=3)).submit(o)]
    b = [f for o in _orders() for f in SimulatedVenue(SimulatorConfig(seed=3)).submit(o)]
    c = [f for o in _orders() for f in SimulatedVenue(SimulatorConfig(seed=4)).submit(o)]
    assert a == b and a != c


def test_simulator_partial_fills_add_up_and_slippage_is_adverse_on_average():
    venue = SimulatedVenue(SimulatorConfig(seed=1, partial_fill_prob=0.5, max_parts=4, slippage_bps=5,
                                           vol_bps_per_sqrt_s=0.0))
    assert isinstance(venue, ExecutionVenue)
    parts = []
    for o in _orders(200):
        fills = venue.submit(o)
        parts.append(len(fills))
        assert math.fsum(f.size for f in fills) == pytest.approx(o.size, rel=1e-12)
        assert all(f.ts > o.ts for f in fills)  # latency
        sign = 1 if o.side == "buy" else -1
        assert all(sign * (f.price - o.ref_price) >= 0 for f in fills)  # no noise: slippage only hurts
        assert all(f.fees == pytest.approx(f.size * f.price * 0.001) for f in fills)
    assert max(parts) > 1 and min(parts) == 1


def test_simulator_rejects_and_bad_orders():
    venue = SimulatedVenue(SimulatorConfig(seed=2, reject_prob=0.5))
    outcomes = []
    for o in _orders(40):
        try:
            venue.submit(o)
            outcomes.append("fill")
        except OrderRejectedError as exc:
            assert "rejected by sim" in str(exc)
            outcomes.append("reject")
    assert 5 < outcomes.count("reject") < 35
    with pytest.raises(OrderRejectedError, match="size must be > 0, got nan"):
        SimulatedVenue().submit(Order("x", "s", "X", 0, "buy", float("nan"), 1.0))
    with pytest.raises(ValueError, match="SimulatorConfig.reject_prob must be in \\[0, 1\\), got 1.0"):
        SimulatorConfig(reject_prob=1.0)


def test_guarded_venue_refuses_while_closed_and_scales_in_probation(gate):
    venue = GuardedVenue(SimulatedVenue(SimulatorConfig(seed=1, partial_fill_prob=0)), gate)
    order = Order("o1", "sma_cross", "BTCUSDT", T0 + NS, "buy", 1.0, 100.0)
    assert venue.submit(order)[0].size == 1.0
    gate.close("alice", "test", now_ns=T0 + NS)
    with pytest.raises(OrderRefusedError, match="CLOSED"):
        venue.submit(order)
    gate.state = GateState.HALF_OPEN  # probation
    assert venue.submit(order)[0].size == 0.25


def test_fill_drift_signs_and_pnl():
    paper = Fill("o", "s", "X", 0, "sell", 2.0, 100.0, 0.2, "paper")
    worse = Fill("o", "s", "X", 0, "sell", 1.0, 99.9, 0.1, "sim")
    d = fill_drift(paper, worse)
    assert d.price_drift == pytest.approx(0.1) and d.drift_bps == pytest.approx(10)
    assert d.pnl_delta == pytest.approx(-0.1)  # sold 1 unit 0.1 lower, same fee per unit
    with pytest.raises(InvalidMeasurementError, match="side mismatch for order 'o'"):
        fill_drift(paper, Fill("o", "s", "X", 0, "buy", 1.0, 99.9, 0.1, "sim"))


def test_rolling_drift_window():
    r = RollingDrift(window=3)
    for v in (1, 2, 3, 10):
        r.add(v, -v)
    assert (r.count, r.mean_bps, r.pnl_delta) == (3, 5.0, -15.0)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        RollingDrift(0)


CSV = """Date(UTC),Pair,Side,Price,Executed,Amount,Fee
2024-01-01 00:05:00,BTCUSDT,BUY,30015.0,0.02BTC,600.3USDT,0.6003 USDT
2024-01-01 00:09:00,btcusdt,SELL,30100.5,0.02BTC,602.01USDT,0.60201
"""


def test_exchange_csv_import_and_offline_drift(tmp_path):
    path = tmp_path / "fills.csv"
    path.write_text(CSV)
    live = load_fills_csv(path, strategy="sma_cross")
    assert list(live["side"]) == ["buy", "sell"] and list(live["symbol"]) == ["BTCUSDT", "BTCUSDT"]
    assert list(live["size"]) == [0.02, 0.02] and live["fees"].iloc[0] == pytest.approx(0.6003)
    paper = fills_frame([
        Fill("p1", "sma_cross", "BTCUSDT", pd.Timestamp("2024-01-01 00:05", tz="UTC").value, "buy", 0.02, 30000.0, 0.6, "paper"),
        Fill("p2", "sma_cross", "BTCUSDT", pd.Timestamp("2024-01-01 00:09", tz="UTC").value, "sell", 0.02, 30100.0, 0.602, "paper"),
    ])
    d = match_fills(paper, live)
    assert list(d["drift_bps"].round(6)) == [5.0, round(0.5 / 30100.0 * 1e4, 6)]
    assert d["pnl_delta"].iloc[0] == pytest.approx(-15.0 * 0.02 - 0.0003)


def test_csv_import_errors_name_row_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,symbol,side,price,qty\n1704067200000,BTCUSDT,buy,abc,1\n")
    with pytest.raises(FillsImportError, match="row 2: field 'price' = 'abc' is not a number"):
        load_fills_csv(bad)
    bad.write_text("time,symbol,side,price,qty\n1704067200000,BTCUSDT,hold,1,1\n")
    with pytest.raises(FillsImportError, match="row 2: field 'side' = 'hold' is not buy/sell"):
        load_fills_csv(bad)
    bad.write_text("time,symbol,price,qty\n1704067200000,BTCUSDT,1,1\n")
    with pytest.raises(FillsImportError, match=r"missing column\(s\) \['side'\]"):
        load_fills_csv(bad)
    bad.write_text("time,symbol,side,price,qty\n1704067200000,BTCUSDT,buy,1,-2\n")
    with pytest.raises(FillsImportError, match="row 2: field 'size' = -2.0 must be > 0"):
        load_fills_csv(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("time,symbol,side,price,qty\n1704067200000,BTCUSDT,buy,1,2\n")
    assert load_fills_csv(ok)["timestamp"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")

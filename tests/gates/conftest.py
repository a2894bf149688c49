"""Helpers for the gates tests: drift records and gates on a fake clock."""
from __future__ import annotations

import pytest

from spark_research.gates.audit import AuditLog, MemoryAudit
from spark_research.gates.drift import FillDrift
from spark_research.gates.gate import Gate, GateThresholds

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def drift(bps: float = 1.0, pnl: float = 0.0, ts: int = T0, price: float = 100.0, order_id: str = "o") -> FillDrift:
    """A live fill whose price is ``bps`` worse than paper, with PnL delta ``pnl``."""
    abs_ = price * bps / 1e4
    return FillDrift("sma_cross", "BTCUSDT", order_id, ts, "buy", 1.0, price, price + abs_, abs_, abs_, bps, pnl)


@pytest.fixture
def thresholds():
    return GateThresholds(max_fill_drift_bps=50, max_drift_bps=10, max_price_drift_abs=None, max_pnl_delta=100,
                          max_error_rate=0.5, min_events_for_rate=4, max_stale_s=120, window=5,
                          min_fills_for_mean=3, cooldown_s=60, probation_fills=3, probation_size=0.25)


@pytest.fixture
def audit():
    return MemoryAudit()


@pytest.fixture
def gate(thresholds, audit):
    g = Gate("sma_cross", "BTCUSDT", thresholds, audit, created_ns=T0)
    g.heartbeat(T0)
    return g


@pytest.fixture
def sqlite_audit(tmp_path):
    log = AuditLog(tmp_path / "audit" / "gates.db")
    yield log
    log.close()


from spark_research.backtest import Param, Signals, Strategy  # noqa: E402


class QuickSma(Strategy):
    """SMA crossover on pandas rolling means: the session tests' cheap stand-in for ``sma_cross``
    (the gate wiring is under test there; parity with the shipped strategies is proven separately)."""

    name = "quick_sma"
    fast = Param(3, low=2, high=50)
    slow = Param(10, low=3, high=200)

    def signals(self, bars, fast, slow):
        f, s = bars["close"].rolling(int(fast)).mean(), bars["close"].rolling(int(slow)).mean()
        above = (f > s).fillna(False)
        prev = above.shift(1, fill_value=False)
        return Signals(entries=above & ~prev, exits=~above & prev)


# -- the replay exchange's order entry, for the venues that send orders to it -----------------------------
from spark_research.streams.orders import OrderConfig  # noqa: E402
from spark_research.streams.replay import Faults, ReplayExchange  # noqa: E402


@pytest.fixture
def exchange():
    """``exchange(faults=..., **order_config)``: a started replay exchange whose short tape is fully
    published, so orders execute around a price that stays put."""
    started: list[ReplayExchange] = []

    def make(faults: Faults | None = None, **cfg) -> ReplayExchange:
        ex = ReplayExchange(n=300, rate=50_000, faults=faults, orders=OrderConfig(**cfg)).start()
        started.append(ex)
        assert ex.wait_finished(10)
        return ex

    yield make
    for ex in started:
        ex.stop()

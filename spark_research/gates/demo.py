"""A seeded demo desk: two strategy/symbol sessions replayed beside simulated live execution.

Used by the gate control app, the drift notebook and the CLI-less demos: one session runs on a
well-behaved venue, the other on a venue whose slippage drifts, so its gate closes, sits in
probation and recovers or fails. Deterministic for a given seed.

Example::

    >>> from spark_research.gates.audit import MemoryAudit
    >>> from spark_research.gates.gate import GateBook
    >>> sessions = run_demo(GateBook(MemoryAudit()), n_bars=150)
    >>> sorted(sessions)
    ['sma_cross/BTCUSDT', 'sma_cross/ETHUSDT']
"""
from __future__ import annotations

from spark_research.data import generate_bars
from spark_research.gates.gate import GateBook, GateThresholds
from spark_research.gates.session import PaperLiveSession
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig

#: (symbol, venue config) of the demo sessions: a calm venue and a drifting one. ``spark serve``'s
#: live session executes on the replay exchange instead (its order config:
#: ``spark_research.platform.components.DEMO_ORDERS``, with :data:`LIVE_THRESHOLDS`).
DEMO_VENUES = {
    "BTCUSDT": SimulatorConfig(slippage_bps=3.0, slippage_std_bps=1.5, partial_fill_prob=0.2),
    "ETHUSDT": SimulatorConfig(slippage_bps=14.0, slippage_std_bps=8.0, partial_fill_prob=0.3, reject_prob=0.05),
}
DEMO_THRESHOLDS = GateThresholds(max_fill_drift_bps=30.0, max_drift_bps=12.0, max_pnl_delta=40.0,
                                 cooldown_s=900.0, probation_fills=3)
#: Thresholds of ``spark serve``'s live session on the replay exchange. The live order leaves
#: when its signal forms (the bar's close) and executes after the exchange's latency, so its
#: drift is the venue's slippage plus the price move over that latency: measured with
#: ``bench/orders.py`` (90 s of the demo stream), BTC P50 0.9 / P95 4.6 bps on the exchange vs
#: 1.4 / 3.6 bps on the simulator. A rolling mean over at least 5 fills keeps one unlucky fill
#: from closing the calm gate; the drifting venue (30 bps) still closes within minutes.
LIVE_THRESHOLDS = GateThresholds(max_fill_drift_bps=30.0, max_drift_bps=12.0, min_fills_for_mean=5,
                                 max_pnl_delta=40.0, cooldown_s=900.0, probation_fills=3)


def run_demo(book: GateBook, *, n_bars: int = 240, seed: int = 7, strategy: str = "sma_cross",
             params: dict | None = None) -> dict[str, PaperLiveSession]:
    """Replay ``n_bars`` seeded bars per demo symbol; returns ``{gate name: session}``."""
    params = params or {"fast": 3, "slow": 10}
    sessions = {}
    for i, (symbol, cfg) in enumerate(DEMO_VENUES.items()):
        bars = generate_bars(symbol, n=n_bars, seed=seed)
        venue = SimulatedVenue(SimulatorConfig(**{**cfg.__dict__, "seed": seed + i}))
        s = PaperLiveSession.create(strategy, symbol, book, venue, params=params, thresholds=DEMO_THRESHOLDS,
                                    start_ns=int(bars["timestamp"].iloc[0].value))
        s.replay(bars)
        sessions[s.gate.name] = s
    return sessions

"""Paper trading beside live execution, paper-vs-live drift, trading gates and their audit log.

Modules (import what you need; nothing heavy is imported here)::

    from spark_research.gates.paper import PaperEngine          # strategy on a bar stream
    from spark_research.gates.venue import ExchangeVenue, SimulatedVenue, load_fills_csv
    from spark_research.gates.drift import fill_drift, match_fills
    from spark_research.gates.gate import Gate, GateBook, GateState, GateThresholds
    from spark_research.gates.audit import AuditLog
    from spark_research.gates.session import PaperLiveSession

The flow: bars -> :class:`~spark_research.gates.paper.PaperEngine` (paper fills, same code path
and cost model as ``run_backtest``) -> orders through a :class:`~spark_research.gates.venue.GuardedVenue`
(refused while the gate is CLOSED) -> live fills -> :func:`~spark_research.gates.drift.fill_drift`
-> :class:`~spark_research.gates.gate.Gate` decisions, each state change written durably to the
:class:`~spark_research.gates.audit.AuditLog` before it takes effect.
"""

"""Optimizer: parameter sweeps at scale on Dask, walk-forward, overfitting statistics.

Public surface (imported lazily so ``spark --help`` stays fast)::

    from spark_research.optimizer import (SweepSpec, Optimizer, SweepResult, Scheduler, QueueFull,
                                          walk_forward, pbo_cscv, deflated_sharpe_ratio)

Example::

    >>> from spark_research.optimizer import SweepSpec
    >>> SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"]).objective
    'sharpe'
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

_EXPORTS = {
    "SweepSpec": "spec", "SpecError": "spec", "combinations": "spec",
    "Optimizer": "sweep", "SweepResult": "sweep", "SweepHandle": "sweep",
    "LookaheadRefused": "sweep", "StrategyChangedWarning": "sweep", "evaluate_generic": "generic",
    "Scheduler": "scheduler", "Job": "scheduler", "JobStatus": "scheduler", "QueueFull": "scheduler",
    "JobFailed": "scheduler", "JobCancelled": "scheduler",
    "SweepStore": "store", "SweepNotFound": "store",
    "evaluate_fused": "fused", "connect": "cluster",
    "walk_forward": "walkforward", "WalkForwardResult": "walkforward", "wf_windows": "walkforward",
    "pbo_cscv": "overfitting", "deflated_sharpe_ratio": "overfitting", "expected_max_sharpe": "overfitting",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("spark_research.optimizer", _EXPORTS)

"""Deterministic historical backtests on vectorbt.

Public surface (imported lazily, so ``import spark_research.backtest.cli`` stays light)::

    from spark_research.backtest import run_backtest, Strategy, Param, Signals, STRATEGIES
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BacktestResult": "spark_research.backtest.engine",
    "run_backtest": "spark_research.backtest.engine",
    "STAT_FIELDS": "spark_research.backtest.engine",
    "split_symbols": "spark_research.backtest.engine",
    "STRATEGIES": "spark_research.backtest.strategies",
    "get_strategy": "spark_research.backtest.strategies",
    "Param": "spark_research.backtest.strategy",
    "ParameterError": "spark_research.backtest.strategy",
    "Signals": "spark_research.backtest.strategy",
    "Strategy": "spark_research.backtest.strategy",
    "check_lookahead": "spark_research.backtest.lookahead",
    "check_warmup": "spark_research.backtest.lookahead",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spark_research.backtest' has no attribute {name!r}")

"""Deterministic historical backtests on vectorbt.

Public surface (imported lazily, so ``import spark_research.backtest.cli`` stays light)::

    from spark_research.backtest import run_backtest, Strategy, Param, Signals, STRATEGIES
    from spark_research.backtest import resolve_strategy, register_strategy, list_strategies
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

_EXPORTS = {
    "BacktestResult": "engine",
    "run_backtest": "engine",
    "STAT_FIELDS": "engine",
    "split_symbols": "engine",
    "STRATEGIES": "strategies",
    "get_strategy": "strategies",
    "Param": "strategy",
    "ParameterError": "strategy",
    "Signals": "strategy",
    "Strategy": "strategy",
    "check_lookahead": "lookahead",
    "check_warmup": "lookahead",
    "resolve_strategy": "registry",
    "register_strategy": "registry",
    "list_strategies": "registry",
    "identify": "registry",
    "StrategyError": "registry",
    "UnknownStrategy": "registry",
    "StrategyLoadError": "registry",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("spark_research.backtest", _EXPORTS)

"""Deterministic historical backtests on vectorbt.

Public surface::

    from spark_research.backtest import run_backtest, Strategy, Param, Signals, STRATEGIES
"""
from spark_research.backtest.engine import BacktestResult, run_backtest
from spark_research.backtest.strategies import STRATEGIES, get_strategy
from spark_research.backtest.strategy import Param, ParameterError, Signals, Strategy

__all__ = ["BacktestResult", "run_backtest", "STRATEGIES", "get_strategy", "Param", "ParameterError", "Signals", "Strategy"]

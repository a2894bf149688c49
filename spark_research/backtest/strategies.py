"""The shipped strategies: SMA crossover, RSI mean reversion, Donchian breakout.

Each is a dozen lines on vectorbt indicators; every signal at bar *t* uses bars up to *t*.

Example::

    >>> from spark_research.backtest.strategies import STRATEGIES, get_strategy
    >>> sorted(STRATEGIES)
    ['donchian_breakout', 'rsi_reversion', 'sma_cross']
    >>> get_strategy("sma_cross").defaults()
    {'fast': 10, 'slow': 50}
"""
from __future__ import annotations

import pandas as pd
import vectorbt as vbt

from spark_research.backtest.strategy import Param, Signals, Strategy


def _crossed_above(a: pd.Series, b: pd.Series | float) -> pd.Series:
    prev_a, prev_b = a.shift(1), (b.shift(1) if isinstance(b, pd.Series) else b)
    return ((a > b) & (prev_a <= prev_b)).fillna(False).astype(bool)


class SmaCross(Strategy):
    """Long when the fast SMA crosses above the slow SMA; flat (or short) when it crosses below."""

    name = "sma_cross"
    fast = Param(10, low=2, high=200, step=1)
    slow = Param(50, low=5, high=500, step=5)

    @classmethod
    def constraint(cls, params):
        """fast < slow"""
        return params["fast"] < params["slow"]

    def indicators(self, bars, fast, slow):
        close = bars["close"]
        return {"fast_ma": vbt.MA.run(close, int(fast)).ma.rename("fast_ma"),
                "slow_ma": vbt.MA.run(close, int(slow)).ma.rename("slow_ma")}

    def signals(self, bars, fast, slow):
        ind = self.indicators(bars, fast, slow)
        return Signals(entries=_crossed_above(ind["fast_ma"], ind["slow_ma"]),
                       exits=_crossed_above(ind["slow_ma"], ind["fast_ma"]))


class RsiReversion(Strategy):
    """Buy when RSI falls below ``lower`` (oversold); sell when it rises above ``upper``."""

    name = "rsi_reversion"
    window = Param(14, low=2, high=100, step=1)
    lower = Param(30, low=5, high=50, step=5)
    upper = Param(70, low=50, high=95, step=5)

    @classmethod
    def constraint(cls, params):
        """lower < upper"""
        return params["lower"] < params["upper"]

    def indicators(self, bars, window, lower, upper):
        return {"rsi": vbt.RSI.run(bars["close"], int(window)).rsi.rename("rsi")}

    def signals(self, bars, window, lower, upper):
        rsi = self.indicators(bars, window, lower, upper)["rsi"]
        lower_s = pd.Series(float(lower), index=rsi.index)
        upper_s = pd.Series(float(upper), index=rsi.index)
        return Signals(entries=_crossed_above(lower_s, rsi), exits=_crossed_above(rsi, upper_s))


class DonchianBreakout(Strategy):
    """Buy when the close breaks above the prior ``window``-bar high; exit below the prior ``exit_window``-bar low."""

    name = "donchian_breakout"
    window = Param(55, low=5, high=500, step=5)
    exit_window = Param(20, low=2, high=250, step=2)

    @classmethod
    def constraint(cls, params):
        """exit_window <= window"""
        return params["exit_window"] <= params["window"]

    def indicators(self, bars, window, exit_window):
        # the channel of the *previous* bars: today's bar cannot be in its own breakout level
        upper = bars["high"].rolling(int(window)).max().shift(1).rename("upper")
        lower = bars["low"].rolling(int(exit_window)).min().shift(1).rename("lower")
        return {"upper": upper, "lower": lower}

    def signals(self, bars, window, exit_window):
        ind = self.indicators(bars, window, exit_window)
        close = bars["close"]
        return Signals(entries=(close > ind["upper"]).fillna(False).astype(bool),
                       exits=(close < ind["lower"]).fillna(False).astype(bool))


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (SmaCross, RsiReversion, DonchianBreakout)}


def get_strategy(name: "str | type[Strategy] | Strategy") -> type[Strategy]:
    """The strategy class for any way of naming one (see :mod:`spark_research.backtest.registry`).

    Registry names, ``"pkg.mod:Class"``, ``"path/to/file.py:Class"``, classes and instances;
    an unknown name raises :class:`~spark_research.backtest.registry.UnknownStrategy` (a ``KeyError``).
    """
    from spark_research.backtest.registry import resolve_strategy

    return resolve_strategy(name)

"""Strategy API: declared parameters with ranges and vectorised signals.

A strategy is a small class. Parameters are class attributes of type :class:`Param`;
``indicators`` computes named indicator series, ``signals`` turns them into boolean entry
and exit series. Signals at bar *t* may use data up to and including bar *t*'s close; the
engine decides when they fill (next bar's open by default).

Example (a complete strategy)::

    >>> import vectorbt as vbt
    >>> from spark_research.backtest.strategy import Param, Signals, Strategy
    >>> class MomentumFlip(Strategy):
    ...     '''Long while the close is above its moving average.'''
    ...     window = Param(20, low=5, high=200)
    ...     def indicators(self, bars, window):
    ...         return {"ma": vbt.MA.run(bars["close"], window).ma.rename("ma")}
    ...     def signals(self, bars, window):
    ...         above = bars["close"] > self.indicators(bars, window)["ma"]
    ...         return Signals(entries=above & ~above.shift(1, fill_value=False),
    ...                        exits=~above & above.shift(1, fill_value=False))
    >>> MomentumFlip.defaults()
    {'window': 20}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class ParameterError(ValueError):
    """A strategy parameter is unknown, missing, or outside its declared range."""


@dataclass(frozen=True)
class Param:
    """A tunable parameter: default value, inclusive range and grid step."""

    default: int | float
    low: int | float
    high: int | float
    step: int | float = 1

    def __post_init__(self) -> None:
        if not (self.low <= self.default <= self.high):
            raise ParameterError(f"default {self.default!r} outside [{self.low!r}, {self.high!r}]")
        if self.step <= 0:
            raise ParameterError(f"step must be > 0, got {self.step!r}")

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, (int, np.integer)) for v in (self.default, self.low, self.high, self.step))

    def grid(self) -> np.ndarray:
        """Every value from ``low`` to ``high`` by ``step`` (inclusive)."""
        n = int(np.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = self.low + self.step * np.arange(n)
        return values.astype(np.int64) if self.is_int else values


@dataclass
class Signals:
    """Boolean signal series aligned with the bars. Shorts are optional."""

    entries: pd.Series
    exits: pd.Series
    short_entries: pd.Series | None = None
    short_exits: pd.Series | None = None


class Strategy:
    """Base class of every strategy. Subclasses declare :class:`Param` attributes."""

    #: Registry name (``"sma_cross"``); defaults to the class name.
    name: ClassVar[str] = ""
    #: Declared parameters, collected from the class attributes.
    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        collected = {}
        for klass in reversed(cls.__mro__):
            collected.update({k: v for k, v in vars(klass).items() if isinstance(v, Param)})
        cls.params = collected
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__

    @classmethod
    def defaults(cls) -> dict[str, int | float]:
        """The default value of every parameter."""
        return {k: p.default for k, p in cls.params.items()}

    @classmethod
    def resolve(cls, params: dict[str, Any] | None = None, *, check_range: bool = True) -> dict[str, Any]:
        """Defaults overlaid with ``params``; rejects unknown names and out-of-range values."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            raise ParameterError(f"{cls.name}: unknown parameter(s) {unknown}; declared: {sorted(cls.params)}")
        merged = {**cls.defaults(), **params}
        for key, value in merged.items():
            p = cls.params[key]
            if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
                raise ParameterError(f"{cls.name}: parameter {key!r} = {value!r} is not a finite number")
            if check_range and not (p.low <= value <= p.high):
                raise ParameterError(f"{cls.name}: parameter {key!r} = {value!r} outside [{p.low}, {p.high}]")
        if not cls.constraint(merged):
            raise ParameterError(f"{cls.name}: parameters {merged} violate the constraint: {cls.constraint.__doc__}")
        return merged

    @classmethod
    def constraint(cls, params: dict[str, Any]) -> bool:
        """True when a parameter combination is meaningful (override, e.g. ``fast < slow``)."""
        return True

    def indicators(self, bars: pd.DataFrame, **params: Any) -> dict[str, pd.Series]:
        """Named indicator series (used by the warm-up check and charts)."""
        return {}

    def signals(self, bars: pd.DataFrame, **params: Any) -> Signals:  # pragma: no cover - abstract
        """Entry/exit signals computed from ``bars`` (columns open/high/low/close/volume)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

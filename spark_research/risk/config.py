"""``risk.yml``: the limits of the pre-trade risk engine, validated at load.

Where it lives: ``$SPARK_RISK_CONFIG`` if set, else ``config/risk.yml`` at the project root
(the shipped default, next to ``rules/`` and ``dashboards/``; not to be confused with the alert
rules in ``rules/risk.yml``). Layout::

    global:            # book-wide limits (every key optional; null or absent = no limit)
      max_order_notional: 50000
      max_gross_exposure: 250000
      max_net_exposure: 150000
      max_open_orders: 50
      submit_rate: 20          # orders per second (token bucket) ...
      submit_burst: 40         # ... up to this many at once
      cancel_rate: 50
      cancel_burst: 100
      max_daily_loss: 5000     # quote currency, realised + unrealised since the day's start
      max_drawdown: 0.1        # fraction of the day's peak equity
      on_daily_loss: HALTED    # the state a breach moves to: REDUCING or HALTED
      on_drawdown: REDUCING
    instruments:
      default: {price_collar_bps: 500, rounding: round}
      BTCUSDT: {tick_size: 0.01, lot_size: 0.00001, min_qty: 0.0001, max_qty: 5, max_position: 10,
                min_notional: 5, max_notional: 50000, price_collar_bps: 200, rounding: round}
    strategies:
      default: {budget: 100000}
      sma_cross: {budget: 50000, max_open_orders: 10, max_daily_loss: 2000}
    portfolio: {cash: 100000, var_window: 250}

Every error names the file, the field and the value (``RiskConfigError``); unknown fields are
errors too (a typo must not silently disable a limit).

Example::

    >>> cfg = RiskConfig.from_dict({"global": {"max_open_orders": 5},
    ...                             "instruments": {"BTCUSDT": {"max_qty": 2, "lot_size": 0.001}}})
    >>> cfg.instrument("BTCUSDT").max_qty, cfg.instrument("ETHUSDT").max_qty, cfg.limits.max_open_orders
    (2.0, None, 5)
    >>> RiskConfig.from_dict({"global": {"max_drawdown": 2}})
    Traceback (most recent call last):
    ...
    spark_research.risk.errors.RiskConfigError: risk config: global.max_drawdown must be a fraction in (0, 1), got 2
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from spark_research.config import PROJECT_ROOT
from spark_research.risk.errors import RiskConfigError

#: Trading states a breach may move to.
BREACH_STATES = ("REDUCING", "HALTED")
ROUNDING = ("round", "reject")
DEFAULT = "default"


def default_config_path() -> Path:
    """``$SPARK_RISK_CONFIG`` if set, else ``<project root>/config/risk.yml``."""
    env = os.environ.get("SPARK_RISK_CONFIG")
    return Path(env).expanduser() if env else PROJECT_ROOT / "config" / "risk.yml"


def _number(src: str, name: str, value: Any, *, integer: bool = False, fraction: bool = False,
            allow_zero: bool = False) -> float | int | None:
    """``value`` checked: None, or a finite number > 0 (>= 0 with ``allow_zero``; in (0, 1) with ``fraction``)."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer and ok and float(value) != int(value):
        ok = False
    if fraction:
        if not (ok and 0 < value < 1):
            raise RiskConfigError(f"{src}: {name} must be a fraction in (0, 1), got {value!r}")
        return float(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        what = "an integer" if integer else "a finite number"
        raise RiskConfigError(f"{src}: {name} must be {what} {'>= 0' if allow_zero else '> 0'} or null, got {value!r}")
    return int(value) if integer else float(value)


def _check_keys(src: str, where: str, data: Any, cls: type) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise RiskConfigError(f"{src}: {where} must be a mapping, got {data!r}")
    known = {f.name for f in fields(cls)} - {"symbol", "name"}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise RiskConfigError(f"{src}: {where}.{unknown[0]} is not a known field (known: {sorted(known)}), "
                              f"got {data[unknown[0]]!r}")
    return dict(data)


@dataclass(frozen=True)
class InstrumentLimits:
    """Per-instrument order and position limits (None = no limit). Quantities in base units."""

    symbol: str = DEFAULT
    tick_size: float | None = None  #: price grid
    lot_size: float | None = None  #: quantity grid
    min_qty: float | None = None
    max_qty: float | None = None
    min_notional: float | None = None  #: quote currency per order
    max_notional: float | None = None
    price_collar_bps: float | None = None  #: max distance of the order price from the last trade / mark
    max_position: float | None = None  #: |position| in base units, worst case with open orders
    rounding: str = "round"  #: off-grid price/qty: ``round`` (qty down to the lot, price to the tick) or ``reject``

    @classmethod
    def parse(cls, src: str, symbol: str, data: Any, base: "InstrumentLimits | None" = None) -> "InstrumentLimits":
        where = f"instruments.{symbol}"
        raw = _check_keys(src, where, data, cls)
        merged = {**(asdict(base) if base else {}), **raw, "symbol": symbol}
        out = {}
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "min_notional", "max_notional",
                     "price_collar_bps", "max_position"):
            out[name] = _number(src, f"{where}.{name}", merged.get(name))
        rounding = merged.get("rounding", "round")
        if rounding not in ROUNDING:
            raise RiskConfigError(f"{src}: {where}.rounding must be one of {ROUNDING}, got {rounding!r}")
        for lo, hi in (("min_qty", "max_qty"), ("min_notional", "max_notional")):
            if out[lo] is not None and out[hi] is not None and out[lo] > out[hi]:
                raise RiskConfigError(f"{src}: {where}.{lo} must be <= {where}.{hi} ({out[hi]!r}), got {out[lo]!r}")
        return cls(symbol=symbol, rounding=rounding, **out)


@dataclass(frozen=True)
class StrategyLimits:
    """Per-strategy limits: its budget (gross notional of its positions), open orders, daily loss."""

    name: str = DEFAULT
    budget: float | None = None
    max_open_orders: int | None = None
    max_daily_loss: float | None = None  #: realised + unrealised PnL of the strategy since the day's start

    @classmethod
    def parse(cls, src: str, name: str, data: Any, base: "StrategyLimits | None" = None) -> "StrategyLimits":
        where = f"strategies.{name}"
        merged = {**(asdict(base) if base else {}), **_check_keys(src, where, data, cls)}
        return cls(name=name, budget=_number(src, f"{where}.budget", merged.get("budget")),
                   max_open_orders=_number(src, f"{where}.max_open_orders", merged.get("max_open_orders"),
                                           integer=True),
                   max_daily_loss=_number(src, f"{where}.max_daily_loss", merged.get("max_daily_loss")))


@dataclass(frozen=True)
class GlobalLimits:
    """Book-wide limits (None = no limit)."""

    max_order_notional: float | None = None
    max_gross_exposure: float | None = None  #: sum of |position| x mark over symbols
    max_net_exposure: float | None = None  #: |sum of position x mark|
    max_open_orders: int | None = None
    submit_rate: float | None = None  #: orders per second (token bucket refill rate)
    submit_burst: int | None = None  #: bucket size (default: max(1, submit_rate))
    cancel_rate: float | None = None
    cancel_burst: int | None = None
    max_daily_loss: float | None = None  #: book PnL since the day's start, quote currency
    max_drawdown: float | None = None  #: fraction of the day's peak equity
    on_daily_loss: str = "HALTED"
    on_drawdown: str = "REDUCING"

    @classmethod
    def parse(cls, src: str, data: Any) -> "GlobalLimits":
        raw = _check_keys(src, "global", data, cls)
        out: dict[str, Any] = {}
        for name in ("max_order_notional", "max_gross_exposure", "max_net_exposure", "submit_rate", "cancel_rate",
                     "max_daily_loss"):
            out[name] = _number(src, f"global.{name}", raw.get(name))
        for name in ("max_open_orders", "submit_burst", "cancel_burst"):
            out[name] = _number(src, f"global.{name}", raw.get(name), integer=True)
        out["max_drawdown"] = _number(src, "global.max_drawdown", raw.get("max_drawdown"), fraction=True)
        for kind in ("submit", "cancel"):
            if out[f"{kind}_burst"] is not None and out[f"{kind}_rate"] is None:
                raise RiskConfigError(f"{src}: global.{kind}_burst needs global.{kind}_rate, got "
                                      f"{kind}_rate={raw.get(f'{kind}_rate')!r}")
            if out[f"{kind}_rate"] is not None and out[f"{kind}_burst"] is None:
                out[f"{kind}_burst"] = max(1, int(out[f"{kind}_rate"]))
        for name, default in (("on_daily_loss", "HALTED"), ("on_drawdown", "REDUCING")):
            value = raw.get(name, default)
            if value not in BREACH_STATES:
                raise RiskConfigError(f"{src}: global.{name} must be one of {BREACH_STATES}, got {value!r}")
            out[name] = value
        return cls(**out)


@dataclass(frozen=True)
class PortfolioSettings:
    """The book the engine keeps: starting cash (quote currency) and the VaR window (bars)."""

    cash: float = 100_000.0
    var_window: int = 250

    @classmethod
    def parse(cls, src: str, data: Any) -> "PortfolioSettings":
        raw = _check_keys(src, "portfolio", data, cls)
        cash = _number(src, "portfolio.cash", raw.get("cash", cls.cash))
        window = _number(src, "portfolio.var_window", raw.get("var_window", cls.var_window), integer=True)
        if window < 20:
            raise RiskConfigError(f"{src}: portfolio.var_window must be >= 20 bars, got {window!r}")
        return cls(cash=cash, var_window=window)


@dataclass(frozen=True)
class RiskConfig:
    """All limits: global, per instrument (``default`` for the rest), per strategy, and the book."""

    limits: GlobalLimits = field(default_factory=GlobalLimits)
    instruments: dict[str, InstrumentLimits] = field(default_factory=dict)
    strategies: dict[str, StrategyLimits] = field(default_factory=dict)
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)
    source: str = "risk config"  #: where it was read from (named in errors)
    digest: str = ""  #: SHA-256 of the file text (recorded in the audit log on reload)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "risk config", digest: str = "") -> "RiskConfig":
        """Validate a parsed ``risk.yml`` document."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise RiskConfigError(f"{source}: the document must be a mapping, got {data!r}")
        unknown = sorted(set(map(str, data)) - {"global", "instruments", "strategies", "portfolio", "version"})
        if unknown:
            raise RiskConfigError(f"{source}: {unknown[0]} is not a known section "
                                  f"(known: global, instruments, strategies, portfolio), got {data[unknown[0]]!r}")
        src = source
        inst_raw = data.get("instruments") or {}
        strat_raw = data.get("strategies") or {}
        for where, raw in (("instruments", inst_raw), ("strategies", strat_raw)):
            if not isinstance(raw, Mapping):
                raise RiskConfigError(f"{src}: {where} must be a mapping, got {raw!r}")
        base_i = InstrumentLimits.parse(src, DEFAULT, inst_raw.get(DEFAULT))
        instruments = {DEFAULT: base_i}
        instruments.update({str(s): InstrumentLimits.parse(src, str(s), v, base_i)
                            for s, v in inst_raw.items() if s != DEFAULT})
        base_s = StrategyLimits.parse(src, DEFAULT, strat_raw.get(DEFAULT))
        strategies = {DEFAULT: base_s}
        strategies.update({str(s): StrategyLimits.parse(src, str(s), v, base_s)
                           for s, v in strat_raw.items() if s != DEFAULT})
        return cls(limits=GlobalLimits.parse(src, data.get("global")), instruments=instruments,
                   strategies=strategies, portfolio=PortfolioSettings.parse(src, data.get("portfolio")),
                   source=source, digest=digest)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "RiskConfig":
        """Read and validate a ``risk.yml`` (default :func:`default_config_path`)."""
        path = Path(path) if path is not None else default_config_path()
        try:
            text = path.read_text()
        except OSError as exc:
            raise RiskConfigError(f"{path}: cannot read risk config: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RiskConfigError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path), digest=hashlib.sha256(text.encode()).hexdigest())

    def instrument(self, symbol: str) -> InstrumentLimits:
        """The limits of ``symbol`` (the ``default`` entry when it has none of its own)."""
        lim = self.instruments.get(symbol)
        if lim is None:
            lim = self.instruments.get(DEFAULT) or InstrumentLimits()
        return lim

    def strategy(self, name: str) -> StrategyLimits:
        """The limits of strategy ``name`` (the ``default`` entry when it has none of its own)."""
        lim = self.strategies.get(name)
        if lim is None:
            lim = self.strategies.get(DEFAULT) or StrategyLimits()
        return lim

    def to_dict(self) -> dict[str, Any]:
        """The limits as plain data (``spark risk limits``, the audit entry of a reload)."""
        return {"global": asdict(self.limits),
                "instruments": {k: {f: v for f, v in asdict(x).items() if f != "symbol"}
                                for k, x in self.instruments.items()},
                "strategies": {k: {f: v for f, v in asdict(x).items() if f != "name"}
                               for k, x in self.strategies.items()},
                "portfolio": asdict(self.portfolio)}

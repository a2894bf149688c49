"""Sweep specifications: what to sweep, over which space, judged by which objective.

A :class:`SweepSpec` is a plain, JSON-serialisable record (it is stored next to the results
so a finished sweep can be reloaded and re-run). Its ``strategy`` is any way of naming one
(:mod:`spark_research.backtest.registry`): a registry name, ``"pkg.mod:Class"``,
``"path/to/file.py:Class"`` or the class itself, also one defined in a notebook. The stored
spec records the strategy's identity (how it was named and a hash of its code) in
``strategy_id``, so a reloaded sweep says which code produced it. :func:`combinations` turns its space into
a frame of parameter combinations, constraints applied.

Space kinds:

* ``grid``: every combination of each parameter's values (``values`` lists, or the
  strategy's declared ``Param.grid()`` for parameters not given);
* ``random``: ``n_samples`` distinct draws from that grid with ``seed``;
* ``list``: explicit combinations (``combos``: a list of dicts);
* ``tpe``: Optuna's TPE sampler with ``seed`` for ``n_samples`` trials, evaluated in batches
  of ``batch`` (for spaces too large to grid).

Example::

    >>> spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"],
    ...                  values={"fast": [5, 10, 20], "slow": [20, 50]})
    >>> combinations(spec).to_dict("records")
    [{'fast': 5, 'slow': 20}, {'fast': 5, 'slow': 50}, {'fast': 10, 'slow': 20}, {'fast': 10, 'slow': 50}, {'fast': 20, 'slow': 50}]
"""
from __future__ import annotations

import itertools
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from spark_research.backtest import STAT_FIELDS, ParameterError, get_strategy
from spark_research.backtest.registry import StrategyError, StrategyIdentity, identify

SPACES = ("grid", "random", "list", "tpe")
PRIORITIES = ("high", "normal", "low")
CHECKS = ("lookahead", None)


class SpecError(ValueError):
    """A sweep specification field has an invalid value."""


@dataclass
class SweepSpec:
    """One parameter sweep: strategy, symbols, space, objective, costs, who and how urgent."""

    strategy: Any  #: registry name, "pkg.mod:Class", "path/file.py:Class" or a Strategy class
    symbols: list[str]
    space: str = "grid"  #: grid | random | list | tpe
    values: dict[str, list[float]] = field(default_factory=dict)  #: per-parameter values (grid/random/tpe)
    combos: list[dict[str, float]] = field(default_factory=list)  #: explicit combinations (space="list")
    n_samples: int = 100  #: draws for random/tpe
    seed: int = 0
    batch: int = 16  #: TPE trials per batch
    objective: str = "sharpe"  #: any stat of run_backtest's result
    maximize: bool = True
    fees: float = 0.001
    slippage: float = 0.0005
    init_cash: float = 10_000.0
    start: str | None = None  #: first bar (inclusive) when bars come from the store
    end: str | None = None  #: last bar (exclusive)
    step_size: int | None = None  #: combinations per step; None = ~100 ms steps, spread evenly over the workers
    user: str = "default"
    priority: str = "normal"  #: high | normal | low
    name: str = ""
    #: run the lookahead check on a sample of the bars before any step ("lookahead"), or skip it (None)
    check: str | None = "lookahead"
    #: the strategy's identity when the spec was made (:class:`StrategyIdentity` as a dict); filled in
    strategy_id: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.validate()
        if self.strategy_id is None:
            self.strategy_id = strategy_identity(self.strategy)

    @property
    def identity(self) -> StrategyIdentity | None:
        """The recorded :class:`StrategyIdentity` (how the strategy was named, its code hash)."""
        return StrategyIdentity.from_dict(self.strategy_id) if self.strategy_id else None

    @property
    def strategy_name(self) -> str:
        """The strategy's display name (its ``name``), also for a stored spec whose code is not here."""
        if self.strategy_id:
            return str(self.strategy_id.get("name"))
        return get_strategy(self.strategy).name

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first invalid field and its value."""
        try:
            strat = get_strategy(self.strategy)
        except StrategyError as exc:
            raise SpecError(f"strategy: {exc}") from None
        if self.check not in CHECKS:
            raise SpecError(f"check must be one of {CHECKS}, got {self.check!r}")
        if isinstance(self.symbols, str):
            self.symbols = [self.symbols]
        if not self.symbols or not all(isinstance(s, str) and s for s in self.symbols):
            raise SpecError(f"symbols must be a non-empty list of names, got {self.symbols!r}")
        if self.space not in SPACES:
            raise SpecError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.priority not in PRIORITIES:
            raise SpecError(f"priority must be one of {PRIORITIES}, got {self.priority!r}")
        if self.objective not in STAT_FIELDS:
            raise SpecError(f"objective must be one of {STAT_FIELDS}, got {self.objective!r}")
        unknown = sorted(set(self.values) - set(strat.params))
        if unknown:
            raise SpecError(f"values: unknown parameter(s) {unknown} for {strat.name}; declared {sorted(strat.params)}")
        for name, vals in self.values.items():
            if not isinstance(vals, (list, tuple, np.ndarray)) or len(vals) == 0:
                raise SpecError(f"values[{name!r}] must be a non-empty list, got {vals!r}")
            p = strat.params[name]
            bad = [v for v in vals if not (isinstance(v, (int, float, np.integer, np.floating)) and p.low <= v <= p.high)]
            if bad:
                raise SpecError(f"values[{name!r}]: {bad[:5]!r} outside the declared range [{p.low}, {p.high}]")
        if self.space == "list" and not self.combos:
            raise SpecError("combos must list at least one combination when space='list', got []")
        for name, value in (("n_samples", self.n_samples), ("batch", self.batch)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise SpecError(f"{name} must be an integer >= 1, got {value!r}")
        if self.step_size is not None and (not isinstance(self.step_size, (int, np.integer)) or self.step_size < 1):
            raise SpecError(f"step_size must be an integer >= 1 or None, got {self.step_size!r}")
        for name in ("fees", "slippage"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and 0 <= value < 1):
                raise SpecError(f"{name} must be a fraction in [0, 1), got {value!r}")
        if not (isinstance(self.init_cash, (int, float)) and np.isfinite(self.init_cash) and self.init_cash > 0):
            raise SpecError(f"init_cash must be > 0, got {self.init_cash!r}")
        if not isinstance(self.user, str) or not self.user:
            raise SpecError(f"user must be a non-empty string, got {self.user!r}")

    @property
    def param_names(self) -> list[str]:
        """The strategy's declared parameters, in declaration order (recorded ones for a stored spec)."""
        try:
            return list(get_strategy(self.strategy).params)
        except StrategyError:
            if self.strategy_id and "params" in self.strategy_id:
                return list(self.strategy_id["params"])
            raise

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (inverse of :meth:`from_dict`); the strategy as its identity's ``ref``."""
        d = asdict(self)
        if not isinstance(self.strategy, str):
            d["strategy"] = (self.identity or identify(self.strategy)).ref
        d["values"] = {k: [_py(v) for v in vs] for k, vs in self.values.items()}
        d["combos"] = [{k: _py(v) for k, v in c.items()} for c in self.combos]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, resolve: bool = True) -> "SweepSpec":
        """Build from :meth:`to_dict` output (unknown keys raise :class:`SpecError`).

        ``resolve=False`` builds it without finding the strategy (a stored sweep of a
        notebook class, whose code is not in this process, still loads).
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SpecError(f"unknown spec field(s) {unknown}; known: {sorted(names)}")
        if resolve:
            return cls(**d)
        obj = cls.__new__(cls)
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            setattr(obj, f.name, d.get(f.name, default))
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def strategy_identity(strategy: Any) -> dict[str, Any]:
    """What a spec records of its strategy: the :class:`StrategyIdentity` and the declared parameter names."""
    return {**identify(strategy).to_dict(), "params": list(get_strategy(strategy).params)}


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def param_values(spec: SweepSpec) -> dict[str, np.ndarray]:
    """Values of each parameter: the spec's list, else the declared ``Param.grid()``."""
    strat = get_strategy(spec.strategy)
    out = {}
    for name, p in strat.params.items():
        vals = spec.values.get(name)
        arr = np.asarray(vals if vals is not None else p.grid())
        if p.is_int and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        out[name] = arr
    return out


def _valid(strat, combo: dict[str, Any]) -> bool:
    try:
        strat.resolve(combo)
    except ParameterError:
        return False
    return True


def grid(spec: SweepSpec) -> pd.DataFrame:
    """Every valid combination of :func:`param_values` (constraint and ranges applied)."""
    strat = get_strategy(spec.strategy)
    vals = param_values(spec)
    names = list(vals)
    rows = [dict(zip(names, combo)) for combo in itertools.product(*vals.values())]
    rows = [r for r in rows if strat.constraint(r)]
    df = pd.DataFrame(rows, columns=names)
    for n in names:
        df[n] = df[n].astype(vals[n].dtype)
    return df


def combinations(spec: SweepSpec) -> pd.DataFrame:
    """The combinations a ``grid``, ``random`` or ``list`` spec evaluates (``tpe`` asks as it goes).

    Raises :class:`SpecError` if no valid combination remains, or for an explicit
    combination that violates the strategy's ranges or constraint.
    """
    strat = get_strategy(spec.strategy)
    if spec.space == "tpe":
        raise SpecError("space='tpe' draws combinations adaptively; use run_sweep, not combinations()")
    if spec.space == "list":
        rows = []
        for i, c in enumerate(spec.combos):
            try:
                rows.append(strat.resolve(dict(c)))
            except ParameterError as exc:
                raise SpecError(f"combos[{i}] = {c!r}: {exc}") from None
        df = pd.DataFrame(rows, columns=list(strat.params))
    else:
        df = grid(spec)
        if spec.space == "random" and len(df) > spec.n_samples:
            rng = np.random.default_rng(spec.seed)
            pick = np.sort(rng.choice(len(df), size=spec.n_samples, replace=False))
            df = df.iloc[pick]
    if df.empty:
        raise SpecError(f"no valid combination in the space of {spec.strategy_name}: values={spec.values!r}")
    return df.reset_index(drop=True)


def objective_sign(spec: SweepSpec) -> float:
    """+1 when larger objective is better, -1 otherwise."""
    return 1.0 if spec.maximize else -1.0

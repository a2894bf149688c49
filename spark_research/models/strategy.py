"""``ModelStrategy``: a strategy whose signals are a model's predictions crossing thresholds.

A model predicts P(up) at each bar from features known at that bar's close. The strategy
enters long when P(up) >= ``entry`` and exits when P(up) <= ``exit``; both thresholds are
:class:`~spark_research.backtest.strategy.Param`\\ s, so ``run_backtest`` runs it, the
optimizer sweeps them and ``check_lookahead`` checks it (features, predictions and signals
are compared on truncated bars; the prediction is the ``p_up`` indicator).

:func:`strategy_for` makes the strategy class of one model: a registered id (also reachable
as ``"model:ID"`` through the strategy resolver, on Dask workers too) or an in-memory
:class:`~spark_research.models.registry.LoadedModel` / :class:`~spark_research.models.training.TrainedModel`.

Example::

    >>> from spark_research.backtest import run_backtest
    >>> from spark_research.data import generate_bars
    >>> from spark_research.models.training import TrainSpec, train_model
    >>> bars = generate_bars("BTCUSDT", n=3_000, seed=1)
    >>> Strat = strategy_for(train_model(bars.iloc[:2_000], TrainSpec(n_splits=3)))
    >>> Strat.name.startswith("model:"), sorted(Strat.params)
    (True, ['entry', 'exit'])
    >>> run_backtest(Strat, bars.iloc[2_000:], {"entry": 0.55, "exit": 0.45}).stats["trades"] >= 0
    True
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from spark_research.backtest.strategy import Param, Signals, Strategy
from spark_research.features.registry import FLOW_FIELDS
from spark_research.models import inputs
from spark_research.models.errors import ModelError

#: Prefix naming a registered model's strategy in the resolver: ``"model:<id>"``.
SCHEME = "model"


class ModelStrategy(Strategy):
    """Long while a model's P(up) is high: enter at P(up) >= ``entry``, exit at P(up) <= ``exit``.

    Use :func:`strategy_for` (or the resolver name ``"model:ID"``) to get the class of a model.
    """

    name = "model"
    entry = Param(0.55, low=0.5, high=0.95, step=0.05)
    exit = Param(0.45, low=0.05, high=0.5, step=0.05)
    #: the registered model's id ("" for the unbound base class)
    model_id: ClassVar[str] = ""
    _model: ClassVar[Any] = None  # a LoadedModel when bound in memory; loaded from the registry otherwise
    _cache: ClassVar["OrderedDict[str, pd.DataFrame]"]
    _tail: ClassVar["_LiveTail | None"] = None

    @classmethod
    def constraint(cls, params: dict[str, Any]) -> bool:
        """exit <= entry"""
        return params["exit"] <= params["entry"]

    @classmethod
    def model(cls) -> Any:
        """The :class:`~spark_research.models.registry.LoadedModel` behind this strategy."""
        if cls._model is None:
            if not cls.model_id:
                raise ModelError("ModelStrategy is not bound to a model: use strategy_for(model_id) or 'model:ID'")
            from spark_research.models.registry import default_registry

            cls._model = default_registry().load(cls.model_id)
        return cls._model

    @classmethod
    def predictions(cls, bars: pd.DataFrame) -> pd.DataFrame:
        """Features and ``p_up`` per bar (NaN while the features warm up).

        Cached per bars' content; a frame that is the previous one plus one new bar (the
        paper/live session's bars so far) is extended through the features' live path, one
        row, instead of recomputed: the same values, at the cost of one bar.
        """
        with _LOCK:
            tail = cls._tail
            if tail is not None and tail.extends(bars):
                return tail.push(bars)
        key = _fingerprint(bars)
        with _LOCK:
            hit = cls._cache.get(key)
            if hit is not None:
                cls._cache.move_to_end(key)
                return hit
        model = cls.model()
        X = inputs.compute_features(bars, model.features)
        ok = X.notna().all(axis=1).to_numpy()
        p = np.full(len(X), np.nan)
        if ok.any():
            p[ok] = model.predict_proba(X[ok])
        out = X.assign(p_up=p)
        with _LOCK:
            cls._cache[key] = out
            while len(cls._cache) > 8:  # sweeps reuse one frame; lookahead cuts are many prefixes
                cls._cache.popitem(last=False)
            cls._tail = _LiveTail(model, bars, out)
        return out

    def indicators(self, bars: pd.DataFrame, entry: float, exit: float) -> dict[str, pd.Series]:
        pred = self.predictions(bars)
        return {c: pred[c] for c in pred.columns}

    def signals(self, bars: pd.DataFrame, entry: float, exit: float) -> Signals:
        p = self.predictions(bars)["p_up"]
        return Signals(entries=(p >= entry).astype(bool), exits=(p <= exit).astype(bool))


ModelStrategy._cache = OrderedDict()
_LOCK = threading.RLock()
_CLASSES: dict[str, type[ModelStrategy]] = {}


class _LiveTail:
    """The predictions of the last frame seen, extended one bar at a time through the live features."""

    _FIELDS = ("open", "high", "low", "close", "volume")

    def __init__(self, model: Any, bars: pd.DataFrame, out: pd.DataFrame) -> None:
        self.model, self.columns = model, list(out.columns)
        self.values = np.array(out.to_numpy(dtype="float64"))
        self.n = len(bars)
        self.index = bars.index
        self.last = bars[list(self._FIELDS)].iloc[-1].to_numpy(dtype="float64") if len(bars) else None
        self.live: Any = None
        self._bars = bars

    def extends(self, bars: pd.DataFrame) -> bool:
        """``bars`` is the frame this tail holds plus exactly one new bar (checked at the seam: first bar,
        last bar's time and prices)."""
        if len(bars) != self.n + 1 or self.n == 0 or self.last is None:
            return False
        return bool(bars.index[0] == self.index[0] and bars.index[-2] == self.index[-1]
                    and np.array_equal(bars[list(self._FIELDS)].iloc[-2].to_numpy(dtype="float64"), self.last))

    def push(self, bars: pd.DataFrame) -> pd.DataFrame:
        if self.live is None:  # first extension: warm the live path with the frame held so far
            self.live = inputs.live_features(self.model.features, self._bars)
            self._bars = None
        bar = {"timestamp": bars.index[-1], **{f: bars[f].iat[-1] for f in self._FIELDS}}
        # a model on trade-flow features gets the bar's flow values (bars carry them as columns)
        bar.update({f: bars[f].iat[-1] for f in FLOW_FIELDS if f in bars.columns})
        row = np.array(self.live.update(bar), dtype="float64")
        p = self.model.predict_proba(row.reshape(1, -1))[0] if np.isfinite(row).all() else np.nan
        if self.n == len(self.values):  # grow by doubling: amortised O(1) per bar
            self.values = np.vstack([self.values, np.full_like(self.values, np.nan)])
        self.values[self.n, :-1], self.values[self.n, -1] = row, p
        self.n += 1
        self.index = bars.index
        self.last = np.array([bar[f] for f in self._FIELDS], dtype="float64")
        return pd.DataFrame(self.values[:self.n], index=bars.index, columns=self.columns, copy=False)


def _fingerprint(bars: pd.DataFrame) -> str:
    h = hashlib.sha256(bars.index.asi8.tobytes() if isinstance(bars.index, pd.DatetimeIndex) else b"")
    for col in ("open", "high", "low", "close", "volume", *FLOW_FIELDS):
        if col in bars.columns:
            h.update(col.encode())
            h.update(np.ascontiguousarray(bars[col].to_numpy(dtype="float64")).tobytes())
    return h.hexdigest()


def _bind(model_id: str, model: Any = None) -> type[ModelStrategy]:
    attrs = {"name": f"{SCHEME}:{model_id}", "model_id": model_id, "_model": model, "_cache": OrderedDict(), "_tail": None,
             "__module__": __name__, "__doc__": f"{ModelStrategy.__doc__.splitlines()[0]} (model {model_id})",
             "__strategy_ref__": f"{SCHEME}:{model_id}" if model is None else None}
    return type(f"ModelStrategy_{model_id}", (ModelStrategy,), attrs)


def strategy_for(model: Any) -> type[ModelStrategy]:
    """The strategy class of ``model``: a registered id (``"abc123..."`` or ``"model:abc123..."``),
    a :class:`LoadedModel` or a :class:`TrainedModel` (in memory, not registered).

    The same id gives the same class in a process, so resolving ``"model:ID"`` twice is cheap.
    """
    from spark_research.models.registry import LoadedModel
    from spark_research.models.training import TrainedModel

    if isinstance(model, TrainedModel):
        model = LoadedModel.of(model)
    if isinstance(model, LoadedModel):
        return _bind(model.model_id, model)
    if not isinstance(model, str) or not model.strip():
        raise ModelError(f"model must be a registered id, a LoadedModel or a TrainedModel, got {model!r}")
    model_id = model.strip().removeprefix(f"{SCHEME}:")
    with _LOCK:
        cls = _CLASSES.get(model_id)
        if cls is None:
            from spark_research.models.registry import default_registry

            default_registry().card(model_id)  # an unknown id fails here, naming close matches
            cls = _CLASSES[model_id] = _bind(model_id)
        return cls


__all__ = ["SCHEME", "ModelStrategy", "strategy_for"]

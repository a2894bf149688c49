"""``ModelMonitor``: one live bar in, features (the features' live path), a prediction, drift metrics out.

Per bar it computes the bar's features with the same code as the store, predicts P(up),
observes ``model_inference_latency_ms`` (bar in to prediction out) and counts
``model_predictions_total``. Over a rolling window of the last ``window`` predictions it
keeps bin counts on the bins fixed at training (updated in O(features) per bar), so
``feature_drift_psi{model,feature}`` and ``model_prediction_drift{model}`` are current
after every bar once the window holds ``min_samples`` predictions; :meth:`ModelMonitor.drift` adds the KS statistics (and sets
``feature_drift_ks``). When the PSI of a watched feature (``watch``, default all) crosses
``psi_threshold`` with at least ``min_samples`` in the window, ``on_drift`` is called once, e.g.
to close the model's gate (:func:`close_gate_on_drift`). Watch stationary features: calendar
encodings and persistent ones (volatility) drift over any window shorter than their cycle.

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.models.training import TrainSpec, train_model
    >>> bars = generate_bars("BTCUSDT", n=2_600, seed=1)
    >>> mon = ModelMonitor(train_model(bars.iloc[:2_000], TrainSpec(n_splits=3)), history=bars.iloc[1_900:2_000],
    ...                    window=300, min_samples=50)
    >>> preds = [mon.update(bar) for bar in bars.iloc[2_000:].to_dict("records")]
    >>> len(preds), 0 < preds[-1] < 1, mon.samples
    (600, True, 300)
    >>> sorted(mon.drift().columns)
    ['ks', 'n', 'psi']
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from spark_research import metrics
from spark_research.models import inputs
from spark_research.models.drift import PSI_EPS, drift_table
from spark_research.models.errors import ModelError

DriftCallback = Callable[["ModelMonitor", pd.DataFrame], Any]


def _fast_proba(estimator: Any) -> Callable[[np.ndarray], float]:
    """P(up) of one feature row, on the cheapest path the estimator has (LightGBM's booster directly)."""
    booster = getattr(estimator, "booster_", None)
    if booster is not None and getattr(estimator, "n_classes_", 2) == 2:
        return lambda row: float(booster.predict(row.reshape(1, -1), num_threads=1)[0])  # no OpenMP pool per bar
    return lambda row: float(estimator.predict_proba(row.reshape(1, -1))[0, 1])


class _RollingBins:
    """Bin counts of the last ``window`` rows on each column's fixed edges, updated in one vector op per row.

    Columns with fewer edges are padded with +inf edges (bins nobody falls in, expected share 0:
    they add exactly 0 to the PSI).
    """

    def __init__(self, edges: list[np.ndarray], expected: list[np.ndarray], window: int) -> None:
        width = max(len(e) for e in edges) if edges else 0
        self.edges = np.full((len(edges), width), np.inf)
        self.expected = np.zeros((len(edges), width + 1))
        for j, (e, x) in enumerate(zip(edges, expected)):
            self.edges[j, :len(e)] = e
            self.expected[j, :len(x)] = x
        self.expected = np.maximum(self.expected, PSI_EPS)
        self.counts = np.zeros((len(edges), width + 1), dtype=np.int64)
        self.ring = np.zeros((window, len(edges)), dtype=np.int64)
        self.cols = np.arange(len(edges))
        self.window, self.n, self.pos = window, 0, 0

    def push(self, row: np.ndarray) -> None:
        if self.n == self.window:
            np.subtract.at(self.counts, (self.cols, self.ring[self.pos]), 1)
        else:
            self.n += 1
        bins = (self.edges <= row[:, None]).sum(axis=1)  # == searchsorted(edges, x, side="right")
        self.ring[self.pos] = bins
        self.counts[self.cols, bins] += 1
        self.pos = (self.pos + 1) % self.window

    def psi(self) -> np.ndarray:
        a = np.maximum(self.counts / max(1, self.n), PSI_EPS)
        return np.sum((a - self.expected) * np.log(a / self.expected), axis=1)


class ModelMonitor:
    """Live predictions and drift of one model; see the module docstring.

    ``model``: a registered id, a :class:`~spark_research.models.registry.LoadedModel` or a
    :class:`~spark_research.models.training.TrainedModel`. ``history``: recent bars to warm the
    features with (without it, the first ``lookback`` bars give no prediction).
    """

    def __init__(self, model: Any, *, window: int = 500, min_samples: int = 100, psi_threshold: float = 0.25,
                 history: pd.DataFrame | None = None, on_drift: DriftCallback | None = None,
                 watch: Sequence[str] | None = None, registry: Any = None) -> None:
        from spark_research.models.registry import LoadedModel
        from spark_research.models.training import TrainedModel

        if not isinstance(window, (int, np.integer)) or window < 2:
            raise ModelError(f"window must be an integer >= 2 bars, got {window!r}")
        if not isinstance(min_samples, (int, np.integer)) or not 1 <= min_samples <= window:
            raise ModelError(f"min_samples must be an integer in [1, window={window}], got {min_samples!r}")
        if not psi_threshold > 0:
            raise ModelError(f"psi_threshold must be > 0, got {psi_threshold!r}")
        if isinstance(model, TrainedModel):
            model = LoadedModel.of(model)
        elif isinstance(model, str):
            from spark_research.models.registry import default_registry

            model = (registry or default_registry()).load(model.removeprefix("model:"))
        if not isinstance(model, LoadedModel):
            raise ModelError(f"model must be a registered id, a LoadedModel or a TrainedModel, got {model!r}")
        self.model = model
        self.model_id = model.model_id
        card = model.card
        self.columns = list(card.columns)
        self.reference = card.drift_reference
        self.window, self.min_samples, self.psi_threshold = int(window), int(min_samples), float(psi_threshold)
        self.on_drift = on_drift
        self.watch = list(self.columns if watch is None else watch)
        unknown = [c for c in self.watch if c not in self.columns]
        if unknown:
            raise ModelError(f"watch: column(s) {unknown} are not inputs of model {self.model_id} ({self.columns})")
        self._watch = np.isin(self.columns, self.watch)
        self._live = inputs.live_features(card.features, history)
        live_cols = list(getattr(self._live, "columns", self.columns))
        if live_cols != self.columns:
            raise ModelError(f"live features give columns {live_cols}, the model was trained on {self.columns}")
        self._proba = _fast_proba(model.estimator)
        ref = self.reference
        self._feat_bins = _RollingBins([np.asarray(ref.features[c].edges) for c in self.columns],
                                       [np.asarray(ref.features[c].expected) for c in self.columns], self.window)
        self._pred_bins = _RollingBins([np.asarray(ref.prediction.edges)], [np.asarray(ref.prediction.expected)],
                                       self.window)
        self._rows: deque[np.ndarray] = deque(maxlen=self.window)
        self._preds: deque[float] = deque(maxlen=self.window)
        self._times: deque[pd.Timestamp] = deque(maxlen=self.window)
        self._latency: deque[float] = deque(maxlen=self.window)
        self._psi = np.full(len(self.columns), np.nan)
        self.prediction_psi = float("nan")
        self.bars = 0  #: bars fed
        self.predictions = 0  #: predictions made (bars past the features' warm-up)
        self.drifted = False
        label = self.model_id
        self._m_latency = metrics.MODEL_INFERENCE_LATENCY_MS.labels(model=label)
        self._m_predictions = metrics.MODEL_PREDICTIONS.labels(model=label)  # exposed at 0 before the first one
        self._m_psi = [metrics.FEATURE_DRIFT_PSI.labels(model=label, feature=c) for c in self.columns]
        self._m_pred_drift = metrics.MODEL_PREDICTION_DRIFT.labels(model=label)

    @property
    def psi(self) -> pd.Series:
        """PSI of each feature over the window vs training (NaN before the first prediction)."""
        return pd.Series(self._psi, index=self.columns, name="psi")

    @property
    def samples(self) -> int:
        """Predictions in the drift window."""
        return self._feat_bins.n

    def update(self, bar: Mapping[str, Any] | pd.Series) -> float:
        """Take one closed bar (``timestamp`` + OHLCV); return P(up), NaN while the features warm up."""
        t0 = time.perf_counter()
        self.bars += 1
        row = self._live.update(bar)
        if not np.isfinite(row).all():
            return float("nan")
        p = self._proba(row)
        latency_ms = (time.perf_counter() - t0) * 1e3
        self._m_latency.observe(latency_ms)
        self._m_predictions.inc()
        self.predictions += 1
        self._rows.append(row.copy())
        self._preds.append(p)
        self._times.append(pd.Timestamp(bar["timestamp"]))
        self._latency.append(latency_ms)
        self._feat_bins.push(row)
        self._pred_bins.push(np.array([p]))
        self._refresh()
        return p

    def _refresh(self) -> None:
        psi = self._psi = self._feat_bins.psi()
        self.prediction_psi = float(self._pred_bins.psi()[0])
        if self.samples < self.min_samples:
            return  # a PSI of a handful of bars is noise: not exported, no drift decision
        for gauge, v in zip(self._m_psi, psi):
            gauge.set(v)
        self._m_pred_drift.set(self.prediction_psi)
        drifted = bool((psi[self._watch] > self.psi_threshold).any())
        if drifted and not self.drifted and self.on_drift is not None:
            self.drifted = True
            self.on_drift(self, self.drift())
        self.drifted = drifted

    def drift(self) -> pd.DataFrame:
        """PSI, KS and sample count per feature (and ``prediction``) over the window; sets ``feature_drift_ks``."""
        live = pd.DataFrame(list(self._rows), columns=self.columns)
        table = drift_table(self.reference, live, np.asarray(self._preds))
        for c in self.columns:
            metrics.FEATURE_DRIFT_KS.labels(model=self.model_id, feature=c).set(table.loc[c, "ks"])
        return table

    def history(self) -> pd.DataFrame:
        """The window's bars: time, P(up), latency (ms) and features."""
        frame = pd.DataFrame(list(self._rows), columns=self.columns)
        frame.insert(0, "latency_ms", list(self._latency))
        frame.insert(0, "p_up", list(self._preds))
        return frame.set_axis(pd.DatetimeIndex(list(self._times), name="timestamp"))

    def latency_quantile(self, q: float = 0.95) -> float:
        """A quantile of the window's bar-to-prediction latency in ms (NaN before the first prediction)."""
        return float(np.quantile(np.asarray(self._latency), q)) if self._latency else float("nan")


def close_gate_on_drift(gate: Any, actor: str = "model-monitor") -> DriftCallback:
    """An ``on_drift`` callback closing ``gate`` (a :class:`spark_research.gates.gate.Gate`, or anything with
    ``close(actor, reason)``), with the drifted features and their PSI as the reason."""

    def close(monitor: ModelMonitor, table: pd.DataFrame) -> None:
        psi = monitor.psi[monitor.watch]
        over = psi[psi > monitor.psi_threshold].sort_values(ascending=False)
        detail = ", ".join(f"{k} {v:.2f}" for k, v in over.items())
        gate.close(actor, f"model {monitor.model_id}: feature drift PSI > {monitor.psi_threshold:g} ({detail})")

    return close


__all__ = ["ModelMonitor", "close_gate_on_drift"]

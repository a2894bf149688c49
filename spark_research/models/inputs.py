"""The one seam between models and the features capability: features, labels and purged folds.

Everything a model needs from ``spark_research.features`` goes through the functions below
(:func:`compute_features`, :func:`feature_columns`, :func:`feature_hashes`,
:func:`feature_lookback`, :func:`store_features`, :func:`live_features`, the label functions
and :func:`purged_splits`), so the model code never depends on how features are registered,
stored or updated live.

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.backtest.engine import to_frame
    >>> bars = to_frame(generate_bars("BTCUSDT", n=300, seed=1))
    >>> X = compute_features(bars, ["logret_1", "rv_cc_20"])
    >>> list(X.columns), X.index.equals(bars.index), bool(X["rv_cc_20"].iloc[25:].notna().all())
    (['logret_1', 'rv_cc_20'], True, True)
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from spark_research.models.errors import ModelError

#: Features a model uses when none are named: single-symbol, short warm-up (< 60 bars).
DEFAULT_FEATURES: tuple[str, ...] = ("logret_1", "logret_5", "logret_20", "rv_cc_20", "rv_parkinson_20", "rsi_14",
                                     "bb_pos_20", "volume_z_50", "time_of_day")


def _features(names: Sequence[str]) -> list[Any]:
    from spark_research.features.registry import FeatureError, resolve_features

    names = list(names)
    if not names:
        raise ModelError("features: name at least one feature, got []")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelError(f"features: duplicate name(s) {dup}")
    try:
        feats = resolve_features(names)
    except (FeatureError, LookupError) as exc:
        raise ModelError(f"features: {exc}") from exc
    cross = [f.name for f in feats if f.universe]
    if cross:
        raise ModelError(f"features: cross-asset feature(s) {cross} need a universe; models take single-symbol features")
    return feats


def compute_features(bars: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Point-in-time feature columns of ``bars``, indexed like ``bars`` (NaN while warming up)."""
    from spark_research.features.registry import compute_features as compute

    out = compute(bars, _features(names))
    index = bars.index if isinstance(bars.index, pd.DatetimeIndex) else pd.DatetimeIndex(bars["timestamp"])
    return out.set_axis(index)


def feature_columns(names: Sequence[str]) -> list[str]:
    """Output columns of the named features (a multi-column feature gives several)."""
    return [c for f in _features(names) for c in f.columns]


def feature_hashes(names: Sequence[str]) -> dict[str, str]:
    """``{name: code hash}``: a changed feature definition changes its hash (and a model's id)."""
    return {f.name: f.code_hash for f in _features(names)}


def feature_lookback(names: Sequence[str]) -> int:
    """Bars of history, the current bar included, the features need for one value."""
    return max(f.lookback for f in _features(names)) + 1


def store_features(symbol: str, names: Sequence[str], root: Any = None) -> pd.DataFrame:
    """The named features of ``symbol`` from the feature store (built or updated incrementally first)."""
    from spark_research.features.store import FeatureStore

    store = FeatureStore(root)
    feats = _features(names)
    store.build(symbol, feats)
    return store.load(symbol, feats)


def live_features(names: Sequence[str], history: pd.DataFrame | None = None) -> Any:
    """The features' live path: ``update(bar) -> np.ndarray`` (the row of the new bar, in column order,
    identical to the batch values; the array is reused, copy it to keep it), warmed with ``history``."""
    from spark_research.features.live import LiveFeatures

    live = LiveFeatures(_features(names))
    if history is not None and len(history):
        live.warm(history)
    return live


def _as_binary(frame: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(y, t1)`` on the bars' index: 1 for an up label, 0 otherwise, NaN/NaT where there is no label."""
    y = (labels["label"] > 0).astype("float64").reindex(frame.index).rename("y")
    t1 = pd.Series(pd.DatetimeIndex(labels["t1"]), index=labels.index).reindex(frame.index).rename("t1")
    return y, t1


def fixed_horizon_labels(bars: pd.DataFrame, horizon: int, threshold: float = 0.0) -> tuple[pd.Series, pd.Series]:
    """``(y, t1)``: 1 when the return over the next ``horizon`` bars is above ``threshold``, else 0;
    ``t1`` is the bar that resolves the label. The last ``horizon`` bars have no label (NaN).

    Example::

        >>> idx = pd.date_range("2024", periods=5, freq="min")
        >>> y, t1 = fixed_horizon_labels(pd.DataFrame({"close": [100.0, 101, 100, 102, 99]}, index=idx), 2)
        >>> y.tolist()[:3], bool(np.isnan(y.iloc[-1])), t1.iloc[0] == idx[2]
        ([0.0, 1.0, 0.0], True, True)
    """
    from spark_research.features.labels import fixed_horizon_labels as labels

    try:
        return _as_binary(bars, labels(bars["close"], horizon, threshold))
    except ValueError as exc:
        raise ModelError(str(exc)) from exc


def triple_barrier_labels(bars: pd.DataFrame, max_bars: int, barrier: float = 1.0) -> tuple[pd.Series, pd.Series]:
    """``(y, t1)`` of triple-barrier labels: 1 when the profit-take (``barrier`` x rolling volatility)
    is touched first or the vertical barrier ``max_bars`` bars later ends up; 0 otherwise."""
    from spark_research.features.labels import triple_barrier_labels as labels

    try:
        return _as_binary(bars, labels(bars["close"], pt=barrier, sl=barrier, max_bars=max_bars))
    except ValueError as exc:
        raise ModelError(str(exc)) from exc


def purged_splits(X: pd.DataFrame, t1: pd.Series, n_splits: int = 5,
                  embargo: float = 0.01) -> list[tuple[np.ndarray, np.ndarray]]:
    """Purged K-fold with embargo over ``X`` (rows in time order, label ends ``t1``): ``[(train, test)]`` positions."""
    from spark_research.features.cv import PurgedKFold

    try:
        return list(PurgedKFold(n_splits, embargo, t1=t1.to_numpy()).split(X))
    except ValueError as exc:
        raise ModelError(str(exc)) from exc


def seeded(estimator: Any, seed: int) -> Any:
    """A clone of ``estimator`` with every seed and thread count fixed (identical predictions on any worker)."""
    from spark_research.features.training import seeded as _seeded

    return _seeded(estimator, seed, n_threads=1)


def fold_predictions(estimator: Any, X: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
                     seed: int, client: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(test_positions, P(up) of those rows)]`` of ``estimator`` fitted on each split's training rows,
    folds side by side on Dask when ``client`` is given (the features capability's fold trainer)."""
    from spark_research.features.training import train_folds

    class _Given:  # the splits as a scikit-learn splitter
        def split(self, X: Any, y: Any = None, groups: Any = None) -> Any:
            return iter(splits)

    res = train_folds(estimator, X, y, _Given(), scoring="roc_auc", predict="proba", seed=seed, client=client)
    return [(test, fold.predictions) for test, fold in zip(res.test_indices, res.folds)]


__all__ = ["DEFAULT_FEATURES", "compute_features", "feature_columns", "feature_hashes", "feature_lookback",
           "store_features", "live_features",
           "fixed_horizon_labels", "triple_barrier_labels", "purged_splits", "seeded", "fold_predictions"]

"""Why a model predicts what it does: permutation importance (MDA) on purged folds, and SHAP values.

* :func:`mda_importance` — mean decrease accuracy (López de Prado, ch. 8): for each purged
  K-fold split, fit on the training part, score the test part, then score it again with one
  feature's column shuffled; the importance is the mean loss of score over folds and repeats
  (out of sample, so a feature the model merely memorised scores ~0). Scores are negative
  log loss by default (``scoring="accuracy"`` also works).
* :func:`shap_values` — SHAP values of P(up) in log-odds (LightGBM: ``shap.TreeExplainer``;
  other estimators: ``shap.LinearExplainer`` for the logistic pipeline), one column per feature.
* :func:`plot_importance`, :func:`plot_shap_summary` — matplotlib figures for notebooks and reports
  (HoloViews versions live in :mod:`spark_research.views.model_monitor`).

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.models.training import TrainSpec, train_model
    >>> tm = train_model(generate_bars("BTCUSDT", n=2_000, seed=1), TrainSpec(n_splits=3))
    >>> imp = mda_importance(tm, generate_bars("BTCUSDT", n=2_000, seed=1), n_repeats=1)
    >>> list(imp.columns), len(imp) == len(tm.columns)
    (['importance', 'std'], True)
    >>> sv = shap_values(tm, generate_bars("BTCUSDT", n=2_000, seed=1), max_rows=200)
    >>> sv.shape == (200, len(tm.columns))
    True
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.models import inputs
from spark_research.models.errors import ModelError
from spark_research.models.training import TrainedModel, build_dataset, make_estimator, proba_up

SCORINGS = ("neg_log_loss", "accuracy")


def _score(y: np.ndarray, p: np.ndarray, scoring: str) -> float:
    if scoring == "accuracy":
        return float(np.mean((p >= 0.5) == y))
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mda_importance(model: TrainedModel, bars: pd.DataFrame | Mapping[str, pd.DataFrame], *,
                   scoring: str = "neg_log_loss", n_repeats: int = 3, seed: int = 0) -> pd.DataFrame:
    """Permutation importance per feature column on ``model``'s purged folds of ``bars``: ``importance`` (mean
    score loss when the column is shuffled, out of sample) and ``std`` over folds x repeats, largest first."""
    if scoring not in SCORINGS:
        raise ModelError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ModelError(f"n_repeats must be a positive integer, got {n_repeats!r}")
    spec = model.spec
    X, y, t1 = build_dataset(bars, spec)
    Xv, yv = X.to_numpy(), y.to_numpy()
    rng = np.random.default_rng(seed)
    losses: dict[str, list[float]] = {c: [] for c in X.columns}
    for train, test in inputs.purged_splits(X, t1, spec.n_splits, spec.embargo):
        est = make_estimator(spec).fit(Xv[train], yv[train])
        Xt = Xv[test].copy()
        base = _score(yv[test], proba_up(est, Xt), scoring)
        for j, col in enumerate(X.columns):
            keep = Xt[:, j].copy()
            for _ in range(n_repeats):
                Xt[:, j] = rng.permutation(keep)
                losses[col].append(base - _score(yv[test], proba_up(est, Xt), scoring))
            Xt[:, j] = keep
    out = pd.DataFrame({"importance": {c: float(np.mean(v)) for c, v in losses.items()},
                        "std": {c: float(np.std(v)) for c, v in losses.items()}})
    return out.rename_axis("feature").sort_values("importance", ascending=False)


def shap_values(model: Any, bars: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None, *,
                X: pd.DataFrame | None = None, max_rows: int = 2_000) -> pd.DataFrame:
    """SHAP values (log-odds of P(up)) of the last ``max_rows`` samples of ``bars`` (or of ``X``), one column per feature.

    ``model``: a :class:`TrainedModel` or :class:`~spark_research.models.registry.LoadedModel`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # shap's colormaps, on import
        import shap

    columns = list(model.columns if isinstance(model, TrainedModel) else model.card.columns)
    if X is None:
        if bars is None:
            raise ModelError("shap_values: pass bars or X")
        spec = model.spec if isinstance(model, TrainedModel) else model.card.train_spec
        X = build_dataset(bars, spec)[0]
    X = X[columns].iloc[-max_rows:]
    est = model.estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap notes its LightGBM output format changed
        if hasattr(est, "booster_"):
            values = shap.TreeExplainer(est).shap_values(X.to_numpy())
        else:
            scale, clf = est[:-1], est[-1]
            Z = scale.transform(X.to_numpy())
            values = shap.LinearExplainer(clf, Z).shap_values(Z)
    if isinstance(values, list):  # one matrix per class
        values = values[1]
    values = np.asarray(values)
    if values.ndim == 3:  # (rows, features, classes)
        values = values[..., 1]
    return pd.DataFrame(values, index=X.index, columns=columns)


def plot_importance(importance: pd.DataFrame, ax: Any = None, title: str = "Permutation importance (MDA)") -> Any:
    """Horizontal bars of :func:`mda_importance` with their std as error bars; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(importance) + 1.2))
    else:
        fig = ax.figure
    imp = importance.iloc[::-1]
    ax.barh(imp.index.astype(str), imp["importance"], xerr=imp["std"], color="#4c78a8")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("score loss when shuffled (out of sample)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_shap_summary(values: pd.DataFrame, X: pd.DataFrame | None = None, ax: Any = None,
                      title: str = "SHAP values (log-odds of P(up))") -> Any:
    """A beeswarm-style strip per feature (colour = feature value when ``X`` is given); returns the Figure."""
    import matplotlib.pyplot as plt

    order = values.abs().mean().sort_values().index
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    else:
        fig = ax.figure
    rng = np.random.default_rng(0)
    for i, col in enumerate(order):
        v = values[col].to_numpy()
        c = None
        if X is not None:
            x = X.loc[values.index, col].to_numpy()
            lo, hi = np.nanquantile(x, [0.05, 0.95])
            c = np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        ax.scatter(v, i + rng.uniform(-0.3, 0.3, len(v)), s=4, c=c, cmap="coolwarm" if c is not None else None,
                   alpha=0.6)
    ax.set_yticks(range(len(order)), [str(c) for c in order])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("SHAP value")
    ax.set_title(title)
    fig.tight_layout()
    return fig


__all__ = ["SCORINGS", "mda_importance", "shap_values", "plot_importance", "plot_shap_summary"]

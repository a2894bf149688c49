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
* :func:`explain_model` — both on one seeded, bounded sample of some bars' labelled rows, for
  the fitted model as it is (``refit=False``): what the PDF report of a ``model:ID`` backtest shows.

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
    >>> ex = explain_model(tm, generate_bars("BTCUSDT", n=2_000, seed=2), max_rows=300, shap_rows=100)
    >>> ex.n_samples, ex.shap.shape == (100, len(tm.columns)), list(ex.importance.index) == list(ex.ranked())
    (300, True, True)
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
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


def _parts(model: Any) -> tuple[Any, Any, list[str]]:
    """``(train spec, fitted estimator, input columns)`` of a TrainedModel or a LoadedModel."""
    if isinstance(model, TrainedModel):
        return model.spec, model.estimator, list(model.columns)
    card = getattr(model, "card", None)
    if card is None:
        raise ModelError(f"model must be a TrainedModel or a LoadedModel, got {type(model).__name__}")
    return card.train_spec, model.estimator, list(card.columns)


def _sample(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded random sample of ``max_rows`` of ``n`` rows, in time order (all rows if fewer)."""
    if max_rows is not None and (not isinstance(max_rows, (int, np.integer)) or max_rows < 2):
        raise ModelError(f"max_rows must be an integer >= 2 or None, got {max_rows!r}")
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_rows), replace=False))


def mda_importance(model: Any, bars: pd.DataFrame | Mapping[str, pd.DataFrame], *,
                   scoring: str = "neg_log_loss", n_repeats: int = 3, seed: int = 0, refit: bool = True,
                   max_rows: int | None = None) -> pd.DataFrame:
    """Permutation importance per feature column of ``bars``' labelled samples: ``importance`` (mean score
    loss when the column is shuffled) and ``std`` over folds x repeats, largest first.

    ``refit=True`` (López de Prado's MDA): for each of the model spec's purged folds, a fresh
    estimator is fitted on the training part and the test part is shuffled, so the importance
    is out of sample for the *recipe*. ``refit=False``: the model's own fitted estimator is scored
    on every sample, as it is, e.g. on bars after its training window (what a report of a
    registered model shows); ``std`` is then over repeats. ``max_rows``: a seeded random sample of
    that many samples (time order kept) bounds the time. ``model``: a TrainedModel or LoadedModel.
    """
    if scoring not in SCORINGS:
        raise ModelError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ModelError(f"n_repeats must be a positive integer, got {n_repeats!r}")
    spec, fitted, columns = _parts(model)
    X, y, t1 = build_dataset(bars, spec)
    rows = _sample(len(X), max_rows, seed)
    X, y, t1 = X[columns].iloc[rows], y.iloc[rows], t1.iloc[rows]
    Xv, yv = X.to_numpy(), y.to_numpy()
    rng = np.random.default_rng(seed)
    losses: dict[str, list[float]] = {c: [] for c in X.columns}
    if refit:
        splits = inputs.purged_splits(X, t1, spec.n_splits, spec.embargo)
    else:
        splits = [(None, np.arange(len(X)))]  # the fitted model as it is: no training rows
    for train, test in splits:
        est = fitted if train is None else make_estimator(spec).fit(Xv[train], yv[train])
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
    return out.rename_axis("feature").sort_values("importance", ascending=False, kind="stable")


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


def plot_importance(importance: pd.DataFrame, ax: Any = None, title: str = "Permutation importance (MDA)",
                    xlabel: str = "score loss when shuffled (out of sample)") -> Any:
    """Horizontal bars of :func:`mda_importance` with their std as error bars; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(importance) + 1.2))
    else:
        fig = ax.figure
    imp = importance.iloc[::-1]
    ax.barh(imp.index.astype(str), imp["importance"], xerr=imp["std"], color="#4c78a8")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel)
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


@dataclass
class ModelExplanation:
    """MDA and SHAP of one fitted model on one sample of labelled bars (:func:`explain_model`).

    ``importance``: :func:`mda_importance` (``refit=False``); ``shap``: :func:`shap_values` of
    ``shap_rows`` of the sampled rows, whose feature values are ``X``; ``n_samples`` labelled rows
    sampled (of ``n_available``), ``in_training_window`` of them inside the model's training window
    (> 0: partly in sample), ``seed`` and ``scoring`` as used.
    """

    importance: pd.DataFrame
    shap: pd.DataFrame
    X: pd.DataFrame = field(repr=False)
    n_samples: int
    n_available: int
    in_training_window: int
    seed: int
    scoring: str

    def ranked(self, top: int | None = None) -> list[str]:
        """Feature columns, most important (MDA) first."""
        return [str(c) for c in self.importance.index[:top]]

    def mean_abs_shap(self) -> pd.Series:
        """Mean |SHAP value| per feature column (its average pull on the log-odds)."""
        return self.shap.abs().mean().rename("mean_abs_shap")

    def importance_figure(self) -> Any:
        """:func:`plot_importance` of :attr:`importance`."""
        return plot_importance(self.importance, title=f"Permutation importance (MDA, {self.n_samples:,} samples)",
                               xlabel=f"loss of {self.scoring} when the feature is shuffled")

    def shap_figure(self) -> Any:
        """:func:`plot_shap_summary` of :attr:`shap`, coloured by the feature values."""
        title = f"SHAP values, log-odds of P(up) ({len(self.shap):,} samples)"
        return plot_shap_summary(self.shap, self.X, title=title)


def explain_model(model: Any, bars: pd.DataFrame | Mapping[str, pd.DataFrame], *, max_rows: int = 2_000,
                  shap_rows: int = 500, n_repeats: int = 3, seed: int = 0,
                  scoring: str = "neg_log_loss") -> ModelExplanation:
    """MDA and SHAP of ``model``'s fitted estimator (as registered, not refitted) on a seeded sample of
    ``max_rows`` labelled rows of ``bars``, SHAP on ``shap_rows`` of them: bounded time whatever the bars.

    ``model``: a TrainedModel or LoadedModel. Deterministic for a ``seed``.

    Example::

        >>> from spark_research.data import generate_bars
        >>> from spark_research.models.training import TrainSpec, train_model
        >>> tm = train_model(generate_bars("BTCUSDT", n=2_000, seed=1), TrainSpec(n_splits=3))
        >>> ex = explain_model(tm, generate_bars("BTCUSDT", n=3_000, seed=5), max_rows=400, shap_rows=50)
        >>> len(ex.X), ex.in_training_window <= ex.n_samples, ex.ranked(2) == list(ex.importance.index[:2])
        (50, True, True)
    """
    if not isinstance(shap_rows, (int, np.integer)) or shap_rows < 1:
        raise ModelError(f"shap_rows must be a positive integer, got {shap_rows!r}")
    spec, _, columns = _parts(model)
    X = build_dataset(bars, spec)[0][columns]
    rows = _sample(len(X), max_rows, seed)
    sample = X.iloc[rows]
    importance = mda_importance(model, bars, scoring=scoring, n_repeats=n_repeats, seed=seed, refit=False,
                                max_rows=max_rows)
    X_shap = sample.iloc[_sample(len(sample), min(shap_rows, len(sample)), seed + 1)]
    values = shap_values(model, X=X_shap, max_rows=len(X_shap))
    window = _training_window(model)
    t = sample.index if sample.index.tz is not None else sample.index.tz_localize("UTC")
    inside = int(((t >= window[0]) & (t <= window[1])).sum()) if window is not None else 0
    return ModelExplanation(importance, values, X_shap, len(sample), len(X), inside, seed, scoring)


def _training_window(model: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    if isinstance(model, TrainedModel):
        return model.train_start, model.train_end
    card = model.card
    if not card.train_start:
        return None
    return pd.Timestamp(card.train_start), pd.Timestamp(card.train_end)


__all__ = ["SCORINGS", "ModelExplanation", "mda_importance", "shap_values", "explain_model", "plot_importance",
           "plot_shap_summary"]

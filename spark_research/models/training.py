"""Train a model on point-in-time features and labels, scored by purged cross-validation.

:class:`TrainSpec` says what to train (features, label, estimator, folds); :func:`train_model`
builds the dataset from bars, scores the estimator by purged K-fold with embargo, fits it on
every sample and returns a :class:`TrainedModel` with everything the registry stores: the
model, its features with their code hashes, training window, CV scores, and the training
distributions of features and out-of-fold predictions (the drift reference).

The model id is a hash of the inputs (features and their code, spec, data), so training the
same thing twice gives the same id, and with a fixed ``seed`` the same predictions.

Example::

    >>> from spark_research.data import generate_bars
    >>> tm = train_model(generate_bars("BTCUSDT", n=3_000, seed=1), TrainSpec(n_splits=3, horizon=10))
    >>> len(tm.model_id), sorted(tm.cv_scores)[:2], tm.cv_scores["folds"]
    (12, ['accuracy', 'accuracy_std'], 3)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from spark_research.models import inputs
from spark_research.models.drift import DriftReference
from spark_research.models.errors import ModelError

ESTIMATORS = ("lightgbm", "logistic")
LABELS = ("fixed", "triple_barrier")

_LGBM_DEFAULTS = {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 50,
                  "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8}


@dataclass(frozen=True)
class TrainSpec:
    """What to train: features, label, estimator, purged CV. Every field is part of the model id."""

    features: tuple[str, ...] = inputs.DEFAULT_FEATURES
    label: str = "fixed"  #: fixed (sign of the ``horizon``-bar return) | triple_barrier
    horizon: int = 20  #: bars ahead (fixed) or the vertical barrier (triple_barrier)
    threshold: float = 0.0  #: fixed: a return above this is "up"; triple_barrier: unused
    barrier: float = 1.0  #: triple_barrier: profit-take / stop-loss in units of rolling volatility
    estimator: str = "lightgbm"  #: lightgbm | logistic (StandardScaler + LogisticRegression pipeline)
    estimator_params: tuple[tuple[str, Any], ...] = ()  #: overrides, e.g. (("n_estimators", 50),)
    n_splits: int = 5
    embargo: float = 0.01  #: share of samples embargoed after each test fold
    seed: int = 0
    bins: int = 10  #: drift bins per feature, fixed at training time
    name: str = ""  #: registered model name (default: "<symbol>-<estimator>")

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        if isinstance(self.estimator_params, Mapping):
            object.__setattr__(self, "estimator_params", tuple(sorted(dict(self.estimator_params).items())))
        if self.estimator not in ESTIMATORS:
            raise ModelError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.label not in LABELS:
            raise ModelError(f"label must be one of {LABELS}, got {self.label!r}")
        if not isinstance(self.horizon, (int, np.integer)) or self.horizon < 1:
            raise ModelError(f"horizon must be a positive integer number of bars, got {self.horizon!r}")
        if not isinstance(self.n_splits, (int, np.integer)) or self.n_splits < 2:
            raise ModelError(f"n_splits must be an integer >= 2, got {self.n_splits!r}")
        if not 0 <= self.embargo < 1:
            raise ModelError(f"embargo must be a fraction in [0, 1), got {self.embargo!r}")
        if not self.barrier > 0:
            raise ModelError(f"barrier must be > 0 (volatility units), got {self.barrier!r}")
        inputs.feature_hashes(self.features)  # unknown or duplicate names fail here

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        d["estimator_params"] = dict(self.estimator_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSpec":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["features"] = tuple(d.get("features", inputs.DEFAULT_FEATURES))
        d["estimator_params"] = tuple(sorted(dict(d.get("estimator_params") or {}).items()))
        return cls(**d)


@dataclass
class TrainedModel:
    """A fitted model and what the registry stores about it."""

    model_id: str
    estimator: Any
    spec: TrainSpec
    symbols: list[str]
    feature_hashes: dict[str, str]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_samples: int
    cv_scores: dict[str, float]
    drift: DriftReference
    lookback: int
    data_hash: str
    #: out-of-fold P(up) of every training sample (what the CV scores were computed on)
    oof: pd.Series = field(repr=False, default_factory=lambda: pd.Series(dtype="float64"))

    @property
    def features(self) -> list[str]:
        return list(self.spec.features)

    @property
    def columns(self) -> list[str]:
        """The model's input columns, in order (a multi-column feature gives several)."""
        return list(self.drift.features)

    @property
    def name(self) -> str:
        return self.spec.name or f"{'-'.join(self.symbols)}-{self.spec.estimator}"


# --- dataset -------------------------------------------------------------------------------------
def _frames(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    from spark_research.backtest.engine import split_symbols

    frames = split_symbols(bars)
    if not frames:
        raise ModelError("bars: no symbol to train on")
    return frames


def _labels(frame: pd.DataFrame, spec: TrainSpec) -> tuple[pd.Series, pd.Series]:
    if spec.label == "fixed":
        return inputs.fixed_horizon_labels(frame, spec.horizon, spec.threshold)
    return inputs.triple_barrier_labels(frame, spec.horizon, spec.barrier)


def build_dataset(bars: pd.DataFrame | Mapping[str, pd.DataFrame], spec: TrainSpec,
                  features: Mapping[str, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """``(X, y, t1)`` over every symbol, rows in time order (stable by symbol), warm-up and unlabelled rows dropped.

    ``X`` is indexed by bar time; ``t1`` is when each label is known (for purging).
    ``features``: precomputed feature frames by symbol (e.g. from the feature store), aligned
    to the bars by timestamp; computed from the bars when not given.
    """
    parts = []
    columns = inputs.feature_columns(spec.features)
    for sym, frame in sorted(_frames(bars).items()):
        if features is not None and sym in features:
            X = _aligned(features[sym], frame.index, columns, sym)
        else:
            X = inputs.compute_features(frame, spec.features)
        y, t1 = _labels(frame, spec)
        ok = X.notna().all(axis=1).to_numpy() & y.notna().to_numpy()
        part = X[ok].assign(_y=y[ok].to_numpy(), _t1=t1[ok].to_numpy(), _sym=sym)
        parts.append(part)
    data = pd.concat(parts)
    if len(parts) > 1:
        data = data.iloc[np.argsort(data.index.asi8, kind="stable")]
    if len(data) < 2 * spec.n_splits:
        raise ModelError(f"bars: only {len(data)} labelled samples after warm-up, need at least {2 * spec.n_splits} "
                         f"for n_splits={spec.n_splits}")
    y = data.pop("_y").astype("int64").rename("y")
    t1 = data.pop("_t1").rename("t1")
    data.pop("_sym")
    if y.nunique() < 2:
        raise ModelError(f"labels: every sample has label {int(y.iloc[0])}; a classifier needs both classes")
    return data, y, t1


def _aligned(X: pd.DataFrame, index: pd.DatetimeIndex, columns: list[str], sym: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ModelError(f"features[{sym!r}]: column(s) {missing} missing (have {list(X.columns)})")
    xi = X.index if X.index.tz is None else X.index.tz_convert("UTC").tz_localize(None)
    ti = index if index.tz is None else index.tz_convert("UTC").tz_localize(None)
    return X[columns].set_axis(xi).reindex(ti).set_axis(index)


def data_hash(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> str:
    """sha256 (16 hex) of the bars' times and OHLCV values, per symbol."""
    h = hashlib.sha256()
    for sym, frame in sorted(_frames(bars).items()):
        h.update(sym.encode())
        h.update(frame.index.asi8.tobytes())
        for col in ("open", "high", "low", "close", "volume"):
            if col in frame.columns:
                h.update(np.ascontiguousarray(frame[col].to_numpy(dtype="float64")).tobytes())
    return h.hexdigest()[:16]


def model_id_of(spec: TrainSpec, hashes: Mapping[str, str], symbols: Sequence[str], data: str) -> str:
    """12 hex digits identifying a model by its inputs (same inputs, same id)."""
    payload = {"spec": spec.to_dict(), "feature_hashes": dict(hashes), "symbols": list(symbols), "data": data}
    payload["spec"].pop("name", None)  # a name is a label, not an input
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- estimator -----------------------------------------------------------------------------------
def make_estimator(spec: TrainSpec) -> Any:
    """A fresh, seeded, single-threaded (hence deterministic) estimator for ``spec``."""
    params = dict(spec.estimator_params)
    if spec.estimator == "lightgbm":
        from lightgbm import LGBMClassifier

        return inputs.seeded(LGBMClassifier(**{**_LGBM_DEFAULTS, **params}), spec.seed)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    kw = {"C": 1.0, "max_iter": 1000, **params}
    return inputs.seeded(Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(**kw))]), spec.seed)


def proba_up(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(label = 1) for each row of ``X`` (a 2-d array, columns in the model's order)."""
    return estimator.predict_proba(X)[:, 1]


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    out = {"accuracy": float(accuracy_score(y, p >= 0.5)), "log_loss": float(log_loss(y, np.clip(p, 1e-9, 1 - 1e-9),
                                                                                        labels=[0, 1]))}
    out["roc_auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return out


def cross_validate(spec: TrainSpec, X: pd.DataFrame, y: pd.Series, t1: pd.Series,
                   client: Any = None) -> tuple[dict[str, float], pd.Series]:
    """Purged K-fold scores (mean and std of accuracy, ROC AUC, log loss) and out-of-fold P(up).

    ``client``: a ``distributed.Client`` to train the folds side by side on Dask (same results).

    Example::

        >>> from spark_research.data import generate_bars
        >>> spec = TrainSpec(estimator="logistic", n_splits=3)
        >>> X, y, t1 = build_dataset(generate_bars("ETHUSDT", n=2_000, seed=4), spec)
        >>> scores, oof = cross_validate(spec, X, y, t1)
        >>> 0.3 < scores["accuracy"] < 0.7, bool(oof.notna().all())
        (True, True)
    """
    folds = inputs.purged_splits(X, t1, spec.n_splits, spec.embargo)
    oof = np.full(len(X), np.nan)
    per_fold: dict[str, list[float]] = {}
    Xv, yv = X.to_numpy(), y.to_numpy()
    for train, _ in folds:
        if len(np.unique(yv[train])) < 2:
            raise ModelError(f"cv: a training fold of {len(train)} samples has one class only; use fewer n_splits")
    for test, p in inputs.fold_predictions(make_estimator(spec), Xv, yv, folds, spec.seed, client):
        oof[test] = p
        for k, v in _scores(yv[test], p).items():
            per_fold.setdefault(k, []).append(v)
    scores: dict[str, float] = {"folds": len(folds)}
    for k, values in per_fold.items():
        scores[k] = float(np.nanmean(values))
        scores[f"{k}_std"] = float(np.nanstd(values))
    return scores, pd.Series(oof, index=X.index, name="p_up")


def train_model(bars: pd.DataFrame | Mapping[str, pd.DataFrame], spec: TrainSpec | None = None,
                features: Mapping[str, pd.DataFrame] | None = None, client: Any = None) -> TrainedModel:
    """Build the dataset, score by purged CV, fit on every sample; see the module docstring.

    ``features``: precomputed feature frames by symbol (the feature store's), else computed from
    ``bars``. ``client``: a ``distributed.Client`` to train the CV folds on Dask.
    """
    spec = spec or TrainSpec()
    frames = _frames(bars)
    X, y, t1 = build_dataset(frames, spec, features)
    scores, oof = cross_validate(spec, X, y, t1, client)
    est = make_estimator(spec).fit(X.to_numpy(), y.to_numpy())  # arrays in, arrays out: the live path has no frames
    hashes = inputs.feature_hashes(spec.features)
    symbols = sorted(frames)
    dh = data_hash(frames)
    ref = DriftReference.fit(X, oof.to_numpy(), bins=spec.bins)
    return TrainedModel(model_id=model_id_of(spec, hashes, symbols, dh), estimator=est, spec=spec, symbols=symbols,
                        feature_hashes=hashes, train_start=_utc(X.index[0]), train_end=_utc(t1.max()),
                        n_samples=int(len(X)), cv_scores=scores, drift=ref,
                        lookback=inputs.feature_lookback(spec.features), data_hash=dh, oof=oof)


def _utc(ts: Any) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


__all__ = ["ESTIMATORS", "LABELS", "TrainSpec", "TrainedModel", "build_dataset", "data_hash", "model_id_of",
           "make_estimator", "proba_up", "cross_validate", "train_model"]

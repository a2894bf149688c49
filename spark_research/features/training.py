"""Train and score cross-validation folds in parallel on the platform's Dask cluster, or in-process.

:func:`train_folds` clones a scikit-learn estimator (a ``Pipeline``, a LightGBM
``LGBMClassifier``/``LGBMRegressor``, anything with ``fit``/``predict``) for every split of a
splitter (:class:`~spark_research.features.cv.PurgedKFold`,
:class:`~spark_research.features.cv.CombinatorialPurgedKFold`, or any scikit-learn one),
fits it on the training rows, and returns per-fold scores and the test predictions.

Determinism: :func:`seeded` fixes every ``random_state`` in the estimator (nested pipeline
steps too) and puts LightGBM in its reproducible mode (``deterministic=True``,
``force_row_wise=True``, a fixed thread count ``n_threads``, the seed): the same inputs give
bit-identical predictions in-process and on any Dask worker. With ``client`` (a
``distributed.Client``, e.g. :func:`spark_research.optimizer.cluster.connect`: the same
LocalCluster or ``SPARK_DASK_SCHEDULER`` as sweeps) the data are scattered once and each fold
is one task; one thread per fold and folds side by side is what scales on a cluster of
single-threaded workers.

Example::

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from spark_research.features.cv import PurgedKFold
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = (X[:, 0] > 0).astype(int)
    >>> res = train_folds(LogisticRegression(), X, y, PurgedKFold(3))
    >>> bool(res.scores["score"].min() > 0.9), res.oof().shape
    (True, (300,))
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline

Predict = Literal["predict", "proba"]
PREDICTS = ("predict", "proba")


class TrainingError(ValueError):
    """Bad input to :func:`train_folds` (the message names the field and the value)."""


# --------------------------------------------------------------------------- seeding


def _is_lightgbm(obj: Any) -> bool:
    try:
        from lightgbm import LGBMModel
    except ImportError:  # pragma: no cover - lightgbm is a dependency; stay usable without it
        return False
    return isinstance(obj, LGBMModel)


def seeded(model: Any, seed: int = 0, n_threads: int = 1) -> Any:
    """A fresh clone of ``model`` whose every source of randomness and thread count is fixed.

    Every ``random_state`` parameter (also inside pipelines) is set to ``seed`` and every
    ``n_jobs`` that is set to ``n_threads``; LightGBM estimators also get ``deterministic=True`` and
    ``force_row_wise=True`` (LightGBM's documented recipe for reproducible training) and
    ``verbosity=-1``.

    Example::

        >>> from lightgbm import LGBMClassifier
        >>> m = seeded(LGBMClassifier(), seed=7)
        >>> m.get_params()["random_state"], m.get_params()["deterministic"], m.get_params()["n_jobs"]
        (7, True, 1)
    """
    if int(seed) != seed or seed < 0:
        raise TrainingError(f"seed must be a non-negative integer, got {seed!r}")
    if int(n_threads) != n_threads or n_threads < 1:
        raise TrainingError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    m = clone(model)
    params = m.get_params(deep=True)
    update: dict[str, Any] = {}
    for key in params:
        leaf = key.rsplit("__", 1)[-1]
        if leaf == "random_state":
            update[key] = int(seed)
        elif leaf == "n_jobs" and params[key] is not None:  # None is one thread already
            update[key] = int(n_threads)
    lgbm_prefixes = [""] if _is_lightgbm(m) else []
    lgbm_prefixes += [f"{k}__" for k, v in params.items() if _is_lightgbm(v)]
    for prefix in lgbm_prefixes:
        update.update({f"{prefix}deterministic": True, f"{prefix}force_row_wise": True, f"{prefix}verbosity": -1,
                       f"{prefix}random_state": int(seed), f"{prefix}n_jobs": int(n_threads)})
    m.set_params(**update)
    return m


# --------------------------------------------------------------------------- one fold


@dataclass
class FoldResult:
    """What one fold produced."""

    fold: int
    n_train: int
    n_test: int
    score: float
    predictions: np.ndarray  #: test predictions, in the order of the fold's test indices
    seconds: float  #: fit + predict + score wall time on the worker
    worker: str  #: Dask worker address, or ``"local"``
    cpu_seconds: float = float("nan")  #: CPU time of the worker process over the same span (all its threads)


def _take(a: Any, idx: np.ndarray) -> Any:
    return a.iloc[idx] if isinstance(a, (pd.DataFrame, pd.Series)) else a[idx]


def _fit_kwargs(model: Any, w: Any) -> dict[str, Any]:
    if w is None:
        return {}
    if isinstance(model, Pipeline):
        return {f"{model.steps[-1][0]}__sample_weight": w}
    return {"sample_weight": w}


def _predict(model: Any, X: Any, predict: str) -> np.ndarray:
    if predict == "proba":
        return np.asarray(model.predict_proba(X))[:, -1]
    return np.asarray(model.predict(X))


def run_fold(model: Any, X: Any, y: Any, sample_weight: Any, train: np.ndarray, test: np.ndarray, fold: int,
             scoring: str | Callable[..., float], predict: str) -> FoldResult:
    """Fit ``model`` (already :func:`seeded`) on the ``train`` rows, predict and score the ``test`` rows.

    Runs as one Dask task (or in-process); returns a :class:`FoldResult`.

    Example::

        >>> from sklearn.linear_model import LogisticRegression
        >>> X = np.r_[np.zeros((10, 1)), np.ones((10, 1))]; y = np.r_[np.zeros(10), np.ones(10)]
        >>> r = run_fold(LogisticRegression(), X, y, None, np.arange(0, 20, 2), np.arange(1, 20, 2), 0, "accuracy", "predict")
        >>> r.score, r.n_test
        (1.0, 10)
    """
    t0, c0 = time.perf_counter(), time.process_time()
    m = clone(model)
    w_train = None if sample_weight is None else _take(sample_weight, train)
    m.fit(_take(X, train), _take(y, train), **_fit_kwargs(m, w_train))
    X_test, y_test = _take(X, test), _take(y, test)
    pred = _predict(m, X_test, predict)
    scorer = get_scorer(scoring) if isinstance(scoring, str) else scoring
    kw = {} if sample_weight is None else {"sample_weight": _take(sample_weight, test)}
    score = float(scorer(m, X_test, y_test, **kw))
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = "local"
    return FoldResult(fold=fold, n_train=len(train), n_test=len(test), score=score, predictions=pred,
                      seconds=time.perf_counter() - t0, worker=worker, cpu_seconds=time.process_time() - c0)


# --------------------------------------------------------------------------- all folds


@dataclass
class CVResult:
    """Per-fold scores and test predictions of :func:`train_folds`."""

    folds: list[FoldResult]
    test_indices: list[np.ndarray]
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)  #: seed, n_threads, scoring, predict

    @property
    def scores(self) -> pd.DataFrame:
        """One row per fold: fold, n_train, n_test, score, seconds, cpu_seconds, worker."""
        cols = ("fold", "n_train", "n_test", "score", "seconds", "cpu_seconds", "worker")
        return pd.DataFrame([{k: getattr(f, k) for k in cols}
                             for f in self.folds]).set_index("fold")

    @property
    def mean_score(self) -> float:
        """Mean of the fold scores."""
        return float(np.mean([f.score for f in self.folds]))

    @property
    def split_predictions(self) -> list[np.ndarray]:
        """Each split's test predictions (what :func:`~spark_research.features.cv.cpcv_report` takes)."""
        return [f.predictions for f in self.folds]

    def oof(self) -> np.ndarray:
        """Out-of-fold predictions, one per sample (NaN where no fold tested the sample).

        Raises :class:`TrainingError` if a sample was tested by several splits (CPCV: use
        :attr:`split_predictions` and :func:`~spark_research.features.cv.cpcv_paths`).
        """
        out = np.full(self.n_samples, np.nan)
        seen = np.zeros(self.n_samples, dtype=bool)
        for f, idx in zip(self.folds, self.test_indices):
            if seen[idx].any():
                raise TrainingError(f"sample {int(idx[seen[idx]][0])} is tested by more than one split; "
                                    "out-of-fold predictions are defined for K-fold splitters only")
            seen[idx] = True
            out[idx] = f.predictions
        return out


def _length(a: Any, name: str) -> int:
    try:
        return len(a)
    except TypeError:
        raise TrainingError(f"{name} must be an array-like with one row per sample, got {type(a).__name__}") from None


def train_folds(model: Any, X: Any, y: Any, cv: Any, *, sample_weight: Any = None,
                scoring: str | Callable[..., float] = "accuracy", predict: Predict = "predict", seed: int = 0,
                n_threads: int = 1, client: Any = None, timeout: float | None = 3600.0) -> CVResult:
    """Fit and score ``model`` on every split of ``cv``; folds run as Dask tasks when ``client`` is given.

    ``X``/``y``/``sample_weight``: arrays or pandas objects with one row per sample, in time
    order. ``scoring``: a scikit-learn scorer name or ``scorer(estimator, X, y[, sample_weight])``;
    sample weights (e.g. :func:`~spark_research.features.labels.average_uniqueness`) weight both
    the fit and the score. ``predict``: ``"predict"`` (labels) or ``"proba"`` (probability of
    the last class). ``seed``/``n_threads``: see :func:`seeded`. ``timeout``: seconds to wait
    for the cluster's folds (their futures are cancelled after it).

    Example::

        >>> from lightgbm import LGBMClassifier
        >>> from spark_research.features.cv import PurgedKFold
        >>> rng = np.random.default_rng(1)
        >>> X = rng.normal(size=(400, 4)); y = (X[:, 1] + 0.1 * rng.normal(size=400) > 0).astype(int)
        >>> res = train_folds(LGBMClassifier(n_estimators=20), X, y, PurgedKFold(4, embargo=0.01), seed=3)
        >>> len(res.folds), bool(res.mean_score > 0.8)
        (4, True)
    """
    n = _length(X, "X")
    for name, a in (("y", y), ("sample_weight", sample_weight)):
        if a is not None and _length(a, name) != n:
            raise TrainingError(f"{name} has {_length(a, name)} rows for {n} rows of X")
    if predict not in PREDICTS:
        raise TrainingError(f"predict must be one of {PREDICTS}, got {predict!r}")
    if isinstance(scoring, str):
        try:
            get_scorer(scoring)
        except ValueError:
            raise TrainingError(f"scoring {scoring!r} is not a scikit-learn scorer name") from None
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise TrainingError(f"timeout must be > 0 seconds, got {timeout!r}")
    m = seeded(model, seed, n_threads)
    splits = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in cv.split(X, y)]
    for i, (tr, te) in enumerate(splits):
        if len(tr) == 0 or len(te) == 0:
            raise TrainingError(f"split {i} has {len(tr)} training and {len(te)} test samples; both must be > 0")
    params = {"seed": int(seed), "n_threads": int(n_threads), "predict": predict,
              "scoring": scoring if isinstance(scoring, str) else getattr(scoring, "__name__", repr(scoring))}
    if client is None:
        folds = [run_fold(m, X, y, sample_weight, tr, te, i, scoring, predict) for i, (tr, te) in enumerate(splits)]
    else:
        folds = _on_cluster(client, m, X, y, sample_weight, splits, scoring, predict, timeout)
    return CVResult(folds=folds, test_indices=[te for _, te in splits], n_samples=n, params=params)


def _on_cluster(client: Any, model: Any, X: Any, y: Any, w: Any, splits: list[tuple[np.ndarray, np.ndarray]],
                scoring: Any, predict: str, timeout: float | None) -> list[FoldResult]:
    from distributed import wait

    tag = uuid.uuid4().hex[:12]
    # scattered once to every worker (hash=False: no hashing of a large matrix). Broadcast, because
    # with the data on one worker only the scheduler would rather queue every fold there than move it
    data = client.scatter({f"cv-X-{tag}": X, f"cv-y-{tag}": y, **({} if w is None else {f"cv-w-{tag}": w})},
                          hash=False, broadcast=True)
    fx, fy, fw = data[f"cv-X-{tag}"], data[f"cv-y-{tag}"], data.get(f"cv-w-{tag}")
    futures = [client.submit(run_fold, model, fx, fy, fw, tr, te, i, scoring, predict, pure=False,
                             key=f"cv-fold-{tag}-{i}") for i, (tr, te) in enumerate(splits)]
    try:
        done, not_done = wait(futures, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(futures)} folds not finished after {timeout} s")
        return client.gather(futures)
    finally:
        client.cancel([*futures, *data.values()])

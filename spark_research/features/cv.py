"""Cross-validation that does not leak: purged K-fold with embargo and combinatorial purged CV (AFML ch. 7, 12).

A label decided at ``t0`` is resolved at ``t1`` (see :mod:`spark_research.features.labels`).
Plain K-fold lets a training label whose interval ``[t0, t1]`` overlaps the test fold carry
the test's future into the model. Here:

* **purging** drops every training sample whose ``[t0, t1]`` overlaps the span of a test
  block (from its first ``t0`` to its last ``t1``);
* the **embargo** also drops the ``ceil(embargo * n)`` samples that follow each test block
  (features built on trailing windows still remember the test period);
* :class:`CombinatorialPurgedKFold` (CPCV) splits the samples into ``n_groups`` blocks and tests
  every choice of ``n_test_groups`` of them; the test predictions recombine into
  ``C(N, k) * k / N`` complete out-of-sample backtest paths, so a model gets a distribution
  of out-of-sample Sharpe ratios instead of one number (:func:`cpcv_report`), which feeds the
  platform's PBO and deflated Sharpe ratio (:mod:`spark_research.optimizer.overfitting`).

Both are scikit-learn splitters (``cross_val_score(model, X, y, cv=PurgedKFold(5, 0.01, t1=labels["t1"]))``).
Samples must be in time order. ``t1`` is a Series indexed by ``t0`` (what the label functions
return) or an array of label-end times with ``t0`` taken from ``X.index`` (positions for arrays).

Example::

    >>> import numpy as np, pandas as pd
    >>> t1 = pd.Series(np.arange(10) + 2, index=np.arange(10))      # each label spans 3 bars
    >>> train, test = next(PurgedKFold(n_splits=2, embargo=0.1, t1=t1).split(np.zeros((10, 1))))
    >>> test.tolist(), train.tolist()       # 5, 6 start before label 4 ends: purged; 7 embargoed
    ([0, 1, 2, 3, 4], [8, 9])
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from spark_research.optimizer.overfitting import PBOResult, dsr_of_best, pbo_cscv, sharpe


class CVError(ValueError):
    """Bad input to a splitter or a CPCV report (the message names the field and the value)."""


# --------------------------------------------------------------------------- label spans


def _as_int64(values: Any, field: str) -> np.ndarray:
    """Times (datetime-like, tz-aware or not) or numbers as comparable int64/float arrays."""
    if isinstance(getattr(values, "dtype", None), pd.DatetimeTZDtype):
        return pd.DatetimeIndex(values).asi8
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").view(np.int64)
    if arr.dtype.kind in "iuf":
        return arr
    if arr.dtype.kind == "O":
        try:
            return pd.DatetimeIndex(arr).asi8
        except (TypeError, ValueError):
            pass
    raise CVError(f"{field}: expected times or numbers, got dtype {arr.dtype}")


def label_spans(n_samples: int, t1: Any = None, X: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(t0, t1)`` of each sample as comparable numeric arrays.

    ``t1`` None: each label covers only its own sample (positions). A Series: its index is
    ``t0``. An array: ``t0`` is ``X.index`` when ``X`` is a pandas object, else positions.

    Example::

        >>> label_spans(3, np.array([1, 2, 2]))
        (array([0, 1, 2]), array([1, 2, 2]))
    """
    if t1 is None:
        pos = np.arange(n_samples)
        return pos, pos.copy()
    if isinstance(t1, pd.DataFrame):
        t1 = t1["t1"]
    if isinstance(t1, pd.Series):
        t0_raw, t1_raw = pd.Index(t1.index), pd.Index(t1.array)
    else:
        t1_raw = pd.Index(t1.array if isinstance(t1, pd.Index) else np.asarray(t1))
        t0_raw = pd.Index(X.index if isinstance(X, (pd.DataFrame, pd.Series)) else np.arange(n_samples))
    t0a, t1a = _as_int64(t0_raw, "t0"), _as_int64(t1_raw, "t1")
    if len(t0a) != n_samples or len(t1a) != n_samples:
        raise CVError(f"t1: {len(t1a)} label ends (and {len(t0a)} starts) for {n_samples} samples")
    if n_samples > 1 and (np.diff(t0a) < 0).any():
        i = int(np.flatnonzero(np.diff(t0a) < 0)[0]) + 1
        raise CVError(f"t0 must be in time order: sample {i} starts at {t0_raw[i]}, before sample {i - 1}")
    bad = np.flatnonzero(t1a < t0a)
    if len(bad):
        raise CVError(f"t1[{bad[0]}] = {t1_raw[bad[0]]} is before its t0 = {t0_raw[bad[0]]}")
    return t0a, t1a


def _n_samples(X: Any) -> int:
    if X is None:
        raise CVError("X: a splitter needs the samples (X) to split, got None")
    return len(X) if hasattr(X, "__len__") else int(np.shape(X)[0])


def purged_train_indices(t0: np.ndarray, t1: np.ndarray, test_blocks: Sequence[tuple[int, int]],
                         embargo_samples: int) -> np.ndarray:
    """Training positions left after removing the test blocks, purging and embargoing.

    ``test_blocks`` are ``(start, stop)`` position ranges. A sample is purged when its
    ``[t0, t1]`` overlaps ``[t0[start], max(t1[start:stop])]``; the ``embargo_samples``
    samples starting after that span are embargoed.

    Example::

        >>> t0 = np.arange(8); t1 = t0 + 1
        >>> purged_train_indices(t0, t1, [(3, 5)], embargo_samples=1).tolist()
        [0, 1, 7]
    """
    n = len(t0)
    keep = np.ones(n, dtype=bool)
    for start, stop in test_blocks:
        keep[start:stop] = False
        lo, hi = t0[start], t1[start:stop].max()
        keep &= ~((t0 <= hi) & (t1 >= lo))
        after = int(np.searchsorted(t0, hi, side="right"))
        keep[after:after + embargo_samples] = False
    return np.flatnonzero(keep)


def _check_embargo(embargo: float) -> float:
    e = float(embargo)
    if not (math.isfinite(e) and 0 <= e < 1):
        raise CVError(f"embargo must be a fraction of the samples in [0, 1), got {embargo!r}")
    return e


# --------------------------------------------------------------------------- purged K-fold


class PurgedKFold(BaseCrossValidator):
    """K-fold over contiguous time blocks with purging and an embargo (AFML 7.4).

    ``n_splits`` contiguous test folds (no shuffling: shuffling time series leaks by
    construction); ``embargo`` is a fraction of the samples dropped after each test fold;
    ``t1`` the label ends (see :func:`label_spans`).

    Example::

        >>> t1 = pd.Series(np.arange(12) + 3, index=np.arange(12))
        >>> [len(tr) for tr, te in PurgedKFold(3, embargo=0.0, t1=t1).split(np.zeros(12))]
        [5, 2, 5]
    """

    def __init__(self, n_splits: int = 5, embargo: float = 0.0, t1: Any = None):
        if int(n_splits) != n_splits or n_splits < 2:
            raise CVError(f"n_splits must be an integer >= 2, got {n_splits!r}")
        self.n_splits = int(n_splits)
        self.embargo = _check_embargo(embargo)
        self.t1 = t1

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of splits (``n_splits``)."""
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` position arrays, test folds in time order."""
        n = _n_samples(X)
        if n < self.n_splits:
            raise CVError(f"n_splits={self.n_splits} is more than the {n} samples")
        t0, t1 = label_spans(n, self.t1, X)
        h = int(math.ceil(self.embargo * n))
        for fold in np.array_split(np.arange(n), self.n_splits):
            start, stop = int(fold[0]), int(fold[-1]) + 1
            yield purged_train_indices(t0, t1, [(start, stop)], h), fold


# --------------------------------------------------------------------------- CPCV


class CombinatorialPurgedKFold(BaseCrossValidator):
    """Combinatorial purged cross-validation (AFML 12.4): every ``n_test_groups`` of ``n_groups`` blocks is tested once.

    ``C(n_groups, n_test_groups)`` splits; each group is tested in ``n_paths`` of them,
    ``n_paths = C(N, k) * k / N``; :meth:`path_splits` says which split's predictions
    make up each backtest path.

    Example::

        >>> cv = CombinatorialPurgedKFold(n_groups=6, n_test_groups=2)
        >>> cv.get_n_splits(), cv.n_paths
        (15, 5)
    """

    def __init__(self, n_groups: int = 6, n_test_groups: int = 2, embargo: float = 0.0, t1: Any = None):
        if int(n_groups) != n_groups or n_groups < 2:
            raise CVError(f"n_groups must be an integer >= 2, got {n_groups!r}")
        if int(n_test_groups) != n_test_groups or not 1 <= n_test_groups < n_groups:
            raise CVError(f"n_test_groups must be an integer in [1, n_groups={n_groups}), got {n_test_groups!r}")
        self.n_groups = int(n_groups)
        self.n_test_groups = int(n_test_groups)
        self.embargo = _check_embargo(embargo)
        self.t1 = t1

    @property
    def n_paths(self) -> int:
        """Number of complete backtest paths: ``C(N, k) * k / N``."""
        return math.comb(self.n_groups, self.n_test_groups) * self.n_test_groups // self.n_groups

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of splits, ``C(n_groups, n_test_groups)``."""
        return math.comb(self.n_groups, self.n_test_groups)

    def test_groups(self) -> list[tuple[int, ...]]:
        """The test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    def groups(self, n_samples: int) -> list[np.ndarray]:
        """Positions of each of the ``n_groups`` contiguous blocks."""
        if n_samples < self.n_groups:
            raise CVError(f"n_groups={self.n_groups} is more than the {n_samples} samples")
        return np.array_split(np.arange(n_samples), self.n_groups)

    def path_splits(self) -> np.ndarray:
        """``(n_paths, n_groups)`` array: the split whose test predictions path *p* uses for group *g*.

        Group *g* is tested by ``n_paths`` splits; path *p* takes the *p*-th of them (AFML 12.4).

        Example::

            >>> CombinatorialPurgedKFold(n_groups=3, n_test_groups=2).path_splits().tolist()
            [[0, 0, 1], [1, 2, 2]]
        """
        table = np.empty((self.n_paths, self.n_groups), dtype=np.int64)
        seen = np.zeros(self.n_groups, dtype=np.int64)
        for s, combo in enumerate(self.test_groups()):
            for g in combo:
                table[seen[g], g] = s
                seen[g] += 1
        return table

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` position arrays, one per combination of test groups."""
        n = _n_samples(X)
        blocks = self.groups(n)
        t0, t1 = label_spans(n, self.t1, X)
        h = int(math.ceil(self.embargo * n))
        for combo in self.test_groups():
            spans = [(int(blocks[g][0]), int(blocks[g][-1]) + 1) for g in combo]
            yield purged_train_indices(t0, t1, spans, h), np.concatenate([blocks[g] for g in combo])


def cpcv_paths(cv: CombinatorialPurgedKFold, split_predictions: Sequence[np.ndarray], n_samples: int) -> np.ndarray:
    """Recombine each split's test predictions into ``(n_paths, n_samples)`` out-of-sample paths.

    ``split_predictions[s]`` holds split *s*'s predictions in the order of its test indices.

    Example::

        >>> cv = CombinatorialPurgedKFold(n_groups=3, n_test_groups=2)
        >>> preds = [np.array([1., 1, 1, 1]), np.array([2., 2, 2, 2]), np.array([3., 3, 3, 3])]
        >>> cpcv_paths(cv, preds, 6).tolist()       # groups: [0, 1], [2, 3], [4, 5]
        [[1.0, 1.0, 1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0, 3.0, 3.0]]
    """
    blocks = cv.groups(n_samples)
    combos = cv.test_groups()
    if len(split_predictions) != len(combos):
        raise CVError(f"split_predictions: {len(split_predictions)} arrays for {len(combos)} CPCV splits")
    # where each group sits inside its splits' test arrays
    offsets: list[dict[int, slice]] = []
    for s, combo in enumerate(combos):
        pred = np.asarray(split_predictions[s])
        expected = sum(len(blocks[g]) for g in combo)
        if pred.shape[:1] != (expected,):
            raise CVError(f"split_predictions[{s}]: {pred.shape[0] if pred.ndim else 0} predictions for {expected} test samples")
        at, sl = 0, {}
        for g in combo:
            sl[g] = slice(at, at + len(blocks[g]))
            at += len(blocks[g])
        offsets.append(sl)
    out = np.empty((cv.n_paths, n_samples))
    for p, row in enumerate(cv.path_splits()):
        for g, s in enumerate(row):
            out[p, blocks[g]] = np.asarray(split_predictions[s], dtype=float)[offsets[s][g]]
    return out


@dataclass
class CPCVReport:
    """Out-of-sample performance of one or more trials over the CPCV backtest paths (:func:`cpcv_report`)."""

    path_sharpe: pd.DataFrame  #: per-period OOS Sharpe, one row per path, one column per trial
    path_returns: dict[str, np.ndarray]  #: trial -> (n_samples, n_paths) strategy returns
    best: str  #: trial with the highest mean path Sharpe
    dsr: dict[str, Any]  #: deflated Sharpe ratio of the best trial (``dsr_of_best`` on the path-mean returns)
    pbo: PBOResult | None  #: PBO by CSCV over the trials (None with a single trial)

    @property
    def summary(self) -> pd.DataFrame:
        """Per trial: mean, std, min, median, max of the path Sharpe ratios and the share of paths above 0."""
        s = self.path_sharpe
        return pd.DataFrame({"mean": s.mean(), "std": s.std(ddof=1), "min": s.min(), "median": s.median(),
                             "max": s.max(), "positive": (s > 0).mean()})


def cpcv_report(cv: CombinatorialPurgedKFold, trials: Mapping[str, Sequence[np.ndarray]] | Sequence[np.ndarray],
                returns: np.ndarray | pd.Series, *, pbo_splits: int = 16) -> CPCVReport:
    """Distribution of out-of-sample Sharpe ratios over the CPCV paths, with PBO and the deflated Sharpe ratio.

    ``trials`` maps a trial name (a model, a threshold...) to its per-split test *positions*
    (e.g. ``+1``/``-1`` predicted sides, or a probability mapped to a bet size); a bare list
    is one trial named ``"model"``. ``returns[i]`` is what a position taken at sample *i*
    earns (e.g. the label's ``ret``). Each path's strategy return is ``position * return``;
    its per-period Sharpe is the platform's :func:`~spark_research.optimizer.overfitting.sharpe`.
    The trials' path-mean returns (samples x trials) go to
    :func:`~spark_research.optimizer.overfitting.dsr_of_best` and, with two or more trials,
    :func:`~spark_research.optimizer.overfitting.pbo_cscv` (``pbo_splits`` blocks).

    Example::

        >>> rng = np.random.default_rng(0)
        >>> cv = CombinatorialPurgedKFold(n_groups=6, n_test_groups=2)
        >>> ret = rng.normal(0, 0.01, 600)
        >>> tests = [te for _, te in cv.split(np.zeros(600))]
        >>> rep = cpcv_report(cv, {"oracle": [np.sign(ret[te]) for te in tests],
        ...                        "coin": [rng.choice([-1.0, 1.0], len(te)) for te in tests]}, ret)
        >>> rep.path_sharpe.shape, rep.best
        ((5, 2), 'oracle')
    """
    r = np.asarray(returns, dtype=float)
    if r.ndim != 1:
        raise CVError(f"returns must be 1-D (one per sample), got shape {r.shape}")
    if not np.isfinite(r).all():
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise CVError(f"returns[{i}] = {float(r[i])}: returns must be finite")
    named = dict(trials) if isinstance(trials, Mapping) else {"model": trials}
    if not named:
        raise CVError("trials: no trial given")
    path_returns, sharpes = {}, {}
    for name, preds in named.items():
        paths = cpcv_paths(cv, preds, len(r))
        if not np.isfinite(paths).all():
            raise CVError(f"trials[{name!r}]: positions must be finite")
        pr = (paths * r).T  # samples x paths
        path_returns[str(name)] = pr
        sharpes[str(name)] = sharpe(pr)
    path_sharpe = pd.DataFrame(sharpes, index=pd.RangeIndex(cv.n_paths, name="path"))
    best = str(path_sharpe.mean().idxmax()) if path_sharpe.notna().any().any() else next(iter(path_sharpe))
    mean_returns = np.column_stack([pr.mean(axis=1) for pr in path_returns.values()])
    dsr = dsr_of_best(mean_returns)
    dsr["best"] = list(path_returns)[dsr["best"]]
    pbo = pbo_cscv(mean_returns, n_splits=pbo_splits) if mean_returns.shape[1] >= 2 else None
    return CPCVReport(path_sharpe=path_sharpe, path_returns=path_returns, best=best, dsr=dsr, pbo=pbo)

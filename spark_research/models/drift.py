"""Drift of live features and predictions against their training distribution: PSI and KS.

The bins are fixed when the model is trained (training-set quantiles, stored with the model
in :class:`DriftReference`), so live data is always compared on the same grid.

* PSI (population stability index): ``sum((a - e) * ln(a / e))`` over the bins, with ``e``
  the training share and ``a`` the live share of each bin (shares floored at ``eps``). Rule
  of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
* KS: the two-sample Kolmogorov-Smirnov statistic ``sup |F_train(x) - F_live(x)|``, with the
  training distribution kept as ``n_quantiles`` quantiles.

Example::

    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)   # 0.4 ln 1.8 + 0.4 ln 5
    0.8789
    >>> round(ks_statistic(np.arange(10.0), np.arange(10.0) + 3), 12)
    0.3
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spark_research.models.errors import ModelError

#: Share floor of an empty bin: keeps ln(a / e) finite (a common choice in credit-risk PSI).
PSI_EPS = 1e-4


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index of two bin-share vectors (each sums to 1)."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if e.shape != a.shape or e.ndim != 1:
        raise ModelError(f"psi: expected and actual must be 1-d of the same length, got {e.shape} and {a.shape}")
    e, a = np.maximum(e, eps), np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (NaNs ignored); 0 when either sample is empty."""
    r = np.sort(np.asarray(reference, dtype="float64"))
    x = np.sort(np.asarray(live, dtype="float64"))
    r, x = r[~np.isnan(r)], x[~np.isnan(x)]
    if not len(r) or not len(x):
        return 0.0
    grid = np.concatenate([r, x])
    f_r = np.searchsorted(r, grid, side="right") / len(r)
    f_x = np.searchsorted(x, grid, side="right") / len(x)
    return float(np.max(np.abs(f_r - f_x)))


def bin_edges(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior edges at the training quantiles ``1/bins, ..., (bins-1)/bins`` (duplicates merged)."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if not len(v):
        return np.empty(0)
    return np.unique(np.quantile(v, np.arange(1, bins) / bins))


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 .. len(edges) (a value equal to an edge goes to the bin above it)."""
    return np.searchsorted(edges, np.asarray(values, dtype="float64"), side="right")


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the finite ``values`` in each of the ``len(edges) + 1`` bins."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    counts = np.bincount(bin_index(v, edges), minlength=len(edges) + 1).astype("float64")
    return counts / max(1, len(v))


@dataclass
class Distribution:
    """One variable's training distribution: bin edges, bin shares and quantiles (for KS)."""

    edges: list[float]
    expected: list[float]
    quantiles: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, bins: int = 10, n_quantiles: int = 200) -> "Distribution":
        v = np.asarray(values, dtype="float64")
        v = v[np.isfinite(v)]
        if not len(v):
            raise ModelError("drift reference: no finite training values to fit a distribution on")
        edges = bin_edges(v, bins)
        q = np.quantile(v, (np.arange(n_quantiles) + 0.5) / n_quantiles)
        return cls(edges.tolist(), shares(v, edges).tolist(), q.tolist())

    def psi(self, live: np.ndarray) -> float:
        return psi(self.expected, shares(live, np.asarray(self.edges)))

    def ks(self, live: np.ndarray) -> float:
        return ks_statistic(self.quantiles, live)


@dataclass
class DriftReference:
    """Training distributions of every feature and of the predictions, stored with the model.

    Example::

        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.uniform(size=5_000)})
        >>> ref = DriftReference.fit(X, rng.uniform(size=5_000))
        >>> len(ref.features["a"].edges), round(sum(ref.features["a"].expected), 6)
        (9, 1.0)
        >>> DriftReference.from_dict(ref.to_dict()) == ref
        True
    """

    features: dict[str, Distribution]
    prediction: Distribution
    bins: int = 10
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, X: pd.DataFrame, predictions: np.ndarray, bins: int = 10, n_quantiles: int = 200) -> "DriftReference":
        if bins < 2:
            raise ModelError(f"bins must be >= 2, got {bins!r}")
        feats = {c: Distribution.fit(X[c].to_numpy(), bins, n_quantiles) for c in X.columns}
        return cls(feats, Distribution.fit(predictions, bins, n_quantiles), bins, int(len(X)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DriftReference":
        return cls({k: Distribution(**v) for k, v in d["features"].items()}, Distribution(**d["prediction"]),
                   int(d.get("bins", 10)), int(d.get("samples", 0)), dict(d.get("extra", {})))


def drift_table(reference: DriftReference, live: pd.DataFrame, predictions: np.ndarray | None = None) -> pd.DataFrame:
    """PSI and KS of each live feature (and of the predictions, as row ``"prediction"``) vs training.

    Example::

        >>> rng = np.random.default_rng(1)
        >>> ref = DriftReference.fit(pd.DataFrame({"a": rng.normal(size=4_000)}), rng.uniform(size=4_000))
        >>> t = drift_table(ref, pd.DataFrame({"a": rng.normal(2.0, 1.0, size=1_000)}))
        >>> bool(t.loc["a", "psi"] > 1.0), bool(t.loc["a", "ks"] > 0.6)
        (True, True)
    """
    missing = [f for f in reference.features if f not in live.columns]
    if missing:
        raise ModelError(f"live: feature column(s) {missing} missing (have {list(live.columns)})")
    rows = {f: {"psi": d.psi(live[f].to_numpy()), "ks": d.ks(live[f].to_numpy()),
                "n": int(np.isfinite(live[f].to_numpy(dtype="float64")).sum())}
            for f, d in reference.features.items()}
    if predictions is not None:
        p = np.asarray(predictions, dtype="float64")
        rows["prediction"] = {"psi": reference.prediction.psi(p), "ks": reference.prediction.ks(p),
                              "n": int(np.isfinite(p).sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("feature")


__all__ = ["PSI_EPS", "psi", "ks_statistic", "bin_edges", "bin_index", "shares", "Distribution", "DriftReference",
           "drift_table"]

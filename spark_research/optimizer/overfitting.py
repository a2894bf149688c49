"""How much of a sweep's best result is selection luck: PBO by CSCV and the deflated Sharpe ratio.

* :func:`pbo_cscv` — the probability of backtest overfitting by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado and Zhu, "The Probability of Backtest
  Overfitting", J. Computational Finance 2017). The T x N matrix of per-period returns of
  N trials is cut into S row blocks; for every choice of S/2 blocks as in-sample (the rest
  out-of-sample) the in-sample best trial's out-of-sample relative rank w is turned into a
  logit ln(w / (1 - w)); PBO is the share of logits <= 0, i.e. how often the in-sample
  winner lands in the bottom half out of sample.
* :func:`deflated_sharpe_ratio` — the probability that the true Sharpe ratio of the
  selected strategy exceeds the Sharpe ratio one would expect from the best of N unskilled
  trials (Bailey and López de Prado, "The Deflated Sharpe Ratio", J. Portfolio Management
  2014), correcting for the number of trials, their dispersion, the sample length and the
  non-normality (skewness, kurtosis) of the returns.

Example (the deflated Sharpe ratio paper's numerical example)::

    >>> round(deflated_sharpe_ratio(sr=2.5 / 250 ** 0.5, n_obs=1250, n_trials=100,
    ...                             var_sr=0.5 / 250, skew=-3, kurtosis=10), 4)
    0.9004
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def sharpe(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio (mean / std, ddof 1) of each column; NaN where std is 0."""
    r = np.asarray(returns, dtype=float)
    if r.ndim == 1:
        r = r[:, None]
    mean = r.mean(axis=0)
    std = r.std(axis=0, ddof=1) if r.shape[0] > 1 else np.full(r.shape[1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / std, np.nan)


@dataclass
class PBOResult:
    """Outcome of :func:`pbo_cscv`."""

    pbo: float  #: share of splits whose in-sample best ranks in the bottom half out of sample
    logits: np.ndarray  #: one logit per split
    is_best: np.ndarray  #: index of the in-sample best trial per split
    oos_rank: np.ndarray  #: its relative out-of-sample rank w in (0, 1) per split
    is_perf: np.ndarray  #: in-sample performance of the selected trial per split
    oos_perf: np.ndarray  #: its out-of-sample performance per split
    n_splits: int
    n_trials: int

    @property
    def performance_degradation(self) -> float:
        """Slope of OOS on IS performance of the selected trials (negative: IS success does not carry over)."""
        if len(self.is_perf) < 2 or np.ptp(self.is_perf) == 0:
            return float("nan")
        return float(np.polyfit(self.is_perf, self.oos_perf, 1)[0])


def pbo_cscv(returns: np.ndarray, n_splits: int = 16,
             metric: Callable[[np.ndarray], np.ndarray] = sharpe) -> PBOResult:
    """Probability of backtest overfitting of ``returns`` (T periods x N trials) by CSCV.

    ``n_splits`` (S, even, >= 2) contiguous row blocks of near-equal size; every one of the
    C(S, S/2) halves is used once as in-sample. ``metric`` maps a (rows x N) block to N
    performances (default: per-period Sharpe). Non-finite performances rank lowest. Ties in
    the out-of-sample ranking get their average rank. ``w = rank / (N + 1)``.

    Example::

        >>> rng = np.random.default_rng(0)
        >>> noise = rng.normal(0, 0.01, size=(240, 50))
        >>> 0.2 < pbo_cscv(noise, n_splits=8).pbo < 0.8     # no skill: about 1/2
        True
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"returns must be a 2-D (periods x trials) array, got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise ValueError(f"returns need at least 2 trials (columns), got {n}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even integer >= 2, got {n_splits!r}")
    if t < n_splits:
        raise ValueError(f"returns have {t} periods, fewer than n_splits={n_splits}")
    blocks = np.array_split(np.arange(t), n_splits)
    logits, best, ranks, is_perf, oos_perf = [], [], [], [], []
    for combo in itertools.combinations(range(n_splits), n_splits // 2):
        is_rows = np.concatenate([blocks[i] for i in combo])
        oos_rows = np.concatenate([blocks[i] for i in range(n_splits) if i not in combo])
        r_is = np.where(np.isfinite(p := metric(m[is_rows])), p, -np.inf)
        r_oos = np.where(np.isfinite(q := metric(m[oos_rows])), q, -np.inf)
        star = int(np.argmax(r_is))
        below = np.sum(r_oos < r_oos[star])
        equal = np.sum(r_oos == r_oos[star])
        rank = below + (equal + 1) / 2.0  # 1-based, ties averaged
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
        best.append(star)
        ranks.append(w)
        is_perf.append(r_is[star])
        oos_perf.append(r_oos[star])
    logits_a = np.array(logits)
    return PBOResult(pbo=float(np.mean(logits_a <= 0)), logits=logits_a, is_best=np.array(best),
                     oos_rank=np.array(ranks), is_perf=np.array(is_perf), oos_perf=np.array(oos_perf),
                     n_splits=n_splits, n_trials=n)


def expected_max_sharpe(n_trials: int, var_sr: float) -> float:
    """SR0: the expected maximum Sharpe ratio of ``n_trials`` unskilled trials whose Sharpe ratios vary by ``var_sr``.

    ``sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))`` with g the Euler-Mascheroni constant.

    Example::

        >>> round(expected_max_sharpe(100, 0.5 / 250), 4)
        0.1132
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials!r}")
    if not (var_sr >= 0 and math.isfinite(var_sr)):
        raise ValueError(f"var_sr must be finite and >= 0, got {var_sr!r}")
    if n_trials == 1:
        return 0.0
    z1 = _N.inv_cdf(1 - 1 / n_trials)
    z2 = _N.inv_cdf(1 - 1 / (n_trials * math.e))
    return math.sqrt(var_sr) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(sr: float, n_obs: int, n_trials: int, var_sr: float, skew: float = 0.0,
                          kurtosis: float = 3.0) -> float:
    """Deflated Sharpe ratio: P(true SR > SR0) for a per-period Sharpe ``sr`` over ``n_obs`` returns.

    ``kurtosis`` is Pearson's (3 for a normal distribution), ``var_sr`` the variance of the
    per-period Sharpe ratios across the ``n_trials`` trials. All Sharpe ratios are per period
    (not annualised).
    """
    if n_obs < 2:
        raise ValueError(f"n_obs must be >= 2, got {n_obs!r}")
    sr0 = expected_max_sharpe(n_trials, var_sr)
    denom = 1 - skew * sr + (kurtosis - 1) / 4 * sr ** 2
    if denom <= 0:
        raise ValueError(f"1 - skew*sr + (kurtosis-1)/4*sr^2 = {denom!r} <= 0 (skew={skew!r}, kurtosis={kurtosis!r}, sr={sr!r})")
    return _N.cdf((sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def dsr_of_best(returns: np.ndarray) -> dict[str, float]:
    """Deflated Sharpe ratio of the best trial (by per-period Sharpe) of a (periods x trials) matrix.

    Trials whose Sharpe is undefined (no variation) are not counted as trials.
    """
    m = np.asarray(returns, dtype=float)
    srs = sharpe(m)
    ok = np.isfinite(srs)
    if ok.sum() < 1:
        raise ValueError("no trial has a defined Sharpe ratio (every return column is constant)")
    best = int(np.nanargmax(np.where(ok, srs, -np.inf)))
    r = m[:, best]
    mu, sd = r.mean(), r.std()
    skew = float(np.mean((r - mu) ** 3) / sd ** 3)
    kurt = float(np.mean((r - mu) ** 4) / sd ** 4)
    n_trials = int(ok.sum())
    var_sr = float(np.var(srs[ok], ddof=1)) if n_trials > 1 else 0.0
    sr0 = expected_max_sharpe(n_trials, var_sr)
    return {"best": best, "sr": float(srs[best]), "sr0": sr0, "n_trials": n_trials, "var_sr": var_sr,
            "skew": skew, "kurtosis": kurt, "n_obs": int(m.shape[0]),
            "dsr": deflated_sharpe_ratio(float(srs[best]), m.shape[0], n_trials, var_sr, skew, kurt)}


def period_returns(values: np.ndarray, init_cash: float) -> np.ndarray:
    """Per-period returns from portfolio values at period ends (rows), starting from ``init_cash``."""
    v = np.asarray(values, dtype=float)
    prev = np.vstack([np.full((1, v.shape[1]), float(init_cash)), v[:-1]])
    return v / prev - 1.0

"""PBO by CSCV and the deflated Sharpe ratio against worked examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from spark_research.optimizer.overfitting import (
    deflated_sharpe_ratio,
    dsr_of_best,
    expected_max_sharpe,
    pbo_cscv,
    period_returns,
)

mean = lambda block: block.mean(axis=0)  # noqa: E731  (performance = mean return: easy to follow by hand)


def test_pbo_worked_example_by_hand():
    # 4 periods (S = 4 blocks of one row) x 3 trials A, B, C; C(4, 2) = 6 splits.
    m = np.array([[6.5, 2.0, -1.0],
                  [4.0, -0.5, 3.0],
                  [-3.0, 1.0, 2.5],
                  [-2.0, 5.0, 0.5]])
    # IS rows | IS sums A, B, C  | best | OOS sums A, B, C | OOS rank of best | w = rank/4 | logit
    # (0, 1)  | 10.5, 1.5, 2     | A    | -5, 6, 3         | 1                | 1/4        | ln(1/3)
    # (0, 2)  | 3.5, 3, 1.5      | A    | 2, 4.5, 3.5      | 1                | 1/4        | ln(1/3)
    # (0, 3)  | 4.5, 7, -0.5     | B    | 1, 0.5, 5.5      | 1                | 1/4        | ln(1/3)
    # (1, 2)  | 1, 0.5, 5.5      | C    | 4.5, 7, -0.5     | 1                | 1/4        | ln(1/3)
    # (1, 3)  | 2, 4.5, 3.5      | B    | 3.5, 3, 1.5      | 2                | 2/4        | 0
    # (2, 3)  | -5, 6, 3         | B    | 10.5, 1.5, 2     | 1                | 1/4        | ln(1/3)
    # every logit <= 0 (the median case counts as overfit): PBO = 6/6
    res = pbo_cscv(m, n_splits=4, metric=mean)
    assert res.is_best.tolist() == [0, 0, 1, 2, 1, 1]
    np.testing.assert_allclose(res.oos_rank, [0.25, 0.25, 0.25, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(res.logits, [math.log(1 / 3)] * 4 + [0.0, math.log(1 / 3)])
    assert res.pbo == 1.0


def test_pbo_is_zero_when_one_trial_dominates_every_period():
    # trial B beats A and C in every row: it is the IS best of every split and ranks 3 of 3 OOS:
    # w = 3/4, logit = ln 3 > 0 for all six splits.
    m = np.array([[1.0, 2.0, 0.0], [0.5, 3.0, 1.0], [-1.0, 0.0, -2.0], [2.0, 4.0, 1.5]])
    res = pbo_cscv(m, n_splits=4, metric=mean)
    assert res.pbo == 0.0
    assert (res.is_best == 1).all()
    np.testing.assert_allclose(res.logits, math.log(3))


def test_pbo_of_pure_noise_is_about_one_half_and_of_real_skill_near_zero():
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 0.01, size=(400, 40))
    assert 0.3 < pbo_cscv(noise, n_splits=10).pbo < 0.7
    skilled = noise.copy()
    skilled[:, 5] += 0.006  # a real edge of 0.6 standard deviations per period
    assert pbo_cscv(skilled, n_splits=10).pbo < 0.05


def test_pbo_rejects_bad_input_naming_it():
    with pytest.raises(ValueError, match="n_splits must be an even integer >= 2, got 3"):
        pbo_cscv(np.zeros((10, 3)), n_splits=3)
    with pytest.raises(ValueError, match="at least 2 trials"):
        pbo_cscv(np.zeros((10, 1)), n_splits=2)
    with pytest.raises(ValueError, match="4 periods, fewer than n_splits=8"):
        pbo_cscv(np.zeros((4, 3)), n_splits=8)


def test_deflated_sharpe_ratio_reproduces_the_papers_numerical_example():
    # Bailey & López de Prado (2014), section "A numerical example": an annualised SR of 2.5
    # over 5 years of daily returns (T = 1250), N = 100 trials whose annualised SRs have a
    # variance of 0.5, returns with skewness -3 and kurtosis 10. Per-period (daily) values:
    sr, var_sr = 2.5 / math.sqrt(250), 0.5 / 250
    # SR0 = sqrt(V) ((1-g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))) = 0.0447 * 2.5302 = 0.1132
    assert expected_max_sharpe(100, var_sr) == pytest.approx(0.1132, abs=1e-4)
    # DSR = Z((0.1581 - 0.1132) sqrt(1249) / sqrt(1 + 3 * 0.1581 + 9/4 * 0.1581^2)) = Z(1.2831) = 0.9004
    assert deflated_sharpe_ratio(sr, 1250, 100, var_sr, skew=-3, kurtosis=10) == pytest.approx(0.9004, abs=1e-4)


def test_dsr_falls_as_trials_grow_and_equals_psr_for_one_trial():
    args = dict(sr=0.1, n_obs=500, var_sr=0.002, skew=0.0, kurtosis=3.0)
    assert deflated_sharpe_ratio(n_trials=1000, **args) < deflated_sharpe_ratio(n_trials=10, **args)
    # one trial: SR0 = 0 and the DSR is the probabilistic Sharpe ratio Z(SR sqrt(T-1) / sqrt(1 + SR^2/2))
    psr = sps.norm.cdf(0.1 * math.sqrt(499) / math.sqrt(1 + 0.1 ** 2 / 2))
    assert deflated_sharpe_ratio(n_trials=1, **args) == pytest.approx(psr, rel=1e-12)


def test_dsr_of_best_uses_the_best_trials_moments():
    rng = np.random.default_rng(3)
    m = rng.standard_t(5, size=(300, 20)) * 0.01 + 0.0005
    out = dsr_of_best(m)
    srs = m.mean(0) / m.std(0, ddof=1)
    best = int(np.argmax(srs))
    assert out["best"] == best and out["sr"] == pytest.approx(srs[best])
    assert out["skew"] == pytest.approx(sps.skew(m[:, best]))
    assert out["kurtosis"] == pytest.approx(sps.kurtosis(m[:, best], fisher=False))
    assert out["var_sr"] == pytest.approx(np.var(srs, ddof=1))
    want = deflated_sharpe_ratio(srs[best], 300, 20, np.var(srs, ddof=1), sps.skew(m[:, best]),
                                 sps.kurtosis(m[:, best], fisher=False))
    assert out["dsr"] == pytest.approx(want)


def test_period_returns_start_from_initial_cash():
    v = np.array([[110.0], [99.0], [108.9]])
    np.testing.assert_allclose(period_returns(v, 100.0)[:, 0], [0.10, -0.10, 0.10])

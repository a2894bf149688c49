"""PSI and KS on distributions whose values can be checked by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spark_research.models.drift import (
    Distribution,
    DriftReference,
    bin_edges,
    drift_table,
    ks_statistic,
    psi,
    shares,
)
from spark_research.models.errors import ModelError


def test_psi_of_two_bins_by_hand():
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.4 ln 1.8 + 0.4 ln 5
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5), abs=1e-12)


def test_psi_is_zero_for_identical_shares_and_symmetric():
    e, a = [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]
    assert psi(e, e) == 0.0
    assert psi(e, a) == pytest.approx(psi(a, e))


def test_psi_floors_empty_bins():
    # an empty live bin counts as 1e-4, not 0: (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(expected, abs=1e-4)


def test_psi_rejects_mismatched_bins():
    with pytest.raises(ModelError, match=r"same length, got \(2,\) and \(3,\)"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])


def test_ks_of_shifted_grids_by_hand():
    ref = np.arange(100.0)
    assert ks_statistic(ref, ref) == 0.0
    assert ks_statistic(ref, ref + 30) == pytest.approx(0.30)  # 30 of 100 grid points apart
    assert ks_statistic(ref, ref + 1_000) == 1.0
    assert ks_statistic(ref, []) == 0.0


def test_ks_of_normals_one_sigma_apart_is_near_the_theoretical_value():
    rng = np.random.default_rng(0)
    ks = ks_statistic(rng.normal(0, 1, 20_000), rng.normal(1, 1, 20_000))
    assert ks == pytest.approx(2 * 0.5 * math.erf(0.5 / math.sqrt(2)), abs=0.02)  # 2 Phi(0.5) - 1 = 0.383


def test_bins_are_training_deciles_and_shares_sum_to_one():
    v = np.arange(1_000.0)
    edges = bin_edges(v, 10)
    assert len(edges) == 9 and edges[0] == pytest.approx(99.9)
    assert np.allclose(shares(v, edges), 0.1)
    # live values all above the training range land in the last bin
    assert shares(v + 10_000, edges).tolist() == [0.0] * 9 + [1.0]


def test_reference_quantiles_reproduce_the_training_distribution():
    rng = np.random.default_rng(1)
    v = rng.normal(size=10_000)
    d = Distribution.fit(v, bins=10, n_quantiles=200)
    assert d.psi(v) == pytest.approx(0.0, abs=1e-9)
    assert d.ks(v) < 0.01  # 200 quantiles: within 1/200 of the exact ECDF


def test_drift_table_flags_the_shifted_feature_only():
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"stable": rng.normal(size=5_000), "shifted": rng.normal(size=5_000)})
    ref = DriftReference.fit(train, rng.uniform(size=5_000))
    live = pd.DataFrame({"stable": rng.normal(size=2_000), "shifted": rng.normal(1.0, 1.0, size=2_000)})
    t = drift_table(ref, live, rng.uniform(size=2_000))
    assert t.loc["stable", "psi"] < 0.02 and t.loc["stable", "ks"] < 0.05
    assert t.loc["shifted", "psi"] > 0.25 and t.loc["shifted", "ks"] == pytest.approx(0.383, abs=0.04)
    assert t.loc["prediction", "psi"] < 0.02 and t.loc["prediction", "n"] == 2_000


def test_drift_table_names_missing_live_columns():
    ref = DriftReference.fit(pd.DataFrame({"a": np.arange(100.0)}), np.linspace(0, 1, 100))
    with pytest.raises(ModelError, match=r"feature column\(s\) \['a'\] missing"):
        drift_table(ref, pd.DataFrame({"b": [1.0]}))

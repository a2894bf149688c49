"""Purged K-fold with embargo, CPCV paths and their Sharpe distribution, and the noise test (the leak and its cure)."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from spark_research.features.cv import (
    CombinatorialPurgedKFold,
    CVError,
    PurgedKFold,
    cpcv_paths,
    cpcv_report,
    label_spans,
)
from spark_research.features.training import train_folds
from spark_research.optimizer.overfitting import dsr_of_best, pbo_cscv, sharpe


def _spans(n: int, horizon: int) -> pd.Series:
    """Sample i's label is decided at bar i and resolved ``horizon`` bars later."""
    return pd.Series(np.arange(n) + horizon, index=np.arange(n))


# --------------------------------------------------------------------------- purged K-fold


def test_purged_kfold_index_sets_exactly():
    # 20 samples, labels span 3 bars (t1 = t0 + 2), 4 folds of 5, embargo 10% = 2 samples
    splits = list(PurgedKFold(n_splits=4, embargo=0.1, t1=_spans(20, 2)).split(np.zeros((20, 1))))
    tests = [te.tolist() for _, te in splits]
    trains = [tr.tolist() for tr, _ in splits]
    assert tests == [list(range(0, 5)), list(range(5, 10)), list(range(10, 15)), list(range(15, 20))]
    # fold 0: test labels reach bar 6 -> 5, 6 purged (they start before), 7, 8 embargoed
    assert trains[0] == list(range(9, 20))
    # fold 1: 3, 4 end inside the test span (purged), 10, 11 start inside it, 12, 13 embargoed
    assert trains[1] == [0, 1, 2] + list(range(14, 20))
    # fold 2: 8, 9 purged before; 15, 16 purged after, 17, 18 embargoed
    assert trains[2] == list(range(0, 8)) + [19]
    # fold 3: only the purge before; nothing after the last fold to embargo
    assert trains[3] == list(range(0, 13))


def test_purged_kfold_without_overlap_or_embargo_is_plain_kfold():
    X = np.zeros((23, 2))
    ours = [(tr.tolist(), te.tolist()) for tr, te in PurgedKFold(5).split(X)]
    plain = [(tr.tolist(), te.tolist()) for tr, te in KFold(5).split(X)]
    assert ours == plain


def test_no_training_label_overlaps_a_test_label_and_the_embargo_follows_each_fold():
    rng = np.random.default_rng(3)
    n = 500
    t0 = np.sort(rng.integers(0, 2_000, n))
    t1 = t0 + rng.integers(0, 40, n)
    cv = PurgedKFold(n_splits=6, embargo=0.02, t1=pd.Series(t1, index=t0))
    h = math.ceil(0.02 * n)
    for train, test in cv.split(np.zeros(n)):
        lo, hi = t0[test].min(), t1[test].max()
        assert not ((t0[train] <= hi) & (t1[train] >= lo)).any()
        after = np.flatnonzero(t0 > hi)
        assert not np.isin(after[:h], train).any()           # embargoed
        assert np.isin(after[h:], train).all()                # and nothing more
        before = np.flatnonzero(t1 < lo)
        assert np.isin(before, train).all()                   # everything that cannot leak is kept


def test_times_as_timestamps_give_the_same_splits_as_positions():
    ts = pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC")
    t1_times = pd.Series(ts[np.minimum(np.arange(30) + 4, 29)], index=ts)
    t1_pos = pd.Series(np.minimum(np.arange(30) + 4, 29), index=np.arange(30))
    X = pd.DataFrame({"f": np.arange(30.0)}, index=ts)
    a = [(tr.tolist(), te.tolist()) for tr, te in PurgedKFold(3, 0.05, t1=t1_times).split(X)]
    b = [(tr.tolist(), te.tolist()) for tr, te in PurgedKFold(3, 0.05, t1=t1_pos).split(X)]
    assert a == b
    # an array of label ends takes t0 from X's index
    c = [(tr.tolist(), te.tolist()) for tr, te in PurgedKFold(3, 0.05, t1=t1_times.to_numpy()).split(X)]
    assert c == a


def test_purged_kfold_is_a_scikit_learn_splitter():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    cv = PurgedKFold(n_splits=4, embargo=0.01, t1=_spans(200, 5))
    scores = cross_val_score(LogisticRegression(), X, y, cv=cv)
    assert len(scores) == cv.get_n_splits() == 4 and scores.min() > 0.9
    assert "PurgedKFold(embargo=0.01, n_splits=4" in repr(cv)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: PurgedKFold(n_splits=1), "n_splits must be an integer >= 2, got 1"),
    (lambda: PurgedKFold(embargo=1.5), r"embargo must be a fraction of the samples in \[0, 1\), got 1.5"),
    (lambda: CombinatorialPurgedKFold(6, 6), r"n_test_groups must be an integer in \[1, n_groups=6\), got 6"),
])
def test_bad_splitter_arguments_are_refused_naming_them(make, message):
    with pytest.raises(CVError, match=message):
        make()


def test_labels_out_of_time_order_are_refused():
    t1 = pd.Series([5, 6, 7], index=[0, 2, 1])
    with pytest.raises(CVError, match="t0 must be in time order: sample 2"):
        list(PurgedKFold(2, t1=t1).split(np.zeros(3)))
    with pytest.raises(CVError, match=r"t1\[1\] = 0 is before its t0 = 1"):
        label_spans(3, np.array([1, 0, 2]))
    with pytest.raises(CVError, match="t1: 2 label ends"):
        list(PurgedKFold(2, t1=np.array([1, 2])).split(np.zeros(3)))


# --------------------------------------------------------------------------- CPCV


@pytest.mark.parametrize(("n_groups", "k"), [(6, 2), (10, 2), (8, 3), (5, 1), (4, 2)])
def test_cpcv_split_and_path_counts(n_groups, k):
    cv = CombinatorialPurgedKFold(n_groups=n_groups, n_test_groups=k)
    splits = list(cv.split(np.zeros((n_groups * 7, 1))))
    assert len(splits) == cv.get_n_splits() == math.comb(n_groups, k)
    assert cv.n_paths == math.comb(n_groups, k) * k // n_groups
    table = cv.path_splits()
    assert table.shape == (cv.n_paths, n_groups)
    combos = cv.test_groups()
    # every path takes each group from a split that tested it, and each (split, group) is used by one path
    used = {(int(s), g) for row in table for g, s in enumerate(row)}
    assert len(used) == table.size
    assert all(g in combos[s] for s, g in used)


def test_cpcv_purges_and_embargoes_around_every_test_group():
    n = 60
    cv = CombinatorialPurgedKFold(n_groups=6, n_test_groups=2, embargo=0.05, t1=_spans(n, 2))
    splits = list(cv.split(np.zeros(n)))
    # split 4 = groups (0, 5): test 0-9 and 50-59; purge 10, 11 after group 0 (start within its span),
    # embargo 12, 13, 14 (ceil(0.05 * 60) = 3); before group 5: 48, 49 end inside it
    assert cv.test_groups()[4] == (0, 5)
    train, test = splits[4]
    assert test.tolist() == list(range(0, 10)) + list(range(50, 60))
    assert train.tolist() == list(range(15, 48))
    # split 5 = groups (1, 2): adjacent groups, one contiguous test block 10-29
    train, test = splits[5]
    assert test.tolist() == list(range(10, 30))
    assert train.tolist() == list(range(0, 8)) + list(range(35, 60))


def test_cpcv_paths_recombine_each_splits_test_predictions():
    cv = CombinatorialPurgedKFold(n_groups=4, n_test_groups=2)
    n = 12
    tests = [te for _, te in cv.split(np.zeros(n))]
    # split s predicts 100 * s + sample position: a path shows where each group came from
    preds = [100.0 * s + te for s, te in enumerate(tests)]
    paths = cpcv_paths(cv, preds, n)
    table = cv.path_splits()
    for p in range(cv.n_paths):
        for g, block in enumerate(np.array_split(np.arange(n), 4)):
            np.testing.assert_array_equal(paths[p, block], 100.0 * table[p, g] + block)
    with pytest.raises(CVError, match="split_predictions: 2 arrays for 6 CPCV splits"):
        cpcv_paths(cv, preds[:2], n)


def test_cpcv_report_distribution_feeds_the_platforms_pbo_and_dsr():
    rng = np.random.default_rng(7)
    n = 1_200
    ret = rng.normal(0.0, 0.01, n)
    cv = CombinatorialPurgedKFold(n_groups=6, n_test_groups=2)
    tests = [te for _, te in cv.split(np.zeros(n))]
    skilled = [np.where(rng.random(len(te)) < 0.6, np.sign(ret[te]), -np.sign(ret[te])) for te in tests]
    coins = {f"coin{i}": [rng.choice([-1.0, 1.0], len(te)) for te in tests] for i in range(5)}
    rep = cpcv_report(cv, {"skilled": skilled, **coins}, ret, pbo_splits=8)
    assert rep.path_sharpe.shape == (5, 6)
    # the distribution is the per-path Sharpe of position * return
    paths = cpcv_paths(cv, skilled, n)
    np.testing.assert_allclose(rep.path_sharpe["skilled"], sharpe((paths * ret).T))
    assert rep.best == "skilled" and (rep.path_sharpe["skilled"] > 0).all()
    assert rep.summary.loc["skilled", "positive"] == 1.0
    # PBO and DSR are the optimizer's functions on the path-mean returns (samples x trials)
    mean_ret = np.column_stack([rep.path_returns[k].mean(axis=1) for k in ["skilled", *coins]])
    assert rep.pbo.pbo == pbo_cscv(mean_ret, n_splits=8).pbo
    expected = dsr_of_best(mean_ret)
    assert rep.dsr["dsr"] == expected["dsr"] and rep.dsr["best"] == "skilled"
    assert rep.dsr["dsr"] > 0.95 and rep.pbo.pbo < 0.2


def test_cpcv_report_of_a_single_model_has_no_pbo():
    cv = CombinatorialPurgedKFold(n_groups=4, n_test_groups=2)
    ret = np.linspace(-0.01, 0.01, 40)
    preds = [np.ones(len(te)) for _, te in cv.split(np.zeros(40))]
    rep = cpcv_report(cv, preds, ret)
    assert rep.pbo is None and list(rep.path_sharpe.columns) == ["model"]
    assert rep.dsr["n_trials"] == 1 and rep.dsr["sr0"] == 0.0
    with pytest.raises(CVError, match=r"returns\[3\] = nan"):
        cpcv_report(cv, preds, np.where(np.arange(40) == 3, np.nan, ret))


# --------------------------------------------------------------------------- the noise test

#: Noise test set-up. 20 independent symbols x 1,000 bars, rows in time order (all symbols of
#: bar t, then bar t+1). Label: the sign of the next 10 bars' summed noise returns (so labels
#: of neighbouring bars overlap by up to 9 bars). Features: 8 cumulative sums of other noise
#: per symbol, drawn independently of the returns (persistent and autocorrelated, like price
#: levels or slow averages). The model is a 1-nearest-neighbour classifier (kd-tree): it memorises.
#: Plain contiguous K-fold lets the rows just before and after each test fold, whose labels
#: share most of their bars with the test labels, into training; purging and the embargo
#: remove them. 50 folds, embargo 1% (10 bars).
NOISE_SEED = 20261202
PLAIN_MIN_ACCURACY = 0.57       # plain K-fold: clearly better than chance
CHANCE_BAND = (0.46, 0.54)      # purged K-fold + embargo: chance
# Checked offline on 30 seeds (0..29): plain 0.610-0.638 (mean 0.623), purged 0.479-0.513 (mean 0.501);
# NOISE_SEED itself: plain 0.625, purged 0.509.


def _noise_panel(seed: int, n_symbols: int = 20, n_bars: int = 1_000, horizon: int = 10, n_features: int = 8):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n_bars + horizon, n_symbols))
    csum = np.vstack([np.zeros((1, n_symbols)), np.cumsum(r, axis=0)])
    forward = csum[1 + horizon:n_bars + 1 + horizon] - csum[1:n_bars + 1]  # sum of r[t+1 .. t+horizon]
    y = (forward > 0).astype(int).reshape(-1)
    X = np.cumsum(rng.standard_normal((n_bars, n_symbols, n_features)), axis=0).reshape(-1, n_features)
    bar = np.repeat(np.arange(n_bars), n_symbols)
    return X, y, pd.Series(bar + horizon, index=bar)


def test_noise_plain_kfold_leaks_and_purged_kfold_with_embargo_shows_chance():
    X, y, t1 = _noise_panel(NOISE_SEED)
    model = KNeighborsClassifier(n_neighbors=1, algorithm="kd_tree")  # the features share one scale
    plain = train_folds(model, X, y, KFold(n_splits=50))
    purged = train_folds(model, X, y, PurgedKFold(n_splits=50, embargo=0.01, t1=t1))
    acc_plain = float(np.mean(plain.oof() == y))
    acc_purged = float(np.mean(purged.oof() == y))
    assert acc_plain >= PLAIN_MIN_ACCURACY, f"plain K-fold accuracy {acc_plain:.3f}: the leak did not show"
    assert CHANCE_BAND[0] <= acc_purged <= CHANCE_BAND[1], f"purged K-fold accuracy {acc_purged:.3f} is not chance"
    # chance is one half: the labels are balanced
    assert abs(np.mean(y) - 0.5) < 0.05


def test_docstring_examples_run():
    import spark_research.features.cv as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0

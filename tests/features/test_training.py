"""Fold training: seeding, sample weights, out-of-fold predictions, and a 2-worker Dask cluster giving the in-process predictions."""
from __future__ import annotations

import doctest
import time

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from spark_research.features.cv import CombinatorialPurgedKFold, PurgedKFold, cpcv_report
from spark_research.features.training import TrainingError, seeded, train_folds


@pytest.fixture(scope="module")
def data():
    """1,500 samples, 6 features, a noisy nonlinear binary target, overlapping 5-bar labels."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(1_500, 6))
    y = ((X[:, 0] * X[:, 1] + 0.5 * X[:, 2] + rng.normal(0, 0.7, 1_500)) > 0).astype(int)
    t1 = pd.Series(np.arange(1_500) + 5, index=np.arange(1_500))
    return X, y, t1


def _lgbm() -> LGBMClassifier:
    # bagging and feature sub-sampling on: the seed matters, so determinism is really tested
    return LGBMClassifier(n_estimators=40, num_leaves=15, subsample=0.7, subsample_freq=1, colsample_bytree=0.7)


def _forest():
    return make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=30, max_depth=6, n_jobs=-1))


# --------------------------------------------------------------------------- seeding


def test_seeded_fixes_seeds_threads_and_lightgbm_determinism_inside_pipelines():
    pipe = make_pipeline(StandardScaler(), LGBMClassifier(n_jobs=-1))
    p = seeded(pipe, seed=5, n_threads=2).get_params()
    assert p["lgbmclassifier__random_state"] == 5 and p["lgbmclassifier__n_jobs"] == 2
    assert p["lgbmclassifier__deterministic"] is True and p["lgbmclassifier__force_row_wise"] is True
    f = seeded(_forest(), seed=9).get_params()
    assert f["randomforestclassifier__random_state"] == 9 and f["randomforestclassifier__n_jobs"] == 1
    assert pipe.get_params()["lgbmclassifier__random_state"] is None  # the caller's model is left alone


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"n_threads": 0}, "n_threads must be an integer >= 1, got 0"),
])
def test_seeded_rejects_bad_arguments(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        seeded(LogisticRegression(), **kwargs)


def test_same_seed_same_predictions_other_seed_other_predictions(data):
    X, y, t1 = data
    cv = PurgedKFold(4, embargo=0.01, t1=t1)
    a = train_folds(_lgbm(), X, y, cv, predict="proba", seed=1)
    b = train_folds(_lgbm(), X, y, cv, predict="proba", seed=1)
    c = train_folds(_lgbm(), X, y, cv, predict="proba", seed=2)
    assert np.array_equal(a.oof(), b.oof())
    assert not np.array_equal(a.oof(), c.oof())


# --------------------------------------------------------------------------- results


def test_fold_scores_and_out_of_fold_predictions(data):
    X, y, t1 = data
    res = train_folds(_lgbm(), X, y, PurgedKFold(5, embargo=0.02, t1=t1), seed=0)
    s = res.scores
    assert list(s.index) == [0, 1, 2, 3, 4] and (s["n_test"] == 300).all()
    assert (s["n_train"] < 1_200).all()  # purged and embargoed
    oof = res.oof()
    assert not np.isnan(oof).any()
    for fold, idx in zip(res.folds, res.test_indices):  # each fold's score is its accuracy
        assert fold.score == pytest.approx(np.mean(oof[idx] == y[idx]))
    assert 0.6 < res.mean_score < 1.0 and set(s["worker"]) == {"local"}


def test_sample_weights_reach_the_last_pipeline_step_and_the_score(data):
    X, y, t1 = data
    w = np.where(np.arange(len(y)) % 3 == 0, 3.0, 0.5)
    cv = PurgedKFold(3, t1=t1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    res = train_folds(pipe, X, y, cv, sample_weight=w)
    train, test = next(cv.split(X))
    ref = make_pipeline(StandardScaler(), LogisticRegression())
    ref.fit(X[train], y[train], logisticregression__sample_weight=w[train])
    np.testing.assert_array_equal(res.folds[0].predictions, ref.predict(X[test]))
    hit = ref.predict(X[test]) == y[test]
    assert res.folds[0].score == pytest.approx(np.sum(w[test] * hit) / np.sum(w[test]))


def test_cpcv_training_feeds_the_path_sharpe_report(data):
    X, y, t1 = data
    cv = CombinatorialPurgedKFold(n_groups=5, n_test_groups=2, embargo=0.01, t1=t1)
    res = train_folds(LogisticRegression(), X, y, cv)
    assert len(res.folds) == 10
    with pytest.raises(TrainingError, match="tested by more than one split"):
        res.oof()
    ret = np.where(y == 1, 0.01, -0.01)  # a position on the predicted side earns the label's move
    rep = cpcv_report(cv, [2.0 * p - 1.0 for p in res.split_predictions], ret)
    assert rep.path_sharpe.shape == (cv.n_paths, 1) and (rep.path_sharpe["model"] > 0).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y": np.zeros(10)}, "y has 10 rows for 1500 rows of X"),
    ({"predict": "decision"}, "predict must be one of"),
    ({"scoring": "accurracy"}, "scoring 'accurracy' is not a scikit-learn scorer name"),
    ({"timeout": 0}, "timeout must be > 0 seconds, got 0"),
])
def test_train_folds_rejects_bad_arguments_naming_them(data, kwargs, message):
    X, y, t1 = data
    args = {"y": y, **kwargs}
    with pytest.raises(TrainingError, match=message):
        train_folds(LogisticRegression(), X, cv=PurgedKFold(3), **args)


# --------------------------------------------------------------------------- on Dask


def _warm() -> bool:
    import lightgbm  # noqa: F401
    import sklearn.ensemble  # noqa: F401

    import spark_research.features.training  # noqa: F401
    return True


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster of 2 single-threaded worker processes on 127.0.0.1, via the platform's connect()."""
    from spark_research.optimizer.cluster import close_client, connect

    client = connect(n_workers=2)
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) < 2:
        if time.monotonic() > deadline:
            close_client(client)
            raise TimeoutError("the 2 Dask workers did not start within 60 s")
        time.sleep(0.1)
    client.run(_warm)
    yield client
    close_client(client)


def test_folds_on_a_two_worker_cluster_predict_exactly_as_in_process(data, cluster):
    X, y, t1 = data
    cv = PurgedKFold(6, embargo=0.01, t1=t1)
    for model in (_lgbm(), _forest()):
        local = train_folds(model, X, y, cv, predict="proba", seed=4)
        remote = train_folds(model, X, y, cv, predict="proba", seed=4, client=cluster, timeout=120)
        assert np.array_equal(remote.oof(), local.oof()), type(model).__name__
        assert remote.scores["score"].tolist() == local.scores["score"].tolist()
        workers = set(remote.scores["worker"])
        assert "local" not in workers and workers <= set(cluster.scheduler_info()["workers"])
    assert len(workers) == 2, f"6 folds ran on {workers}: not spread over both workers"


def test_docstring_examples_run():
    import spark_research.features.training as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0

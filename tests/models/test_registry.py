"""The MLflow registry (SQLite backend) round trip, deterministic ids, and spec validation."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spark_research.models import inputs
from spark_research.models.errors import ModelError, UnknownModel
from spark_research.models.registry import TAG_ID, ModelRegistry
from spark_research.models.training import TrainSpec, build_dataset, train_model


def test_registry_is_mlflow_on_sqlite_under_spark_var(registry, card, var_dir):
    assert registry.tracking_uri == f"sqlite:///{var_dir / 'mlflow.db'}"
    assert (var_dir / "mlflow.db").is_file()
    run = registry.client.get_run(card.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_ID] == card.model_id
    assert run.data.params["horizon"] == "10" and run.data.params["estimator"] == "lightgbm"
    assert run.data.metrics["cv_accuracy"] == pytest.approx(card.cv_scores["accuracy"])
    assert run.info.artifact_uri.startswith((var_dir / "mlartifacts").as_uri())
    mv = registry.client.get_model_version(card.name, str(card.version))
    assert mv.run_id == card.run_id and mv.source.endswith("/model")


def test_round_trip_gives_the_same_card_and_bit_identical_predictions(registry, card, trained, live_bars):
    fresh = ModelRegistry(registry.root)  # a new process would start like this: nothing cached
    loaded = fresh.load(card.model_id)
    assert loaded.card.to_dict() == card.to_dict()
    X = inputs.compute_features(live_bars.set_index("timestamp"), card.features).dropna()
    assert np.array_equal(loaded.predict_proba(X), trained.estimator.predict_proba(X.to_numpy())[:, 1])


def test_card_holds_features_with_code_hashes_window_cv_scores_and_drift_bins(card, trained, train_bars, spec):
    assert card.features == list(spec.features)
    assert card.feature_hashes == inputs.feature_hashes(spec.features)
    assert card.columns == inputs.feature_columns(spec.features)
    X, y, t1 = build_dataset(train_bars, spec)
    assert pd.Timestamp(card.train_start) == X.index[0].tz_localize("UTC")  # bars are UTC; the engine's frames naive
    assert pd.Timestamp(card.train_end) == t1.max().tz_localize("UTC") and card.n_samples == len(X)
    assert card.cv_scores["folds"] == 3 and 0 < card.cv_scores["accuracy"] < 1
    ref = card.drift_reference
    assert list(ref.features) == card.columns
    assert all(abs(sum(d.expected) - 1) < 1e-9 for d in ref.features.values())
    assert ref.to_dict() == trained.drift.to_dict()


def test_identical_inputs_give_the_same_id_and_identical_predictions(trained, train_bars, spec, registry, card):
    again = train_model(train_bars, spec)
    assert again.model_id == trained.model_id
    assert np.array_equal(again.oof.to_numpy(), trained.oof.to_numpy())
    assert again.cv_scores == trained.cv_scores
    assert registry.register(again).run_id == card.run_id  # not logged twice
    assert list(registry.list()["model_id"]).count(card.model_id) == 1


@pytest.mark.parametrize("change", ["data", "features", "spec"])
def test_changed_inputs_change_the_id(trained, train_bars, spec, change):
    import dataclasses

    from spark_research.models.training import data_hash, model_id_of

    bars, other = train_bars, spec
    if change == "data":
        bars = train_bars.iloc[1:]
    elif change == "features":
        other = dataclasses.replace(spec, features=spec.features[:-1])
    else:
        other = dataclasses.replace(spec, horizon=12)
    same = model_id_of(spec, inputs.feature_hashes(spec.features), ["BTCUSDT"], data_hash(train_bars))
    assert same == trained.model_id  # the id train_model gives is this function of its inputs
    changed = model_id_of(other, inputs.feature_hashes(other.features), ["BTCUSDT"], data_hash(bars))
    assert changed != trained.model_id


def test_unknown_model_names_the_id_and_the_close_match(registry, card):
    with pytest.raises(UnknownModel, match=rf"unknown model '{card.model_id[:7]}'; did you mean '{card.model_id}'"):
        registry.card(card.model_id[:7])


def test_card_json_artifact_is_readable_without_mlflow(registry, card):
    from spark_research.models.registry import _local_path

    run = registry.client.get_run(card.run_id)
    stored = json.loads((_local_path(run.info.artifact_uri) / "card.json").read_text())
    assert stored["model_id"] == card.model_id and stored["feature_hashes"] == card.feature_hashes


@pytest.mark.parametrize(("field", "value", "message"), [
    ("estimator", "xgboost", "estimator must be one of"),
    ("label", "meta", "label must be one of"),
    ("horizon", 0, "horizon must be a positive integer"),
    ("n_splits", 1, "n_splits must be an integer >= 2"),
    ("embargo", 1.5, "embargo must be a fraction"),
    ("barrier", -1.0, "barrier must be > 0"),
    ("features", ("logret_1", "no_such_feature"), "no_such_feature"),
    ("features", ("logret_1", "logret_1"), "duplicate"),
    ("features", ("xs_ret_1",), "cross-asset"),
])
def test_train_spec_rejects_bad_fields_naming_field_and_value(field, value, message):
    with pytest.raises(ModelError, match=message) as err:
        TrainSpec(**{field: value})
    assert str(value if field != "features" else value[-1]) in str(err.value) or field == "features"


def test_a_single_class_dataset_is_refused(train_bars, spec):
    import dataclasses

    with pytest.raises(ModelError, match="a classifier needs both classes"):
        build_dataset(train_bars, dataclasses.replace(spec, threshold=1.0))  # no 10-bar return above 100%

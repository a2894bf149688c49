"""``spark model train|list|show`` on a temporary bar store and registry."""
from __future__ import annotations

import json

import pytest

from spark_research.cli import main
from spark_research.data import BarStore, generate_bars


@pytest.fixture(scope="module")
def store(tmp_path_factory, var_dir):
    root = tmp_path_factory.mktemp("cli_store")
    BarStore(root).write_bars(generate_bars("ETHUSDT", n=2_500, seed=11))
    return root


@pytest.fixture(scope="module")
def trained_id(store):
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["model", "train", "--symbol", "ETHUSDT", "--store", str(store), "--folds", "3",
                     "--features", "logret_1,rv_cc_20", "--features", "volume_z_50", "--horizon", "5",
                     "--estimator", "logistic", "--name", "eth-logit"])
    assert code == 0, out.getvalue()
    text = out.getvalue()
    model_id = text.split()[1]
    return model_id, text


def test_train_registers_a_model_from_stored_features(trained_id, store):
    from spark_research.features.store import FeatureStore

    model_id, text = trained_id
    assert len(model_id) == 12 and "(eth-logit v1): logistic on ETHUSDT" in text
    assert "purged 3-fold CV: accuracy" in text and f"--strategy model:{model_id}" in text
    assert FeatureStore(store).symbols() == ["ETHUSDT"]  # the features came through the store


def test_train_twice_gives_the_same_model(trained_id, store, capsys):
    assert main(["model", "train", "--symbol", "ETHUSDT", "--store", str(store), "--folds", "3",
                 "--features", "logret_1,rv_cc_20,volume_z_50", "--horizon", "5", "--estimator", "logistic",
                 "--name", "eth-logit"]) == 0
    assert capsys.readouterr().out.split()[1] == trained_id[0]


def test_list_shows_the_model(trained_id, capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(trained_id[0]))
    assert "eth-logit" in row and "logistic" in row and "ETHUSDT" in row


def test_show_prints_features_with_hashes_and_json(trained_id, capsys):
    from spark_research.models import inputs

    assert main(["model", "show", f"model:{trained_id[0]}"]) == 0
    out = capsys.readouterr().out
    for name, h in inputs.feature_hashes(["logret_1", "rv_cc_20", "volume_z_50"]).items():
        assert f"{name}" in out and h in out
    assert main(["model", "show", trained_id[0], "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["model_id"] == trained_id[0] and card["spec"]["horizon"] == 5 and "drift" not in card


def test_unknown_model_is_a_one_line_error(trained_id, capsys):
    assert main(["model", "show", "0000deadbeef"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spark model show: error: unknown model '0000deadbeef'") and err.count("\n") == 1


def test_unknown_feature_is_a_one_line_error(store, capsys):
    assert main(["model", "train", "--symbol", "ETHUSDT", "--store", str(store), "--features", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_backtest_cli_runs_the_model_strategy(trained_id, store, monkeypatch, capsys):
    monkeypatch.setenv("SPARK_STORE", str(store))
    assert main(["backtest", "--strategy", f"model:{trained_id[0]}", "--symbols", "ETHUSDT", "--last", "800"]) == 0
    assert f"model:{trained_id[0]}" in capsys.readouterr().out

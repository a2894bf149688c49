"""Shared, package-scoped fixtures of the models tests: bars, one trained and registered model.

The registry lives in a temporary ``SPARK_VAR`` for this package only (restored afterwards),
so ``"model:ID"`` resolves through the default registry as it does in the CLI and on workers.
"""
from __future__ import annotations

import pytest

from spark_research.data import generate_bars

#: Bars the model is trained on / traded on (out of sample).
N_TRAIN, N_TOTAL = 3_000, 4_500


@pytest.fixture(scope="package")
def var_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models_var")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_VAR", str(path))
        yield path


@pytest.fixture(scope="package")
def bars():
    return generate_bars("BTCUSDT", n=N_TOTAL, seed=7)


@pytest.fixture(scope="package")
def train_bars(bars):
    return bars.iloc[:N_TRAIN]


@pytest.fixture(scope="package")
def live_bars(bars):
    return bars.iloc[N_TRAIN:]


@pytest.fixture(scope="package")
def spec():
    from spark_research.models.training import TrainSpec

    return TrainSpec(n_splits=3, horizon=10, estimator_params={"n_estimators": 60})


@pytest.fixture(scope="package")
def trained(train_bars, spec):
    from spark_research.models.training import train_model

    return train_model(train_bars, spec)


@pytest.fixture(scope="package")
def registry(var_dir):
    from spark_research.models.registry import default_registry

    return default_registry()


@pytest.fixture(scope="package")
def card(registry, trained):
    return registry.register(trained)

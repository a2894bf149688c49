"""Explanations: MDA on purged folds, SHAP values that add up to the model's log-odds, and their plots."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from spark_research.models.errors import ModelError  # noqa: E402
from spark_research.models.explain import mda_importance, plot_importance, plot_shap_summary, shap_values  # noqa: E402
from spark_research.models.training import build_dataset  # noqa: E402


@pytest.fixture(scope="module")
def importance(trained, train_bars):
    return mda_importance(trained, train_bars, n_repeats=2, seed=3)


def test_mda_scores_every_column_out_of_sample(importance, trained):
    assert sorted(importance.index) == sorted(trained.columns)
    assert list(importance.columns) == ["importance", "std"]
    assert np.isfinite(importance.to_numpy()).all() and (importance["std"] >= 0).all()
    assert importance["importance"].is_monotonic_decreasing


def test_mda_is_deterministic_for_a_seed(importance, trained, train_bars):
    again = mda_importance(trained, train_bars, n_repeats=2, seed=3)
    pd.testing.assert_frame_equal(again, importance)


def test_mda_ranks_a_planted_signal_first(trained, train_bars):
    """Make the next bar's return follow the sign of volume_z_50: MDA must rank that feature first."""
    import dataclasses

    from spark_research.backtest.engine import to_frame
    from spark_research.models import inputs
    from spark_research.models.training import train_model

    frame = to_frame(train_bars)
    vz = inputs.compute_features(frame, ["volume_z_50"])["volume_z_50"].to_numpy()
    # plant: bar t+1 moves up 0.5% when volume_z_50 > 0 at bar t, down otherwise (prices only: volume unchanged)
    bump = np.where(np.nan_to_num(vz) > 0, 1.005, 0.995)
    factor = np.cumprod(np.r_[1.0, bump[:-1]])
    planted = frame.assign(**{c: frame[c] * factor for c in ("open", "high", "low", "close")})
    spec = dataclasses.replace(trained.spec, horizon=1, features=("logret_1", "rsi_14", "volume_z_50"))
    tm = train_model(planted, spec)
    imp = mda_importance(tm, planted, n_repeats=1, seed=0)
    assert imp.index[0] == "volume_z_50"
    assert imp.loc["volume_z_50", "importance"] > 5 * imp["importance"].iloc[1:].abs().max()


def test_mda_rejects_unknown_scoring(trained, train_bars):
    with pytest.raises(ModelError, match="scoring must be one of .* got 'f1'"):
        mda_importance(trained, train_bars, scoring="f1")


def test_shap_values_add_up_to_the_log_odds(trained, train_bars):
    sv = shap_values(trained, train_bars, max_rows=300)
    X = build_dataset(train_bars, trained.spec)[0].iloc[-300:]
    assert sv.shape == (300, len(trained.columns)) and list(sv.columns) == trained.columns
    raw = trained.estimator.booster_.predict(X.to_numpy(), raw_score=True)
    import shap

    base = shap.TreeExplainer(trained.estimator).expected_value
    base = base[-1] if np.ndim(base) else base
    np.testing.assert_allclose(sv.sum(axis=1).to_numpy() + base, raw, atol=1e-6)


def test_shap_of_the_logistic_pipeline_is_linear(train_bars, trained):
    import dataclasses

    from spark_research.models.training import train_model

    tm = train_model(train_bars, dataclasses.replace(trained.spec, estimator="logistic", estimator_params=()))
    sv = shap_values(tm, train_bars, max_rows=200)
    X = build_dataset(train_bars, tm.spec)[0].iloc[-200:]
    z = tm.estimator[:-1].transform(X.to_numpy())
    coef = tm.estimator[-1].coef_[0]
    # linear SHAP: coef_j * (z_j - mean z_j over the background); equal differences between two rows
    np.testing.assert_allclose((sv.iloc[0] - sv.iloc[1]).to_numpy(), coef * (z[0] - z[1]), atol=1e-9)


def test_plots_label_every_feature(importance, trained, train_bars):
    fig = plot_importance(importance)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sorted(labels) == sorted(importance.index)
    sv = shap_values(trained, train_bars, max_rows=100)
    X = build_dataset(train_bars, trained.spec)[0]
    fig2 = plot_shap_summary(sv, X)
    assert sorted(t.get_text() for t in fig2.axes[0].get_yticklabels()) == sorted(sv.columns)
    assert len(fig2.axes[0].collections) == len(sv.columns)


def test_holoviews_views_of_importance_and_drift(importance, trained, train_bars):
    import holoviews as hv

    from spark_research.models.drift import drift_table
    from spark_research.views.model_monitor import drift_bars, importance_bars

    plot = importance_bars(importance)
    assert isinstance(plot, hv.Overlay) and len(plot.Bars.I.data) == len(importance)
    X = build_dataset(train_bars, trained.spec)[0]
    table = drift_table(trained.drift, X)  # the training data against itself: PSI 0
    plot = drift_bars(table, threshold=0.25)
    assert isinstance(plot, hv.Overlay) and plot.HLine.I.data == 0.25
    assert plot.Bars.I.data["psi"].abs().max() < 1e-9

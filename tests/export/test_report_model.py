"""The PDF report of a model strategy (``model:ID``) has a "Model" section; other strategies' reports do not.

The bars carry a planted signal: the next bar moves up when ``volume_z_50`` is positive, down
otherwise. A model trained on the first bars learns it, and its report, run on the later bars
only (out of sample), must rank ``volume_z_50`` first by permutation importance (MDA), list the
registry's card (features and code hashes, training window, CV scores) and show the MDA and
SHAP charts as images, on both routes: chromium (``render_report``) and LaTeX (``spark export run``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from spark_research.export.report import MODEL_SAMPLE_ROWS, MODEL_SEED, render_report

SYMBOL = "BTCUSDT"
N_TRAIN, N_TOTAL = 3_000, 5_000
FEATURES = ("logret_1", "rsi_14", "volume_z_50")
SECTION = ("Model", "Features and code hashes", "Cross-validation scores", "Permutation importance (MDA)")


def planted_bars():
    """Seeded bars whose next move follows the sign of ``volume_z_50`` (prices only: volume unchanged)."""
    from spark_research.backtest.engine import to_frame
    from spark_research.data import generate_bars
    from spark_research.models import inputs

    frame = to_frame(generate_bars(SYMBOL, n=N_TOTAL, seed=7))
    vz = inputs.compute_features(frame, ["volume_z_50"])["volume_z_50"].to_numpy()
    bump = np.where(np.nan_to_num(vz) > 0, 1.0005, 0.9995)  # vs 0.0008 noise per bar
    factor = np.cumprod(np.r_[1.0, bump[:-1]])
    return frame.assign(**{c: frame[c] * factor for c in ("open", "high", "low", "close")})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private var dir (the model registry) and bar store holding the planted bars."""
    from spark_research.data.store import BarStore

    root = tmp_path_factory.mktemp("report_model")
    values = {"SPARK_VAR": str(root / "var"), "SPARK_STORE": str(root / "store")}
    bars = planted_bars()
    BarStore(values["SPARK_STORE"]).write_bars(bars.reset_index(), SYMBOL)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, v)
        yield {"values": values, "bars": bars, "root": root}


@pytest.fixture(scope="module")
def card(env):
    """A small LightGBM model trained on the first bars and registered (as tests/models/conftest.py does)."""
    from spark_research.models.registry import default_registry
    from spark_research.models.training import TrainSpec, train_model

    spec = TrainSpec(features=FEATURES, horizon=1, n_splits=3, estimator_params={"n_estimators": 60})
    return default_registry().register(train_model(env["bars"].iloc[:N_TRAIN], spec))


@pytest.fixture(scope="module")
def report_params(env, card):
    start = env["bars"].index[N_TRAIN].isoformat()  # after the training window: out of sample
    return {"strategy": f"model:{card.model_id}", "symbol": SYMBOL, "start": start, "fees": 0.0, "slippage": 0.0}


def pdf_text(path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True,
                         timeout=60)
    return " ".join(out.stdout.split())


def pdf_images(path) -> int:
    """Images placed in the PDF (``pdfimages -list`` rows of type image; soft masks left out)."""
    out = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True, timeout=60)
    return sum(1 for line in out.stdout.splitlines()[2:] if line.split()[2] == "image")


def importance_ranking(text: str) -> list[str]:
    """The features of the report's importance table in the order of its ``rank`` column (rows in that order too)."""
    table = text[text.index("Permutation importance (MDA) and SHAP values"):]
    found = {f: re.search(rf"\b{f} (\d+) -?\d", table) for f in FEATURES}
    assert all(found.values()), {f: bool(m) for f, m in found.items()}
    ranked = sorted(FEATURES, key=lambda f: int(found[f].group(1)))
    assert [int(found[f].group(1)) for f in ranked] == [1, 2, 3]
    assert [found[f].start() for f in ranked] == sorted(found[f].start() for f in ranked)
    return ranked


def assert_model_section(text: str, card) -> list[str]:
    """The "Model" section's headings, card and importance table are in ``text``; returns the table's ranking."""
    import pandas as pd

    for heading in SECTION:
        assert heading in text, heading
    assert f"model {card.model_id}" in text
    for feature, code_hash in card.feature_hashes.items():
        assert re.search(rf"{feature} {code_hash}\b", text), (feature, code_hash)  # the features table's row
    window = " to ".join(pd.Timestamp(t).strftime("%Y-%m-%d %H:%M") for t in (card.train_start, card.train_end))
    assert f"{window} UTC" in text
    mean, std = map(float, re.search(r"accuracy (\d\.\d+) (\d\.\d+) 3\b", text).groups())  # over the 3 folds
    assert (mean, std) == pytest.approx((card.cv_scores["accuracy"], card.cv_scores["accuracy_std"]), abs=1e-4)
    assert "0 of them inside the training window" in text  # the report's bars start after it
    return importance_ranking(text)


@pytest.mark.browser
def test_model_report_explains_the_model_on_its_bars_printed_by_chromium(env, card, report_params, tmp_path):
    from spark_research.models.explain import mda_importance
    from spark_research.models.registry import default_registry

    res = render_report("backtest", report_params, tmp_path / "model.pdf", renderer="chromium")
    assert res.renderer == "chromium"
    model = res.meta["model"]
    assert model["model_id"] == card.model_id and model["error"] is None
    assert model["ranked"][0] == "volume_z_50"  # the planted signal, found out of sample
    assert model["importance"]["volume_z_50"] > 5 * max(abs(model["importance"][f]) for f in FEATURES[:2])
    # computed on the report's bars (sampled, seeded): the same figures as asking the model directly
    report_bars = env["bars"].iloc[N_TRAIN:]
    again = mda_importance(default_registry().load(card.model_id), report_bars, refit=False,
                           max_rows=MODEL_SAMPLE_ROWS, seed=MODEL_SEED)
    assert again["importance"].round(6).to_dict() == model["importance"]
    assert assert_model_section(pdf_text(res.path), card) == model["ranked"]
    assert pdf_images(res.path) == 3  # equity/drawdown, MDA bars, SHAP summary


def test_model_report_from_the_cli_printed_by_latex(env, card, report_params, tmp_path):
    out = tmp_path / "model-latex.pdf"
    args = [f"{k}={v}" for k, v in report_params.items()]
    run = subprocess.run([sys.executable, "-m", "spark_research.cli", "export", "run", "backtest_trades",
                          "--format", "pdf", "--renderer", "latex", "--quiet", "--root", str(tmp_path / "exports"),
                          "--out", str(out), *[a for arg in args for a in ("--param", arg)]],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **env["values"]})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "state=succeeded" in run.stdout and "renderer=latex" in run.stdout
    assert assert_model_section(pdf_text(out), card)[0] == "volume_z_50"
    assert pdf_images(out) == 3


@pytest.mark.browser
def test_a_report_of_another_strategy_has_no_model_section(env, report_params, tmp_path):
    params = {**report_params, "strategy": "sma_cross", "params": {"fast": 5, "slow": 20}}
    res = render_report("backtest", params, tmp_path / "sma.pdf", renderer="chromium")
    text = pdf_text(res.path)
    assert "Statistics" in text and "Best 10 trades" in text
    for heading in SECTION[1:]:
        assert heading not in text, heading
    assert not re.search(r"\bModel\b", text)
    assert "model" not in res.meta
    assert pdf_images(res.path) == 1  # the equity/drawdown chart only


def test_bars_too_short_to_label_give_the_card_and_the_reason(env, card, tmp_path):
    from spark_research.export.report import write_model_section
    from spark_research.export.report_data import load_model_artifacts
    from spark_research.models.registry import default_registry

    summary = write_model_section(tmp_path, default_registry().load(card.model_id), env["bars"].iloc[:40])
    assert summary["model_id"] == card.model_id and "labelled samples" in summary["error"]
    loaded = load_model_artifacts(tmp_path)
    assert loaded.explanation is None and loaded.card["feature_hashes"] == card.feature_hashes
    assert "drift" not in loaded.card  # the training distributions stay in the registry
    assert loaded.error.startswith("no explanation on these bars")

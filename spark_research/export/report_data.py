"""What a report notebook shows, computed here so the notebook stays thin.

The report pipeline (:mod:`spark_research.export.report`) writes a backtest's artifacts to a
directory; a report notebook loads them with :func:`load_backtest_artifacts` and renders
tables (:class:`Table`: HTML for chromium, LaTeX for xelatex) and matplotlib charts (static
PNGs: no browser, JavaScript or CDN needed).
This module imports neither vectorbt nor Panel, so the report kernel starts fast.

A backtest of a model strategy (``model:ID``) also has model artifacts (:func:`write_model_artifacts`):
the model's card from the registry and its explanation on the report's bars
(:func:`spark_research.models.explain.explain_model`), loaded as :class:`ModelArtifacts` into
``BacktestArtifacts.model`` (None for any other strategy) for the report's "Model" section.

Example::

    >>> import pandas as pd
    >>> eq = pd.Series([100.0, 110.0, 99.0], index=pd.date_range("2024-01-30", periods=3, freq="D", tz="UTC"))
    >>> monthly_returns(eq).round(4).to_dict("records")
    [{'year': 2024, 'Jan': 0.1, 'Feb': -0.1}]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Files of a model strategy's artifacts (besides ``meta.json``): card and explanation meta, MDA, SHAP, their inputs.
MODEL_FILES = {"meta": "model.json", "importance": "model_importance.parquet", "shap": "model_shap.parquet",
               "X": "model_shap_X.parquet"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class BacktestArtifacts:
    """A backtest as the report sees it: meta (strategy, params, stats), equity, drawdown, trades."""

    meta: dict
    equity: pd.Series
    drawdown: pd.Series
    trades: pd.DataFrame
    trades_csv: str
    #: a model strategy's card and explanation (None for any other strategy)
    model: "ModelArtifacts | None" = None


@dataclass
class ModelArtifacts:
    """What the report's "Model" section shows: the registry's card (without its drift reference),
    the explanation on the report's bars (a :class:`~spark_research.models.explain.ModelExplanation`;
    None if it could not be computed, ``error`` says why) and how it was sampled (``sampling``)."""

    card: dict
    explanation: Any = None
    sampling: dict | None = None
    error: str | None = None


def _latex_number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


class Table:
    """A DataFrame for a report: HTML for the chromium route, a LaTeX tabular for the LaTeX one.

    IPython keeps every representation an object has; nbconvert's HTML template shows
    ``text/html`` and its LaTeX template ``text/latex``. A bare DataFrame gives LaTeX only
    its plain text (a monospaced block that wraps wide tables), hence this wrapper. The
    tabular is scaled down to the text width when it is wider.

    Example::

        >>> t = Table(pd.DataFrame({"total_pnl": [1.5, -2.25]}, index=["long", "short"]))
        >>> print(t._repr_latex_().splitlines()[3])
         & total\\_pnl \\\\
    """

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def _repr_html_(self) -> str:
        return self.frame._repr_html_()

    def _repr_latex_(self) -> str:
        tabular = self.frame.to_latex(escape=True, na_rep="NaN", float_format=_latex_number)
        return ("\\begin{center}\\begin{adjustbox}{max width=\\linewidth}\n"
                f"{tabular}\\end{{adjustbox}}\\end{{center}}\n")

    def __repr__(self) -> str:
        return repr(self.frame)


def write_backtest_artifacts(directory: Path, meta: dict, equity: pd.Series, drawdown: pd.Series,
                             trades: pa.Table, trades_csv: str) -> Path:
    """Write what :func:`load_backtest_artifacts` reads (used by the report pipeline).

    ``trades``: the exported trades as the Arrow table the CSV was written from (with its
    pandas metadata), written as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").write_text(json.dumps({**meta, "trades_csv": trades_csv}, default=str, indent=1))
    pd.DataFrame({"equity": equity, "drawdown": drawdown}).rename_axis("timestamp").reset_index() \
        .to_parquet(directory / "equity.parquet", index=False)
    pq.write_table(trades, directory / "trades.parquet")
    return directory


def load_backtest_artifacts(directory: str | Path) -> BacktestArtifacts:
    """Load a backtest's artifacts written by the report pipeline (with the model's, if it has them)."""
    d = Path(directory)
    meta = json.loads((d / "meta.json").read_text())
    eq = pq.read_table(d / "equity.parquet").to_pandas().set_index("timestamp")
    trades = pq.read_table(d / "trades.parquet").to_pandas()
    model = load_model_artifacts(d) if (d / MODEL_FILES["meta"]).exists() else None
    return BacktestArtifacts(meta, eq["equity"], eq["drawdown"], trades, meta["trades_csv"], model)


def write_model_artifacts(directory: Path, card: dict, explanation: Any = None, *, sampling: dict | None = None,
                          error: str | None = None) -> dict:
    """Write a model strategy's card (``card``: ``ModelCard.to_dict()``) and ``explanation`` (a
    ``ModelExplanation``, or None with ``error``) next to the backtest's artifacts; return the summary
    that goes into the report's meta (id, estimator, top features by MDA).
    """
    card = {k: v for k, v in card.items() if k != "drift"}  # bins of the training distributions: not for the page
    info: dict[str, Any] = {"card": card, "sampling": sampling, "error": error}
    summary: dict[str, Any] = {"model_id": card["model_id"], "estimator": card["estimator"],
                               "features": card["features"], "error": error}
    if explanation is not None:
        explanation.importance.to_parquet(directory / MODEL_FILES["importance"])
        explanation.shap.to_parquet(directory / MODEL_FILES["shap"])
        explanation.X.to_parquet(directory / MODEL_FILES["X"])
        info["explanation"] = {k: getattr(explanation, k) for k in
                               ("n_samples", "n_available", "in_training_window", "seed", "scoring")}
        summary["importance"] = explanation.importance["importance"].round(6).to_dict()
        summary["ranked"] = explanation.ranked()
    (directory / MODEL_FILES["meta"]).write_text(json.dumps(info, default=str, indent=1))
    return summary


def load_model_artifacts(directory: str | Path) -> ModelArtifacts:
    """The :class:`ModelArtifacts` written by :func:`write_model_artifacts`."""
    d = Path(directory)
    info = json.loads((d / MODEL_FILES["meta"]).read_text())
    explanation = None
    if "explanation" in info:
        from spark_research.models.explain import ModelExplanation

        explanation = ModelExplanation(importance=pd.read_parquet(d / MODEL_FILES["importance"]),
                                       shap=pd.read_parquet(d / MODEL_FILES["shap"]),
                                       X=pd.read_parquet(d / MODEL_FILES["X"]), **info["explanation"])
    return ModelArtifacts(info["card"], explanation, info.get("sampling"), info.get("error"))


def model_overview(card: dict) -> pd.DataFrame:
    """What the model is: id, kind (estimator and label), symbols, training window and samples, registry run.

    Example::

        >>> card = {"model_id": "3b07a574b7df", "name": "BTCUSDT-lightgbm", "estimator": "lightgbm",
        ...         "spec": {"label": "fixed", "horizon": 5}, "symbols": ["BTCUSDT"], "lookback": 15,
        ...         "train_start": "2024-01-01T00:14:00+00:00", "train_end": "2024-01-02T09:19:00+00:00",
        ...         "n_samples": 1981, "run_id": "736e", "version": 1}
        >>> model_overview(card).loc["kind", "value"]
        'lightgbm, fixed label over 5 bars'
    """
    spec = card.get("spec", {})
    kind = f"{card['estimator']}, {spec.get('label', '?')} label over {spec.get('horizon', '?')} bars"
    rows = {"model id": card["model_id"], "name": card.get("name", ""), "kind": kind,
            "symbols": ", ".join(card.get("symbols", [])),
            "training window": f"{_day_time(card.get('train_start'))} to {_day_time(card.get('train_end'))} UTC",
            "training samples": f"{int(card.get('n_samples', 0)):,}",
            "feature warm-up": f"{card.get('lookback', '?')} bars",
            "registry": f"run {card.get('run_id', '')}, version {card.get('version', '')}"}
    return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="model"))


def _day_time(iso: str | None) -> str:
    return pd.Timestamp(iso).strftime("%Y-%m-%d %H:%M") if iso else "?"


def model_features_table(card: dict) -> pd.DataFrame:
    """One row per feature of the model: its code hash (what the store keys its values by) and columns."""
    columns = card.get("columns", [])
    rows = []
    for name in card["features"]:
        cols = [c for c in columns if c == name or c.startswith(f"{name}_")] or [name]
        rows.append({"feature": name, "code hash": card["feature_hashes"].get(name, ""), "columns": ", ".join(cols)})
    return pd.DataFrame(rows).set_index("feature")


def cv_scores_table(cv_scores: dict) -> pd.DataFrame:
    """The purged cross-validation scores of the training run: mean and std over folds per metric.

    Example::

        >>> cv_scores_table({"accuracy": 0.52, "accuracy_std": 0.01, "folds": 3}).to_dict("index")
        {'accuracy': {'mean': 0.52, 'std': 0.01, 'folds': 3}}
    """
    folds = int(cv_scores.get("folds", 0))
    rows = {k: {"mean": float(v), "std": float(cv_scores.get(f"{k}_std", np.nan)), "folds": folds}
            for k, v in sorted(cv_scores.items()) if k != "folds" and not k.endswith("_std")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


def importance_table(explanation: Any) -> pd.DataFrame:
    """Features ranked by permutation importance (MDA) with its std and the mean |SHAP value|."""
    imp = explanation.importance
    table = imp.assign(mean_abs_shap=explanation.mean_abs_shap().reindex(imp.index))
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def stats_table(stats: dict) -> pd.DataFrame:
    """Stats formatted for reading: percentages as %, counts as integers."""
    pct = {"total_return", "cagr", "max_drawdown", "win_rate"}
    rows = []
    for k, v in stats.items():
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            text = "n/a"
        elif k in pct:
            text = f"{v * 100:.2f} %"
        elif k == "trades":
            text = f"{int(v)}"
        else:
            text = f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.2f}"
        rows.append({"stat": k, "value": text})
    return pd.DataFrame(rows).set_index("stat")


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Month-over-month returns of ``equity``: one row per year, one column per month."""
    month_end = equity.resample("ME").last().dropna()
    start = equity.iloc[:1]
    rets = pd.concat([start, month_end]).pct_change().dropna()
    rets = rets[~rets.index.duplicated(keep="last")]
    df = pd.DataFrame({"year": rets.index.year, "month": rets.index.month, "ret": rets.to_numpy()})
    table = df.pivot_table(index="year", columns="month", values="ret", aggfunc="sum")
    table.columns = [_MONTHS[m - 1] for m in table.columns]
    return table.reset_index()


def trade_summary(trades: pd.DataFrame) -> pd.DataFrame:
    """Counts, PnL and fees of the trades by side, plus an ``all`` row."""
    def one(g: pd.DataFrame) -> dict:
        return {"trades": len(g), "winners": int((g["pnl"] > 0).sum()), "losers": int((g["pnl"] < 0).sum()),
                "total_pnl": float(g["pnl"].sum()), "fees": float((g["entry_fees"] + g["exit_fees"]).sum()),
                "avg_return_pct": float(g["return"].mean() * 100) if len(g) else 0.0}

    rows = [{"side": side, **one(g)} for side, g in trades.groupby("side", sort=True)]
    rows.append({"side": "all", **one(trades)})
    return pd.DataFrame(rows).set_index("side")  # built row-wise so counts stay integers


def _plot_times(index: pd.Index) -> np.ndarray | pd.Index:
    """A zone-aware time index as ``datetime`` objects, which matplotlib plots as they are.

    Given the index itself, matplotlib first makes an array of pandas Timestamps of it, about a
    quarter of the chart's time for 4,000 points; the chart is the same (pixels and time zone).
    """
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        return index.to_pydatetime()
    return index


def equity_figure(equity: pd.Series, drawdown: pd.Series, max_points: int = 4_000):
    """A matplotlib figure: equity on top, drawdown (%) below; long series thinned for plotting."""
    import matplotlib.pyplot as plt

    step = max(1, len(equity) // max_points)
    eq, dd = equity.iloc[::step], drawdown.iloc[::step]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, height_ratios=(2, 1))
    ax1.plot(_plot_times(eq.index), eq.to_numpy(), lw=0.9, color="#1f5fa8")
    ax1.set_ylabel("equity")
    ax1.set_title("Equity and drawdown")
    ax2.fill_between(_plot_times(dd.index), dd.to_numpy() * 100, 0, color="#c0392b", alpha=0.5, lw=0)
    ax2.set_ylabel("drawdown %")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

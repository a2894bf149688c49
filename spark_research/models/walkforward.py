"""Walk-forward with retraining: per window, train on the in-sample bars, trade the out-of-sample ones.

The windows are the optimizer's (:func:`spark_research.optimizer.walkforward.wf_windows`,
rolling or anchored). In each window a model is trained on the in-sample bars only (labels
that would need bars past the window end are not made, so nothing of the out-of-sample period
reaches training), then its :class:`~spark_research.models.strategy.ModelStrategy` is
backtested with ``run_backtest`` on the out-of-sample bars with the given thresholds (the
features warm up inside the window, as the optimizer's walk-forward does). The out-of-sample
equity curves are chained into one, and the out-of-sample predictions into one series.

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.models.training import TrainSpec
    >>> res = walk_forward_retrain(generate_bars("BTCUSDT", n=3_000, seed=2), TrainSpec(n_splits=3),
    ...                            is_bars=1_500, oos_bars=750)
    >>> len(res.windows), res.windows["model_id"].nunique(), len(res.oos_equity) == 1_500
    (2, 2, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.models.errors import ModelError
from spark_research.models.strategy import strategy_for
from spark_research.models.training import TrainedModel, TrainSpec, train_model


@dataclass
class ModelWalkForwardResult:
    """Per-window models and out-of-sample results, chained OOS equity and predictions."""

    windows: pd.DataFrame  #: one row per window: bounds, model id, CV score, OOS stats
    oos_equity: pd.Series
    oos_predictions: pd.Series
    models: list[TrainedModel] = field(repr=False, default_factory=list)

    def report(self) -> dict[str, Any]:
        """Headline numbers: windows, mean CV accuracy in-sample, OOS total return and trades."""
        w = self.windows
        return {"windows": len(w), "cv_accuracy_mean": float(w["cv_accuracy"].mean()),
                "oos_total_return": float(self.oos_equity.iloc[-1] / self.oos_equity.iloc[0] - 1),
                "oos_trades": int(w["oos_trades"].sum()), "oos_sharpe_mean": float(w["oos_sharpe"].mean())}


def walk_forward_retrain(bars: pd.DataFrame, spec: TrainSpec | None = None, *, is_bars: int, oos_bars: int,
                         anchored: bool = False, params: Mapping[str, float] | None = None, fees: float = 0.001,
                         slippage: float = 0.0005, init_cash: float = 10_000.0) -> ModelWalkForwardResult:
    """Retrain per walk-forward window on one symbol's ``bars``; see the module docstring.

    ``params``: the strategy's thresholds (``entry``, ``exit``) for every window.
    """
    from spark_research.backtest.engine import run_backtest, split_symbols
    from spark_research.optimizer.walkforward import wf_windows

    spec = spec or TrainSpec()
    frames = split_symbols(bars)
    if len(frames) != 1:
        raise ModelError(f"bars: walk-forward retraining takes one symbol, got {sorted(frames)}")
    sym, frame = next(iter(frames.items()))
    rows, curves, preds, models = [], [], [], []
    level = init_cash
    for a, b, c, d in wf_windows(len(frame), is_bars=is_bars, oos_bars=oos_bars, anchored=anchored):
        tm = train_model({sym: frame.iloc[a:b]}, spec)
        strat = strategy_for(tm)
        oos = frame.iloc[c:d]
        res = run_backtest(strat, oos, params, fees=fees, slippage=slippage, init_cash=init_cash)
        eq = res.equity * (level / init_cash)
        level = float(eq.iloc[-1])
        curves.append(eq)
        preds.append(strat.predictions(oos)["p_up"])
        models.append(tm)
        rows.append({"is_start": _utc(frame.index[a]), "is_end": _utc(frame.index[b - 1]),
                     "oos_start": _utc(frame.index[c]), "oos_end": _utc(frame.index[d - 1]),
                     "model_id": tm.model_id, "cv_accuracy": tm.cv_scores.get("accuracy", np.nan),
                     "cv_roc_auc": tm.cv_scores.get("roc_auc", np.nan), **res.params,
                     "oos_total_return": res.stats["total_return"], "oos_sharpe": res.stats["sharpe"],
                     "oos_trades": res.stats["trades"]})
    p = pd.concat(preds).rename("p_up")
    return ModelWalkForwardResult(pd.DataFrame(rows), pd.concat(curves).rename("oos_equity"),
                                  p.set_axis(p.index.map(_utc)), models)


def _utc(ts: Any) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


__all__ = ["ModelWalkForwardResult", "walk_forward_retrain"]

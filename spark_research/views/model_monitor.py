"""Model monitor state and views: per-feature drift, live vs training predictions, inference latency.

:class:`ModelMonitorView` holds one browser session's state as ``param`` parameters around a
:class:`~spark_research.models.monitor.ModelMonitor` and streams new points into Bokeh
``ColumnDataSource``\\ s (``stream``/``patch``), so the browser appends instead of redrawing.

Where the bars come from: a replay of bars the model has not seen, ``bars_per_update`` per
refresh. The model is ``SPARK_MODEL_ID`` (a registered id; replayed on its first symbol's
sample bars after its training window) or, without it, a small demo model trained at start
on seeded synthetic bars (no registry write).

Also here: HoloViews plots of a model's explanations for notebooks (:func:`importance_bars`,
:func:`drift_bars`).

Example::

    >>> view = ModelMonitorView(bars_per_update=20)
    >>> view.update()
    >>> view.predictions, len(view.psi_src.data["feature"]) == len(view.monitor.columns)
    (20, True)
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource, Span
from bokeh.plotting import figure

_P_BINS = np.linspace(0.0, 1.0, 41)
_LOCK = threading.Lock()
_DEMO: dict[str, Any] = {}


def demo_model(n_train: int = 2_000, n_total: int = 30_000, seed: int = 42) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """``(trained model, its last training bars, bars to replay)``: a small seeded LightGBM model (cached per process)."""
    with _LOCK:
        if "model" not in _DEMO:
            from spark_research.data import generate_bars
            from spark_research.models.training import TrainSpec, train_model

            bars = generate_bars("BTCUSDT", n=n_total, seed=seed)
            spec = TrainSpec(n_splits=3, horizon=10, estimator_params={"n_estimators": 50}, name="demo")
            _DEMO.update(model=train_model(bars.iloc[:n_train], spec), history=bars.iloc[n_train - 300:n_train],
                         replay=bars.iloc[n_train:].reset_index(drop=True))
        return _DEMO["model"], _DEMO["history"], _DEMO["replay"]


def _registered(model_id: str) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    from spark_research.data.store import load_sample
    from spark_research.models.registry import default_registry

    loaded = default_registry().load(model_id.removeprefix("model:"))
    bars = load_sample(loaded.card.symbols[0])
    after = bars["timestamp"] > pd.Timestamp(loaded.card.train_end)
    start = int(np.argmax(after.to_numpy())) if after.any() else max(0, len(bars) - 5_000)
    return loaded, bars.iloc[max(0, start - 300):start], bars.iloc[start:].reset_index(drop=True)


class ModelMonitorView(param.Parameterized):
    """One session's live model monitor; call :meth:`update` periodically, lay out :meth:`panel`."""

    update_ms = param.Integer(default=500, bounds=(50, 10_000), doc="Refresh period.")
    bars_per_update = param.Integer(default=10, bounds=(1, 10_000), doc="Replayed bars fed per refresh.")
    window = param.Integer(default=500, bounds=(10, 100_000), doc="Drift window (predictions).")
    psi_threshold = param.Number(default=0.25, bounds=(0.0, None), doc="PSI above which a feature has drifted.")
    model_id = param.String(default="", doc="Model watched.")
    predictions = param.Integer(default=0, doc="Predictions made.")
    bars = param.Integer(default=0, doc="Bars fed.")
    last_p = param.Number(default=float("nan"), doc="Last P(up).")
    prediction_psi = param.Number(default=0.0, doc="PSI of live vs training predictions.")
    latency_p95 = param.Number(default=0.0, doc="Bar-to-prediction latency P95 over the window (ms).")
    drifted = param.List(default=[], doc="Features whose PSI is above the threshold.")
    finished = param.Boolean(default=False, doc="The replay has no bars left.")
    updates = param.Integer(default=0, doc="Refreshes done.")

    def __init__(self, model: Any = None, history: pd.DataFrame | None = None, replay: pd.DataFrame | None = None,
                 **params: Any) -> None:
        super().__init__(**params)
        from spark_research.models.monitor import ModelMonitor

        if model is None:
            model_id = os.environ.get("SPARK_MODEL_ID", "")
            model, history, replay = _registered(model_id) if model_id else demo_model()
        columns = list(model.columns if hasattr(model, "columns") else model.card.columns)
        # calendar encodings "drift" over any window shorter than a day or a week: shown, not watched
        watch = [c for c in columns if not c.startswith(("time_of_day", "day_of_week"))]
        self.monitor = ModelMonitor(model, window=self.window, history=history, psi_threshold=self.psi_threshold,
                                    min_samples=min(100, self.window), watch=watch)
        self.model_id = self.monitor.model_id
        self._replay = replay if replay is not None else pd.DataFrame()
        self._records = self._replay.to_dict("records")
        self._next = 0
        cols = self.monitor.columns
        self.psi_src = ColumnDataSource({"feature": cols, "psi": [0.0] * len(cols), "color": ["#4c78a8"] * len(cols)})
        train = self._training_prediction_density()
        self.pred_src = ColumnDataSource({"left": _P_BINS[:-1], "right": _P_BINS[1:], "live": np.zeros(len(train)),
                                          "train": train})
        self.latency_src = ColumnDataSource({"time": [], "p50": [], "p95": []})

    def _training_prediction_density(self) -> np.ndarray:
        q = np.asarray(self.monitor.reference.prediction.quantiles)
        counts, _ = np.histogram(np.clip(q, 0, 1), bins=_P_BINS)
        return counts / max(1, counts.sum())

    def update(self) -> None:
        """Feed the next replayed bars to the monitor and push the new numbers to the charts."""
        if self._next >= len(self._records):
            self.param.update(finished=True, updates=self.updates + 1)
            return
        batch = self._records[self._next:self._next + self.bars_per_update]
        self._next += len(batch)
        for bar in batch:
            self.monitor.update(bar)
        mon = self.monitor
        psi = mon.psi.fillna(0.0)
        over = [c for c in mon.watch if psi[c] > self.psi_threshold] if mon.samples >= mon.min_samples else []
        self.psi_src.patch({"psi": [(slice(0, len(psi)), psi.tolist())],
                            "color": [(slice(0, len(psi)), ["#d62728" if v > self.psi_threshold else "#4c78a8"
                                                             for v in psi])]})
        preds = np.asarray(mon.history()["p_up"]) if mon.samples else np.empty(0)
        counts, _ = np.histogram(np.clip(preds, 0, 1), bins=_P_BINS)
        self.pred_src.patch({"live": [(slice(0, len(counts)), (counts / max(1, counts.sum())).tolist())]})
        lat = np.asarray(mon.history()["latency_ms"]) if mon.samples else np.array([0.0])
        now = time.time() * 1000.0
        p50, p95 = float(np.quantile(lat, 0.5)), float(np.quantile(lat, 0.95))
        self.latency_src.stream({"time": [now], "p50": [p50], "p95": [p95]}, rollover=600)
        self.param.update(predictions=mon.predictions, bars=mon.bars,
                          last_p=float(preds[-1]) if len(preds) else float("nan"),
                          prediction_psi=float(np.nan_to_num(mon.prediction_psi)), latency_p95=p95, drifted=over,
                          updates=self.updates + 1)

    # ----------------------------------------------------------------- views
    @staticmethod
    def _figure(title: str, y_label: str, height: int, **kw: Any) -> figure:
        fig = figure(title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset",
                     toolbar_location="right", **kw)
        fig.yaxis.axis_label = y_label
        return fig

    def drift_chart(self) -> figure:
        """PSI per feature over the window, red above the threshold (dashed line)."""
        fig = self._figure("Feature drift (PSI vs training)", "PSI", 300, x_range=list(self.monitor.columns))
        fig.vbar(x="feature", top="psi", width=0.8, color="color", source=self.psi_src)
        fig.add_layout(Span(location=self.psi_threshold, dimension="width", line_dash="dashed", line_color="#d62728"))
        fig.xaxis.major_label_orientation = 0.8
        return fig

    def prediction_chart(self) -> figure:
        """Distribution of P(up): live window vs out-of-fold at training."""
        fig = self._figure("Predictions: live vs training", "share", 300)
        fig.quad(left="left", right="right", bottom=0, top="train", source=self.pred_src, alpha=0.35,
                 color="#7f7f7f", legend_label="training (out of fold)")
        fig.quad(left="left", right="right", bottom=0, top="live", source=self.pred_src, alpha=0.5,
                 color="#1f77b4", legend_label="live window")
        fig.xaxis.axis_label = "P(up)"
        return fig

    def latency_chart(self) -> figure:
        """Bar-to-prediction latency P50/P95 over the window (ms), streamed."""
        fig = self._figure("Inference latency, bar → prediction (ms)", "ms", 240, x_axis_type="datetime")
        fig.line("time", "p50", source=self.latency_src, legend_label="P50", color="#1f77b4", line_width=2)
        fig.line("time", "p95", source=self.latency_src, legend_label="P95", color="#d62728", line_width=2)
        fig.legend.location = "top_left"
        return fig

    def _counters_html(self, model_id: str, bars: int, predictions: int, drifted: list, finished: bool,
                       updates: int) -> str:
        state = "DRIFT: " + ", ".join(drifted) if drifted else "no drift"
        color = "#c62828" if drifted else "#2e7d32"
        cells = [("model", "sr-model-id", model_id), ("bars", "sr-model-bars", f"{bars:,}"),
                 ("predictions", "sr-model-predictions", f"{predictions:,}"), ("refreshes", "sr-model-updates",
                                                                                 f"{updates:,}")]
        html = "".join(f'<div style="display:inline-block;margin:0 18px 6px 0"><div style="font-size:11px;'
                       f'color:#666">{label}</div><div class="{cls}" style="font-size:20px">{v}</div></div>'
                       for label, cls, v in cells)
        html += (f'<span class="sr-model-drift" style="display:inline-block;padding:4px 10px;border-radius:12px;'
                 f'color:white;background:{color}">{state}</span>')
        return html + (' <i class="sr-model-finished">replay finished</i>' if finished else "")

    def panel(self) -> pn.viewable.Viewable:
        """The whole monitor: counters and drift state on top, charts below."""
        numbers = pn.Row(
            pn.indicators.Number.from_param(self.param.last_p, name="last P(up)", format="{value:.3f}",
                                            font_size="24pt"),
            pn.indicators.Number.from_param(self.param.prediction_psi, name="prediction PSI", format="{value:.3f}",
                                            font_size="24pt", colors=[(0.1, "green"), (0.25, "orange"), (1e9, "red")]),
            pn.indicators.Number.from_param(self.param.latency_p95, name="latency P95 (ms)", format="{value:.2f}",
                                            font_size="24pt", colors=[(2, "green"), (10, "orange"), (1e9, "red")]),
        )
        return pn.Column(
            pn.pane.HTML(pn.bind(self._counters_html, self.param.model_id, self.param.bars, self.param.predictions,
                                 self.param.drifted, self.param.finished, self.param.updates)),
            numbers,
            pn.Row(pn.pane.Bokeh(self.drift_chart()), pn.pane.Bokeh(self.prediction_chart()),
                   sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.latency_chart()),
            sizing_mode="stretch_width",
        )


# --- HoloViews plots of explanations, for notebooks ------------------------------------------
def _hv() -> Any:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the backend the options below are for)

    return hv


def importance_bars(importance: pd.DataFrame, title: str = "Permutation importance (MDA)") -> Any:
    """HoloViews bars of :func:`spark_research.models.explain.mda_importance` with error bars."""
    hv = _hv()

    data = importance.reset_index()
    bars = hv.Bars(data, "feature", ["importance", "std"]).opts(invert_axes=True, title=title)
    errors = hv.ErrorBars(data, "feature", ["importance", "std"]).opts(invert_axes=True)
    return bars * errors


def drift_bars(table: pd.DataFrame, threshold: float = 0.25, title: str = "Feature drift (PSI)") -> Any:
    """HoloViews bars of a drift table's PSI per feature with the threshold line."""
    hv = _hv()

    data = table.reset_index()[["feature", "psi"]]
    return hv.Bars(data, "feature", "psi").opts(title=title, xrotation=45) * hv.HLine(threshold)


__all__ = ["ModelMonitorView", "demo_model", "importance_bars", "drift_bars"]

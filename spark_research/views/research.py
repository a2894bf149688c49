"""Research explorer state and views: backtest a strategy (equity, drawdown, stats, trades) and
sweep two of its parameters on the optimizer's Dask cluster, shown as a heatmap.

Every strategy the resolver finds is offered (shipped, registered, plug-ins, files under
``SPARK_STRATEGY_PATH``: :func:`~spark_research.backtest.registry.list_strategies`), and the
parameter inputs are built from its ``Param`` declarations (ranges, steps).

:class:`ResearchExplorer` holds one browser session's choices as ``param`` parameters; the app
(``apps/research.py``) only lays out its views. Sweeps go to the running platform's optimizer
(``spark serve``) or, served alone, to a one-worker LocalCluster started on first use.

Example::

    >>> ex = ResearchExplorer(strategy="sma_cross", symbol="BTCUSDT", bars=2_000)   # doctest: +SKIP
    >>> ex.run_backtest(); ex.stats["trades"] > 0                                   # doctest: +SKIP
    True
    >>> ex.sweep_values("fast")                                                     # doctest: +SKIP
    [2, 51, 101, 150, 200]
"""
from __future__ import annotations

import html
import threading
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from spark_research.backtest import get_strategy, run_backtest
from spark_research.backtest.registry import list_strategies
from spark_research.data import default_store
from spark_research.views.backtest import drawdown_area, equity_curve
from spark_research.views.optimizer import objective_heatmap

if not hv.Store.renderers:  # outside a notebook: the bokeh backend, so chart options validate
    import holoviews.plotting.bokeh  # noqa: F401

OBJECTIVES = ("sharpe", "total_return", "sortino", "cagr", "max_drawdown", "win_rate")
_LOCK = threading.Lock()
_OWN_OPTIMIZER: Any = None
_BARS: dict[tuple[str, int], pd.DataFrame] = {}


def optimizer():
    """The platform's optimizer under ``spark serve``; else this process's own one-worker optimizer."""
    global _OWN_OPTIMIZER
    from spark_research.platform import runtime

    platform = runtime.current()
    if platform is not None:
        if platform.optimizer is None:
            st = platform.states["optimizer"]
            if st.state == "failed":
                raise RuntimeError(f"the optimizer failed to start ({st.error}); see /health")
            raise RuntimeError("the optimizer is still starting (see /health); try again in a few seconds")
        return platform.optimizer
    with _LOCK:
        if _OWN_OPTIMIZER is None:
            from spark_research.optimizer import Optimizer

            _OWN_OPTIMIZER = Optimizer(n_workers=1)
        return _OWN_OPTIMIZER


def load_bars(symbol: str, n: int) -> pd.DataFrame:
    """The last ``n`` stored bars of ``symbol`` (cached per process)."""
    key = (symbol, n)
    if key not in _BARS:
        _BARS[key] = default_store().load_bars(symbol).tail(n).reset_index(drop=True)
    return _BARS[key]


def strategy_choices() -> dict[str, str]:
    """``{label: name or ref}`` of every strategy found; file strategies are labelled ``Class (file.py)``."""
    out: dict[str, str] = {}
    for info in list_strategies():
        if info.error:
            continue
        ident = info.identity
        if ident.kind in ("shipped", "registered", "plugin") and ident.portable:
            out[ident.name] = ident.name
        elif ident.kind in ("path", "file"):
            out[f"{ident.name} ({ident.origin.rsplit('/', 1)[-1]})"] = ident.ref
    return out


def parse_values(text: str, name: str) -> list[float]:
    """``"5, 10, 20"`` -> ``[5, 10, 20]``; a clear error naming the field otherwise."""
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise ValueError(f"{name}: give at least one value, got {text!r}")
    if len(values) > 25:
        raise ValueError(f"{name}: at most 25 values in an interactive sweep, got {len(values)}")
    return [int(v) if float(v).is_integer() else v for v in values]


class ResearchExplorer(param.Parameterized):
    """One session of the research explorer (see module docstring)."""

    strategy = param.Selector(default="sma_cross", objects=["sma_cross"], doc="strategy to test (name or ref)")
    symbol = param.Selector(default="BTCUSDT", objects=["BTCUSDT"], doc="stored symbol")
    bars = param.Integer(default=20_000, bounds=(500, 1_000_000), doc="the last N one-minute bars")
    fees = param.Number(default=0.001, bounds=(0, 0.05), doc="fee per trade (fraction)")
    slippage = param.Number(default=0.0005, bounds=(0, 0.05), doc="slippage per trade (fraction)")
    x_param = param.Selector(default=None, objects=[], doc="sweep parameter on the x axis")
    y_param = param.Selector(default=None, objects=[], doc="sweep parameter on the y axis")
    x_values = param.String(default="", doc="comma-separated values of the x parameter")
    y_values = param.String(default="", doc="comma-separated values of the y parameter")
    objective = param.Selector(default="sharpe", objects=list(OBJECTIVES))
    message = param.String(default="", doc="outcome of the last action")
    sweep_progress = param.Integer(default=0, bounds=(0, 100))
    result_version = param.Integer(default=0)
    sweep_version = param.Integer(default=0)

    def __init__(self, **params: Any):
        wanted = params.pop("strategy", "sma_cross")
        super().__init__(**params)
        choices = strategy_choices()  # found anew for each session: a new strategy file shows up on reload
        if wanted not in choices.values():
            get_strategy(wanted)  # an unknown name is an error here, not a silently different strategy
            choices[str(wanted)] = wanted
        self.param.strategy.objects = choices
        with param.parameterized.discard_events(self):
            self.strategy = wanted
        symbols = default_store().symbols("bars") or ["BTCUSDT"]
        self.param.symbol.objects = symbols
        if self.symbol not in symbols:
            self.symbol = symbols[0]
        self.values: dict[str, float] = {}
        self.result = None
        self.handle = None
        self.sweep_result = None
        self._on_strategy()

    # ------------------------------------------------------------------ state
    @param.depends("strategy", watch=True)
    def _on_strategy(self) -> None:
        strat = get_strategy(self.strategy)
        names = list(strat.params)
        self.values = {n: p.default for n, p in strat.params.items()}
        self.param.x_param.objects = names
        self.param.y_param.objects = names
        self.x_param = names[0]
        self.y_param = names[1] if len(names) > 1 else names[0]

    @param.depends("x_param", watch=True)
    def _on_x(self) -> None:
        self.x_values = ", ".join(map(str, self.sweep_values(self.x_param)))

    @param.depends("y_param", watch=True)
    def _on_y(self) -> None:
        self.y_values = ", ".join(map(str, self.sweep_values(self.y_param)))

    def sweep_values(self, name: str | None, n: int = 5) -> list[float]:
        """``n`` values spread over the parameter's declared range, on its step."""
        if name is None:
            return []
        p = get_strategy(self.strategy).params[name]
        raw = np.linspace(p.low, p.high, n)
        vals = sorted({round(p.low + round((v - p.low) / p.step) * p.step, 10) for v in raw})
        return [int(v) if float(v).is_integer() else v for v in vals]

    @property
    def stats(self) -> dict[str, float]:
        return {} if self.result is None else self.result.stats

    # ------------------------------------------------------------------ actions
    def run_backtest(self, event: Any = None) -> None:
        """Backtest the strategy with the current parameters on the chosen bars."""
        try:
            bars = load_bars(self.symbol, self.bars)
            self.result = run_backtest(self.strategy, bars, dict(self.values), fees=self.fees, slippage=self.slippage)
        except Exception as exc:  # shown to the user: a bad parameter must not break the page
            self.message = f"backtest failed: {exc}"
            return
        s = self.result.stats
        self.message = (f"backtest {self.result.strategy} {self.values} on {self.symbol}: {s['trades']} trades, "
                        f"total return {s['total_return']:.2%}, {self.result.runtime_ms:.0f} ms")
        self.result_version += 1

    def run_sweep(self, event: Any = None) -> None:
        """Submit a grid sweep of ``x_param`` x ``y_param`` to the optimizer (the other parameters fixed)."""
        from spark_research.optimizer import SweepSpec

        if self.handle is not None and not self.handle.wait(0):
            self.message = f"sweep {self.handle.id} is still running"
            return
        try:
            if self.x_param == self.y_param:
                raise ValueError(f"x and y parameter are both {self.x_param!r}: pick two different parameters")
            values = {k: [v] for k, v in self.values.items()}
            values[self.x_param] = parse_values(self.x_values, "x values")
            values[self.y_param] = parse_values(self.y_values, "y values")
            spec = SweepSpec(strategy=self.strategy, symbols=[self.symbol], values=values, objective=self.objective,
                             fees=self.fees, slippage=self.slippage, user=pn.state.user or "research",
                             name="research explorer")
            bars = load_bars(self.symbol, self.bars).set_index("timestamp").drop(columns="symbol")
            self.handle = optimizer().submit(spec, {self.symbol: bars})
        except Exception as exc:
            self.message = f"sweep refused: {exc}"
            return
        self.sweep_progress = 0
        self.message = f"sweep {self.handle.id}: {len(values[self.x_param]) * len(values[self.y_param])} combinations queued"

    def poll(self) -> None:
        """Follow the running sweep (periodic callback): progress, then the heatmap."""
        h = self.handle
        if h is None or self.sweep_result is not None and self.sweep_result.id == h.id:
            return
        self.sweep_progress = int(100 * h.steps_done / max(h.total_steps, 1))
        if not h.wait(0):
            return
        try:
            self.sweep_result = h.result(timeout=0)
        except Exception as exc:
            self.message = f"sweep {h.id} failed: {exc}"
            self.sweep_result = None
            self.handle = None
            return
        self.sweep_progress = 100
        best = self.sweep_result.best_params if len(self.sweep_result.table) else {}
        self.message = f"sweep {h.id} done: best {self.objective} at {best}"
        self.sweep_version += 1

    # ------------------------------------------------------------------ views
    def param_inputs(self) -> pn.Column:
        """One input per strategy parameter (rebuilt when the strategy changes)."""
        @param.depends(self.param.strategy)
        def inputs(strategy: str) -> pn.Column:
            widgets = []
            for name, p in get_strategy(strategy).params.items():
                cls = pn.widgets.IntInput if p.is_int else pn.widgets.FloatInput
                w = cls(name=name, value=self.values.get(name, p.default), start=p.low, end=p.high, step=p.step,
                        css_classes=[f"param-{name}"], width=140)
                w.param.watch(lambda e, n=name: self.values.__setitem__(n, e.new), "value")
                widgets.append(w)
            return pn.Row(*widgets)
        return pn.Column(inputs)

    def controls(self) -> pn.Column:
        run = pn.widgets.Button(name="Run backtest", button_type="primary", css_classes=["run-backtest"])
        run.on_click(self.run_backtest)
        return pn.Column(
            pn.widgets.Select.from_param(self.param.strategy, name="Strategy", css_classes=["strategy-select"]),
            pn.widgets.Select.from_param(self.param.symbol, name="Symbol"),
            pn.widgets.IntInput.from_param(self.param.bars, name="Bars (last N)", step=1000),
            pn.Row(pn.widgets.FloatInput.from_param(self.param.fees, name="Fees", step=0.0005, width=140),
                   pn.widgets.FloatInput.from_param(self.param.slippage, name="Slippage", step=0.0005, width=140)),
            pn.pane.Markdown("**Parameters**"), self.param_inputs(), run,
        )

    def sweep_controls(self) -> pn.Column:
        go = pn.widgets.Button(name="Run sweep", button_type="primary", css_classes=["run-sweep"])
        go.on_click(self.run_sweep)
        return pn.Column(
            pn.Row(pn.widgets.Select.from_param(self.param.x_param, name="x parameter", width=140),
                   pn.widgets.TextInput.from_param(self.param.x_values, name="x values", width=200)),
            pn.Row(pn.widgets.Select.from_param(self.param.y_param, name="y parameter", width=140),
                   pn.widgets.TextInput.from_param(self.param.y_values, name="y values", width=200)),
            pn.widgets.Select.from_param(self.param.objective, name="Objective"),
            go,
            pn.indicators.Progress.from_param(self.param.sweep_progress, name="sweep progress", width=340,
                                              css_classes=["sweep-progress"]),
        )

    @param.depends("message")
    def message_view(self) -> pn.pane.HTML:
        colour = "#c62828" if "failed" in self.message or "refused" in self.message else "#2e7d32"
        return pn.pane.HTML(f'<div id="research-message" style="color:{colour}">{html.escape(self.message)}</div>')

    @param.depends("result_version")
    def charts_view(self):
        if self.result is None:
            return pn.pane.Markdown("Run a backtest to see its equity and drawdown.")
        return pn.pane.HoloViews((equity_curve(self.result) + drawdown_area(self.result)).cols(1),
                                 sizing_mode="stretch_width", css_classes=["equity-chart"])

    @param.depends("result_version")
    def stats_view(self) -> pn.pane.DataFrame:
        df = pd.DataFrame({"value": self.stats}).rename_axis("stat") if self.result is not None else pd.DataFrame()
        return pn.pane.DataFrame(df, css_classes=["backtest-stats"], float_format="{:,.4f}".format, width=320)

    @param.depends("result_version")
    def trades_view(self) -> pn.pane.DataFrame:
        df = pd.DataFrame() if self.result is None else self.result.trades.head(200)
        return pn.pane.DataFrame(df, index=False, css_classes=["backtest-trades"], sizing_mode="stretch_width",
                                 max_rows=200, float_format="{:,.4f}".format)

    @param.depends("sweep_version")
    def heatmap_view(self):
        r = self.sweep_result
        if r is None:
            return pn.pane.Markdown("Run a sweep to see the objective over the two parameters.")
        return pn.pane.HoloViews(objective_heatmap(r.table, self.x_param, self.y_param, r.spec.objective),
                                 css_classes=["sweep-heatmap"])


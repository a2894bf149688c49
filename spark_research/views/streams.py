"""Stream monitor state and views: live price, message rate, latency, gaps, connection state.

:class:`StreamMonitor` holds the state of one browser session as ``param`` parameters and
streams new points into Bokeh ``ColumnDataSource``s (``stream`` with rollover, ``patch`` for
the histogram), so the browser *appends* instead of redrawing (≥ 2 Hz without falling behind).

Where the numbers come from: by default every session attaches to one process-wide
:class:`~spark_research.streams.pipeline.StreamPipeline` (replay exchange + ingest running in
background threads of the ``panel serve`` process, started on first use, persisting under
``settings().var_dir / "ingest"``). Its knobs come from the environment: ``SPARK_STREAM_RATE``
(msg/s, default 200), ``SPARK_STREAM_FAULTS`` (e.g. ``skip_every=500,drop_every=4000``),
``SPARK_STREAM_SYMBOL``, ``SPARK_STREAM_ORDERS`` (how the exchange executes orders, e.g.
``latency_ms=80,slippage_bps=3``). Pass ``source=`` to watch another object with a ``snapshot()`` method.

Example::

    >>> from spark_research.streams.pipeline import StreamPipeline
    >>> import tempfile
    >>> monitor = StreamMonitor(source=StreamPipeline(rate=500, n=5_000, root=tempfile.mkdtemp()).start())
    >>> monitor.update()            # what the periodic callback calls
    >>> monitor.msgs >= 0
    True
    >>> monitor.source.stop()
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from spark_research.streams.orders import OrderConfig
from spark_research.streams.replay import Faults

_STATE_COLORS = {"connected": "#2e7d32", "connecting": "#f9a825", "resyncing": "#1565c0", "disconnected": "#c62828"}
_GAP_BINS = np.logspace(-2, 4, 31)  # 0.01 ms .. 10 s, log-spaced
_LOCK = threading.Lock()
_SHARED = None


class _PlatformStream:
    """Under ``spark serve``: the ingest process's stream, once the platform has it (never a second
    ingest in the web process: it would write the same journal)."""

    def __init__(self, platform) -> None:
        self.platform = platform

    def snapshot(self) -> dict:
        pipeline = self.platform.pipeline
        if pipeline is None:
            raise StreamStarting("the live stream is starting (see /health)")
        return pipeline.snapshot()


class StreamStarting(RuntimeError):
    """The platform's ingest process is not up yet (or is being restarted)."""


def shared_pipeline():
    """The stream every monitor of this process watches: ``spark serve``'s ingest process, else a
    process-wide replay + ingest pipeline started on first call (knobs from ``SPARK_STREAM_*``)."""
    global _SHARED
    from spark_research.platform import runtime

    platform = runtime.current()
    if platform is not None and _SHARED is None:
        return _PlatformStream(platform)
    with _LOCK:
        if _SHARED is None:
            from spark_research.streams.pipeline import StreamPipeline

            _SHARED = StreamPipeline(symbol=os.environ.get("SPARK_STREAM_SYMBOL", "BTCUSDT"),
                                     rate=float(os.environ.get("SPARK_STREAM_RATE", "200")),
                                     faults=Faults.parse(os.environ.get("SPARK_STREAM_FAULTS", "")),
                                     orders=OrderConfig.parse(os.environ.get("SPARK_STREAM_ORDERS", "")),
                                     n=int(os.environ.get("SPARK_STREAM_TAPE", "500000"))).start()
        return _SHARED


def use_pipeline(pipeline) -> None:
    """Make ``pipeline`` (anything with ``snapshot()``, e.g. a :class:`~spark_research.streams.remote.RemoteStream`
    of ``spark serve``'s ingest process) the one every stream monitor of this process watches."""
    global _SHARED
    with _LOCK:
        _SHARED = pipeline


class StreamMonitor(param.Parameterized):
    """One session's view of a live ingest; call :meth:`update` periodically, lay out :meth:`panel`."""

    update_ms = param.Integer(default=250, bounds=(50, 5_000), doc="Refresh period (250 ms = 4 Hz).")
    window = param.Integer(default=1_200, bounds=(10, 100_000), doc="Points kept on the time charts.")
    state = param.String(default="disconnected", doc="Trade stream connection state.")
    depth_state = param.String(default="disconnected", doc="Depth stream connection state.")
    msgs = param.Integer(default=0, doc="Messages received (trade + depth).")
    trades = param.Integer(default=0, doc="Trades persisted.")
    msg_rate = param.Number(default=0.0, doc="Messages per second over the last refresh.")
    latency_p50 = param.Number(default=0.0, doc="Ingest latency P50 (ms), recent window.")
    latency_p95 = param.Number(default=0.0, doc="Ingest latency P95 (ms), recent window.")
    gaps = param.Integer(default=0, doc="Sequence gaps detected.")
    gaps_open = param.Integer(default=0, doc="Gaps not yet closed by a resync.")
    resyncs = param.Integer(default=0, doc="Trade backfills plus order book resyncs.")
    duplicates = param.Integer(default=0)
    malformed = param.Integer(default=0)
    reconnects = param.Integer(default=0)
    last_price = param.Number(default=0.0)
    updates = param.Integer(default=0, doc="Refreshes done (the page shows it moving).")

    def __init__(self, source=None, **params):
        super().__init__(**params)
        self.source = source if source is not None else shared_pipeline()
        self._prev: tuple[float, int] | None = None
        self._ticks = 0
        # One ColumnDataSource per chart; updates *stream* rows into them (rollover at `window`),
        # so the browser appends points instead of redrawing the figure.
        self.price_src = ColumnDataSource({"time": [], "price": []})
        self.rate_src = ColumnDataSource({"time": [], "msg_s": []})
        self.latency_src = ColumnDataSource({"time": [], "p50": [], "p95": []})
        self.gap_src = ColumnDataSource({"left": _GAP_BINS[:-1], "right": _GAP_BINS[1:],
                                         "count": np.zeros(len(_GAP_BINS) - 1)})

    def update(self) -> None:
        """Pull one snapshot from the source and stream the new points (cheap: no redraw)."""
        try:
            snap = self.source.snapshot()
        except (StreamStarting, OSError):
            self.param.update(state="connecting", updates=self.updates + 1)  # the ingest (re)starts
            return
        ing = snap["ingest"]
        c = ing["counters"]
        now = snap["time"] * 1000.0  # Bokeh datetime axes take epoch milliseconds
        t = time.monotonic()
        if self._prev is not None and t > self._prev[0]:
            self.msg_rate = (c["msgs"] - self._prev[1]) / (t - self._prev[0])
        self._prev = (t, c["msgs"])
        lat = ing["latency_ms"]
        self.param.update(
            state=ing["state"]["trade"], depth_state=ing["state"].get("depth", "disconnected"), msgs=c["msgs"],
            trades=c["trades"], latency_p50=lat["p50"] or 0.0, latency_p95=lat["p95"] or 0.0, gaps=c["gaps"],
            gaps_open=ing["gaps_open"], resyncs=c["resyncs"] + c["book_resyncs"], duplicates=c["duplicates"],
            malformed=c["malformed"], reconnects=c["reconnects"], last_price=ing["last_price"] or 0.0,
            updates=self.updates + 1)
        if ing["last_price"]:
            self.price_src.stream({"time": [now], "price": [float(ing["last_price"])]}, rollover=self.window)
        self.rate_src.stream({"time": [now], "msg_s": [float(self.msg_rate)]}, rollover=self.window)
        self.latency_src.stream({"time": [now], "p50": [self.latency_p50], "p95": [self.latency_p95]},
                                rollover=self.window)
        self._ticks += 1
        if snap["gaps_ms"] and self._ticks % 4 == 1:  # the histogram needs no more than ~1 Hz
            counts, _ = np.histogram(np.clip(snap["gaps_ms"], _GAP_BINS[0], _GAP_BINS[-1]), bins=_GAP_BINS)
            self.gap_src.patch({"count": [(slice(0, len(counts)), counts.tolist())]})

    # ----------------------------------------------------------------- views
    @staticmethod
    def _figure(title: str, y_label: str, height: int, **kw) -> figure:
        fig = figure(title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset",
                     toolbar_location="right", **kw)
        fig.yaxis.axis_label = y_label
        return fig

    def price_chart(self) -> figure:
        """Last traded price over time (streamed)."""
        fig = self._figure("Last price", "price", 260, x_axis_type="datetime")
        fig.line("time", "price", source=self.price_src, line_width=2)
        return fig

    def rate_chart(self) -> figure:
        """Messages per second (streamed)."""
        fig = self._figure("Message rate (msg/s)", "msg/s", 260, x_axis_type="datetime")
        fig.varea(x="time", y1=0, y2="msg_s", source=self.rate_src, alpha=0.4)
        fig.line("time", "msg_s", source=self.rate_src)
        return fig

    def latency_chart(self) -> figure:
        """Ingest latency P50 and P95 in ms (streamed)."""
        fig = self._figure("Ingest latency, exchange → persisted (ms)", "ms", 220, x_axis_type="datetime")
        fig.line("time", "p50", source=self.latency_src, legend_label="P50", color="#1f77b4", line_width=2)
        fig.line("time", "p95", source=self.latency_src, legend_label="P95", color="#d62728", line_width=2)
        fig.legend.location = "top_left"
        return fig

    def gap_histogram(self) -> figure:
        """Histogram of the time between consecutive trade messages (ms, log bins)."""
        fig = self._figure("Inter-message gap (ms)", "messages", 220, x_axis_type="log")
        fig.quad(left="left", right="right", bottom=0, top="count", source=self.gap_src, alpha=0.7)
        fig.xaxis.axis_label = "gap (ms)"
        return fig

    def _state_badge(self, state: str, depth_state: str) -> str:
        def badge(name: str, s: str) -> str:
            return (f'<span style="display:inline-block;padding:4px 10px;border-radius:12px;color:white;'
                    f'background:{_STATE_COLORS.get(s, "#555")};margin-right:6px">{name}: '
                    f'<b class="sr-state-{name}">{s}</b></span>')
        return badge("trade", state) + badge("depth", depth_state)

    def _counters_html(self, msgs, trades, gaps, gaps_open, resyncs, duplicates, malformed, reconnects, updates) -> str:
        cells = [("messages", "sr-msgs", msgs), ("trades stored", "sr-trades", trades), ("seq gaps", "sr-gaps", gaps),
                 ("open gaps", "sr-gaps-open", gaps_open), ("resyncs", "sr-resyncs", resyncs),
                 ("duplicates", "sr-dups", duplicates), ("malformed", "sr-malformed", malformed),
                 ("reconnects", "sr-reconnects", reconnects), ("refreshes", "sr-updates", updates)]
        return "".join(f'<div style="display:inline-block;margin:0 18px 6px 0"><div style="font-size:11px;'
                       f'color:#666">{label}</div><div class="{cls}" style="font-size:20px">{v:,}</div></div>'
                       for label, cls, v in cells)

    def panel(self) -> pn.viewable.Viewable:
        """The whole monitor: indicators on top, streamed charts below."""
        numbers = pn.Row(
            pn.indicators.Number.from_param(self.param.last_price, name="last price", format="{value:,.2f}",
                                            font_size="28pt"),
            pn.indicators.Number.from_param(self.param.msg_rate, name="msg/s", format="{value:,.0f}", font_size="28pt"),
            pn.indicators.Number.from_param(self.param.latency_p50, name="latency P50 (ms)", format="{value:.2f}",
                                            font_size="28pt"),
            pn.indicators.Number.from_param(self.param.latency_p95, name="latency P95 (ms)", format="{value:.2f}",
                                            font_size="28pt", colors=[(5, "green"), (50, "orange"), (1e9, "red")]),
        )
        return pn.Column(
            pn.pane.HTML(pn.bind(self._state_badge, self.param.state, self.param.depth_state)),
            numbers,
            pn.pane.HTML(pn.bind(self._counters_html, self.param.msgs, self.param.trades, self.param.gaps,
                                 self.param.gaps_open, self.param.resyncs, self.param.duplicates,
                                 self.param.malformed, self.param.reconnects, self.param.updates)),
            pn.Row(pn.pane.Bokeh(self.price_chart()), pn.pane.Bokeh(self.rate_chart()), sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self.latency_chart()), pn.pane.Bokeh(self.gap_histogram()),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

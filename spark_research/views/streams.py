"""Stream monitor state and views: live price, message rate, latency, gaps, connection state, venues.

:class:`StreamMonitor` holds the state of one browser session as ``param`` parameters and
streams new points into Bokeh ``ColumnDataSource``s (``stream`` with rollover, ``patch`` for
the histogram), so the browser *appends* instead of redrawing (≥ 2 Hz without falling behind).

A venue and a symbol selector (options from the snapshot's ``venues`` section; default the
demo stream, Binance ``SPARK_STREAM_SYMBOL``) choose the stream the charts and counters follow;
the consolidated top of book of the selected symbol's instrument lists every venue's best
bid/ask with the best of them marked (:mod:`spark_research.streams.consolidated`), and a venues
table shows each venue's connection, integrity counters and latency.

Where the numbers come from: by default every session attaches to one process-wide
:class:`~spark_research.streams.pipeline.StreamPipeline` (replay exchange + ingest running in
background threads of the ``panel serve`` process, started on first use, persisting under
``settings().var_dir / "ingest"``). Its knobs come from the environment: ``SPARK_STREAM_RATE``
(msg/s, default 200), ``SPARK_STREAM_FAULTS`` (e.g. ``skip_every=500,drop_every=4000``),
``SPARK_STREAM_SYMBOL``, ``SPARK_STREAM_ORDERS`` (how the exchange executes orders, e.g.
``latency_ms=80,slippage_bps=3``), ``SPARK_STREAM_VENUES`` (the multi-venue ingest beside it,
``;``-separated ``venue:SYM,SYM`` specs, ``""`` for none; default
:data:`~spark_research.streams.served_venues.DEFAULT_VENUES`). Pass ``source=`` to watch another
object with a ``snapshot()`` method.

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

import html
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
            from spark_research.streams.served_venues import ServedVenues, venue_specs

            venues = venue_specs(os.environ.get("SPARK_STREAM_VENUES"))  # a bad spec fails before anything starts
            pipeline = StreamPipeline(symbol=os.environ.get("SPARK_STREAM_SYMBOL", "BTCUSDT"),
                                      rate=float(os.environ.get("SPARK_STREAM_RATE", "200")),
                                      faults=Faults.parse(os.environ.get("SPARK_STREAM_FAULTS", "")),
                                      orders=OrderConfig.parse(os.environ.get("SPARK_STREAM_ORDERS", "")),
                                      n=int(os.environ.get("SPARK_STREAM_TAPE", "500000"))).start()
            _SHARED = _LocalStream(pipeline, ServedVenues(venues, root=pipeline.config.root_dir).start())
        return _SHARED


class _LocalStream:
    """Outside ``spark serve``: the demo pipeline and the multi-venue ingest in this process, as one source."""

    def __init__(self, pipeline, venues) -> None:
        self.pipeline, self.venues = pipeline, venues

    def snapshot(self) -> dict:
        from spark_research.streams.served_venues import stream_snapshot

        return stream_snapshot(self.pipeline, self.venues)

    def stop(self) -> None:
        self.venues.stop()
        self.pipeline.stop()


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
    venue = param.Selector(default=None, objects=[], doc="Venue whose stream the charts and counters follow.")
    symbol = param.Selector(default=None, objects=[], doc="Symbol of ``venue`` the charts and counters follow.")
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
    checksum_fails = param.Integer(default=0, doc="Order books that failed the venue's checksum (each resynced).")
    duplicates = param.Integer(default=0)
    malformed = param.Integer(default=0)
    reconnects = param.Integer(default=0)
    last_price = param.Number(default=0.0)
    updates = param.Integer(default=0, doc="Refreshes done (the page shows it moving).")
    instrument = param.String(default="", doc="Instrument of the selected symbol (``BTC-USD``).")
    top_of_book = param.Dict(default={}, doc="The instrument's consolidated top of book (``ConsolidatedTop.as_dict``).")
    venue_rows = param.List(default=[], doc="Every venue and symbol's state, counters and latency.")

    def __init__(self, source=None, **params):
        super().__init__(**params)
        self.source = source if source is not None else shared_pipeline()
        self._prev: tuple[float, int] | None = None
        self._ticks = 0
        self._options: dict[str, list[str]] = {}
        # One ColumnDataSource per chart; updates *stream* rows into them (rollover at `window`),
        # so the browser appends points instead of redrawing the figure.
        self.price_src = ColumnDataSource({"time": [], "price": []})
        self.rate_src = ColumnDataSource({"time": [], "msg_s": []})
        self.latency_src = ColumnDataSource({"time": [], "p50": [], "p95": []})
        self.gap_src = ColumnDataSource({"left": _GAP_BINS[:-1], "right": _GAP_BINS[1:],
                                         "count": np.zeros(len(_GAP_BINS) - 1)})

    # ----------------------------------------------------------------- selection
    def _sync_options(self, snap: dict, rows: list[dict]) -> None:
        """Selector options from the snapshot; the demo stream until the user picks another."""
        ing = snap["ingest"]
        main = (ing.get("exchange", "binance"), ing.get("symbol", ""))
        options: dict[str, list[str]] = {}
        for r in rows:
            options.setdefault(r["venue"], []).append(r["native"])
        if not options:  # a source without a venues section: its one stream
            options = {main[0]: [main[1]]}
        if options != self._options:
            self._options = options
            self.param.venue.objects = sorted(options)
            if self.venue not in options:
                self.venue = main[0] if main[0] in options else sorted(options)[0]
            else:
                self._venue_changed()  # same venue, new symbols

    @param.depends("venue", watch=True)
    def _venue_changed(self) -> None:
        symbols = self._options.get(self.venue, [])
        self.param.symbol.objects = symbols
        if self.symbol not in symbols and symbols:
            # keep the instrument when the venue changes (Binance BTCUSDT -> Kraken BTC/USD)
            same = [s for s in symbols if self.symbol and _instrument(s) == _instrument(self.symbol)]
            self.symbol = (same or symbols)[0]

    @param.depends("symbol", watch=True)
    def _symbol_changed(self) -> None:
        """A new stream: its series start afresh (the old one's points are another market's)."""
        self._prev = None
        self._ticks = 0
        self.msg_rate = 0.0
        for src in (self.price_src, self.rate_src, self.latency_src):
            src.data = {k: [] for k in src.data}
        self.gap_src.patch({"count": [(slice(0, len(_GAP_BINS) - 1), [0] * (len(_GAP_BINS) - 1))]})

    def _selected(self, snap: dict, rows: list[dict]) -> tuple[dict, list[float]]:
        """``(status, recent gaps)`` of the selected stream: the demo ingest's full status, else its venue row."""
        ing = snap["ingest"]
        if not rows or (self.venue == ing.get("exchange", "binance") and self.symbol == ing.get("symbol", self.symbol)):
            return ing, snap["gaps_ms"]
        row = next((r for r in rows if r["venue"] == self.venue and r["native"] == self.symbol), None)
        if row is None:
            return ing, snap["gaps_ms"]
        return row, row.get("gaps_ms", [])

    # ----------------------------------------------------------------- refresh
    def update(self) -> None:
        """Pull one snapshot from the source and stream the new points (cheap: no redraw)."""
        try:
            snap = self.source.snapshot()
        except (StreamStarting, OSError):
            self.param.update(state="connecting", updates=self.updates + 1)  # the ingest (re)starts
            return
        rows = snap.get("venues") or []
        self._sync_options(snap, rows)
        ing, gaps_ms = self._selected(snap, rows)
        c = ing["counters"]
        now = snap["time"] * 1000.0  # Bokeh datetime axes take epoch milliseconds
        t = time.monotonic()
        if self._prev is not None and t > self._prev[0]:
            self.msg_rate = (c["msgs"] - self._prev[1]) / (t - self._prev[0])
        self._prev = (t, c["msgs"])
        lat = ing["latency_ms"]
        inst = next((r["instrument"] for r in rows if r["venue"] == self.venue and r["native"] == self.symbol), "")
        self.param.update(
            state=ing["state"]["trade"], depth_state=ing["state"].get("depth", "disconnected"), msgs=c["msgs"],
            trades=c["trades"], latency_p50=lat["p50"] or 0.0, latency_p95=lat["p95"] or 0.0, gaps=c["gaps"],
            gaps_open=ing["gaps_open"], resyncs=c["resyncs"] + c["book_resyncs"],
            checksum_fails=c.get("checksum_fails", 0), duplicates=c["duplicates"], malformed=c["malformed"],
            reconnects=c["reconnects"], last_price=ing["last_price"] or 0.0, updates=self.updates + 1,
            instrument=inst, venue_rows=[_venue_summary(r) for r in rows],
            top_of_book=next((x for x in snap.get("consolidated", []) if x["instrument"] == inst), {}))
        if ing["last_price"]:
            self.price_src.stream({"time": [now], "price": [float(ing["last_price"])]}, rollover=self.window)
        self.rate_src.stream({"time": [now], "msg_s": [float(self.msg_rate)]}, rollover=self.window)
        self.latency_src.stream({"time": [now], "p50": [self.latency_p50], "p95": [self.latency_p95]},
                                rollover=self.window)
        self._ticks += 1
        if gaps_ms and self._ticks % 4 == 1:  # the histogram needs no more than ~1 Hz
            counts, _ = np.histogram(np.clip(gaps_ms, _GAP_BINS[0], _GAP_BINS[-1]), bins=_GAP_BINS)
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

    def _state_badge(self, state: str, depth_state: str, venue: str | None, symbol: str | None) -> str:
        def badge(name: str, s: str) -> str:
            return (f'<span style="display:inline-block;padding:4px 10px;border-radius:12px;color:white;'
                    f'background:{_STATE_COLORS.get(s, "#555")};margin-right:6px">{name}: '
                    f'<b class="sr-state-{name}">{s}</b></span>')
        stream = (f'<span class="sr-stream" style="margin-right:10px"><b>{_esc(venue or "")}</b> '
                  f'{_esc(symbol or "")}</span>')
        return stream + badge("trade", state) + badge("depth", depth_state)

    def _counters_html(self, msgs, trades, gaps, gaps_open, resyncs, checksum_fails, duplicates, malformed, reconnects,
                       updates) -> str:
        cells = [("messages", "sr-msgs", msgs), ("trades stored", "sr-trades", trades), ("seq gaps", "sr-gaps", gaps),
                 ("open gaps", "sr-gaps-open", gaps_open), ("resyncs", "sr-resyncs", resyncs),
                 ("checksum fails", "sr-checksum-fails", checksum_fails),
                 ("duplicates", "sr-dups", duplicates), ("malformed", "sr-malformed", malformed),
                 ("reconnects", "sr-reconnects", reconnects), ("refreshes", "sr-updates", updates)]
        return "".join(f'<div style="display:inline-block;margin:0 18px 6px 0"><div style="font-size:11px;'
                       f'color:#666">{label}</div><div class="{cls}" style="font-size:20px">{v:,}</div></div>'
                       for label, cls, v in cells)

    def _top_of_book_html(self, top: dict, venue: str | None, symbol: str | None) -> str:
        """The instrument's consolidated top of book: one row per venue, the best bid and ask marked."""
        if not top:
            return '<div class="sr-tob-empty" style="color:#666">No venue books for this symbol.</div>'
        bb, ba = top.get("best_bid"), top.get("best_ask")

        def best(side: dict | None, label: str) -> str:
            if side is None:
                return f"best {label}: —"
            return (f'best {label} <b class="sr-best-{label}">{_px(side["price"])}</b> × {_qty(side["size"])} on '
                    f'<b class="sr-best-{label}-venue">{_esc(side["venue"])}</b>')

        crossed = top.get("crossed")
        flag = ('<span class="sr-crossed" style="color:white;background:#c62828;padding:2px 8px;border-radius:10px">'
                'crossed</span>' if crossed else '<span class="sr-crossed" style="color:#2e7d32">not crossed</span>')
        head = (f'<div style="margin:4px 0 6px 0"><b class="sr-instrument">{_esc(top["instrument"])}</b> · '
                f'{best(bb, "bid")} · {best(ba, "ask")} · spread {_px(top.get("spread"))} · {flag}</div>')
        cell = 'style="padding:2px 10px;text-align:right"'
        rows = []
        for v in top["venues"]:
            is_bid = bb is not None and (v["venue"], v["symbol"]) == (bb["venue"], bb["symbol"])
            is_ask = ba is not None and (v["venue"], v["symbol"]) == (ba["venue"], ba["symbol"])
            here = v["venue"] == venue and v["symbol"] == symbol
            book = "resyncing" if not v["synced"] else ("stale" if v["stale"] else "live")
            rows.append(
                f'<tr class="sr-tob-row" data-venue="{_esc(v["venue"])}" data-symbol="{_esc(v["symbol"])}" '
                f'style="{"background:#eef3fb;" if here else ""}">'
                f'<td style="padding:2px 10px">{_esc(v["venue"])}</td>'
                f'<td style="padding:2px 10px">{_esc(v["symbol"])}</td>'
                f'<td {cell}>{_qty(v["bid_size"])}</td>'
                f'<td {cell} class="sr-tob-bid">{"<b style=color:#2e7d32>" if is_bid else ""}{_px(v["bid"])}'
                f'{"</b>" if is_bid else ""}</td>'
                f'<td {cell} class="sr-tob-ask">{"<b style=color:#c62828>" if is_ask else ""}{_px(v["ask"])}'
                f'{"</b>" if is_ask else ""}</td>'
                f'<td {cell}>{_qty(v["ask_size"])}</td><td {cell}>{_age(v.get("age_s"))}</td>'
                f'<td style="padding:2px 10px" class="sr-tob-book">{book}</td></tr>')
        header = "".join(f'<th style="padding:2px 10px;text-align:{a}">{h}</th>' for h, a in (
            ("venue", "left"), ("symbol", "left"), ("bid size", "right"), ("bid", "right"), ("ask", "right"),
            ("ask size", "right"), ("book age", "right"), ("book", "left")))
        return (head + f'<table class="sr-tob" style="border-collapse:collapse;font-size:13px"><thead><tr>{header}'
                f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')

    def _venues_html(self, rows: list[dict]) -> str:
        """Every venue and symbol: connection, integrity counters and latency."""
        if not rows:
            return ""
        cols = ("venue", "symbol", "trade", "depth", "trades", "gaps", "resyncs", "checksum fails", "P50 ms", "P95 ms",
                "last price")
        header = "".join(f'<th style="padding:2px 10px;text-align:left">{h}</th>' for h in cols)
        body = "".join(
            f'<tr class="sr-venue-row" data-venue="{_esc(r["venue"])}" data-symbol="{_esc(r["symbol"])}">'
            + "".join(f'<td style="padding:2px 10px">{x}</td>' for x in (
                _esc(r["venue"]), _esc(r["symbol"]),
                f'<span style="color:{_STATE_COLORS.get(r["trade"], "#555")}">{r["trade"]}</span>',
                f'<span style="color:{_STATE_COLORS.get(r["depth"], "#555")}">{r["depth"]}</span>',
                f'{r["trades"]:,}', f'{r["gaps"]:,}', f'{r["resyncs"]:,}', f'{r["checksum_fails"]:,}',
                _ms(r["p50"]), _ms(r["p95"]), _px(r["last_price"])))
            + "</tr>" for r in rows)
        return (f'<table class="sr-venues" style="border-collapse:collapse;font-size:13px"><thead><tr>{header}</tr>'
                f'</thead><tbody>{body}</tbody></table>')

    def panel(self) -> pn.viewable.Viewable:
        """The whole monitor: selectors and indicators on top, streamed charts, then the venues' books."""
        numbers = pn.Row(
            pn.indicators.Number.from_param(self.param.last_price, name="last price", format="{value:,.2f}",
                                            font_size="28pt"),
            pn.indicators.Number.from_param(self.param.msg_rate, name="msg/s", format="{value:,.0f}", font_size="28pt"),
            pn.indicators.Number.from_param(self.param.latency_p50, name="latency P50 (ms)", format="{value:.2f}",
                                            font_size="28pt"),
            pn.indicators.Number.from_param(self.param.latency_p95, name="latency P95 (ms)", format="{value:.2f}",
                                            font_size="28pt", colors=[(5, "green"), (50, "orange"), (1e9, "red")]),
        )
        selectors = pn.Row(
            pn.widgets.Select.from_param(self.param.venue, name="Venue", css_classes=["sr-venue-select"], width=160),
            pn.widgets.Select.from_param(self.param.symbol, name="Symbol", css_classes=["sr-symbol-select"], width=160),
        )
        return pn.Column(
            selectors,
            pn.pane.HTML(pn.bind(self._state_badge, self.param.state, self.param.depth_state, self.param.venue,
                                 self.param.symbol)),
            numbers,
            pn.pane.HTML(pn.bind(self._counters_html, self.param.msgs, self.param.trades, self.param.gaps,
                                 self.param.gaps_open, self.param.resyncs, self.param.checksum_fails,
                                 self.param.duplicates, self.param.malformed, self.param.reconnects,
                                 self.param.updates)),
            pn.Row(pn.pane.Bokeh(self.price_chart()), pn.pane.Bokeh(self.rate_chart()), sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self.latency_chart()), pn.pane.Bokeh(self.gap_histogram()),
                   sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Consolidated top of book"),
            pn.pane.HTML(pn.bind(self._top_of_book_html, self.param.top_of_book, self.param.venue, self.param.symbol),
                         sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Venues"),
            pn.pane.HTML(pn.bind(self._venues_html, self.param.venue_rows), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def _instrument(symbol: str) -> str:
    from spark_research.streams.consolidated import instrument

    return instrument(symbol)


def _venue_summary(row: dict) -> dict:
    c, lat = row["counters"], row["latency_ms"]
    return {"venue": row["venue"], "symbol": row["native"], "trade": row["state"].get("trade", "disconnected"),
            "depth": row["state"].get("depth", "disconnected"), "trades": c["trades"], "gaps": c["gaps"],
            "resyncs": c["resyncs"] + c["book_resyncs"], "checksum_fails": c.get("checksum_fails", 0),
            "p50": lat.get("p50"), "p95": lat.get("p95"), "last_price": row.get("last_price")}


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _px(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:,.6g}"


def _qty(value: float | None) -> str:
    return "—" if value is None else f"{value:,.4f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _age(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"

"""Charts of a backtest result: equity with trade markers, drawdown, stats table.

Example::

    >>> from spark_research.views.backtest import result_layout   # doctest: +SKIP
    >>> result_layout(res)                                         # doctest: +SKIP
"""
from __future__ import annotations

import re
from pathlib import Path

import holoviews as hv
import pandas as pd

from spark_research.backtest.engine import BacktestResult


def _ensure_backend() -> None:
    if not hv.Store.current_backend or hv.Store.current_backend not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)


def _fmt(params: dict) -> str:
    # HoloViews formats titles with str.format: no braces in the text
    return ", ".join(f"{k}={v}" for k, v in params.items())


def equity_curve(res: BacktestResult) -> hv.Curve:
    """Equity over time."""
    eq = res.equity.rename_axis("time").reset_index()
    eq["time"] = eq["time"].dt.tz_localize(None)
    return hv.Curve(eq, "time", "equity", label="equity").opts(
        responsive=True, height=300, title=f"{res.strategy} {_fmt(res.params)} — equity ({res.fill} fills)",
        tools=["hover"], color="#1f77b4")


def drawdown_area(res: BacktestResult) -> hv.Area:
    """Drawdown from the running peak, in percent."""
    dd = (res.drawdown * 100).rename("drawdown_pct").rename_axis("time").reset_index()
    dd["time"] = dd["time"].dt.tz_localize(None)
    return hv.Area(dd, "time", "drawdown_pct", label="drawdown %").opts(
        responsive=True, height=180, color="#d62728", alpha=0.5, title="drawdown (%)", tools=["hover"])


def stats_table(res: BacktestResult) -> hv.Table:
    """The stats as a two-column table."""
    df = pd.DataFrame({"stat": list(res.stats), "value": [f"{v:,.4f}" if isinstance(v, float) else str(v) for v in res.stats.values()]})
    return hv.Table(df).opts(height=260, width=320)


def result_layout(res: BacktestResult) -> hv.Layout:
    """Equity and drawdown stacked (shared time axis), then the stats table."""
    _ensure_backend()
    return (equity_curve(res) + drawdown_area(res) + stats_table(res)).cols(1)


def save_html(obj: object, path: str | Path, title: str = "spark_research") -> Path:
    """Save a HoloViews object as standalone HTML with Bokeh's JS/CSS *inline*.

    Rendered straight through Bokeh (not Panel's page template, which links theme CSS
    from a CDN), so the file opens on an air-gapped machine.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    _ensure_backend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = hv.render(obj, backend="bokeh")
    html = file_html(model, INLINE, title)
    # Panel registers an es-module-shims polyfill by relative URL, which Bokeh cannot inline;
    # current browsers support import maps natively, so the tag is dropped rather than 404ing.
    html = re.sub(r'<script[^>]*src="static/extensions/panel/[^"]*es-module-shims[^"]*"[^>]*>\s*</script>', "", html)
    path.write_text(html, encoding="utf-8")
    return path

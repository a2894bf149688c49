"""Research explorer: backtest a strategy (equity, drawdown, stats, trades) and sweep two parameters into a heatmap.

State and logic live in :class:`spark_research.views.research.ResearchExplorer`; sweeps run on
the optimizer's Dask cluster (the platform's under ``spark serve``).
"""
import panel as pn

from spark_research.views.research import ResearchExplorer

pn.extension()

ex = ResearchExplorer()
pn.state.onload(ex.run_backtest)  # the page answers first; the first backtest may load numba kernels
pn.state.add_periodic_callback(ex.poll, period=500)

pn.Column(
    pn.pane.Markdown("## Research explorer"),
    ex.message_view,
    pn.Row(
        pn.Column(pn.pane.Markdown("### Backtest"), ex.controls(), pn.pane.Markdown("### Stats"), ex.stats_view,
                  width=380),
        pn.Column(ex.charts_view, sizing_mode="stretch_width"),
    ),
    pn.pane.Markdown("### Parameter sweep"),
    pn.Row(pn.Column(ex.sweep_controls(), width=380), ex.heatmap_view),
    pn.pane.Markdown("### Trades (first 200)"),
    pn.Column(ex.trades_view, height=320, scroll=True, sizing_mode="stretch_width"),
    sizing_mode="stretch_width",
).servable(title="Research explorer")

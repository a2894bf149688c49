"""Model monitor: per-feature drift (PSI), live vs training predictions, inference latency.

Serve with ``panel serve apps/model_monitor.py``. Watches ``SPARK_MODEL_ID`` (a registered model,
replayed on its symbol's sample bars after its training window) or, without it, a small demo
model; state and charts live in :class:`spark_research.views.model_monitor.ModelMonitorView`.
"""
import panel as pn

from spark_research.views.model_monitor import ModelMonitorView

pn.extension()

monitor = ModelMonitorView()
monitor.update()
pn.state.add_periodic_callback(monitor.update, period=monitor.update_ms)

pn.Column(
    pn.pane.Markdown(f"## Model monitor: `{monitor.model_id}`"),
    monitor.panel(),
    sizing_mode="stretch_width",
).servable(title="Model monitor")

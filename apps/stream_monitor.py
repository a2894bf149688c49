"""Stream monitor: live price, message rate, ingest latency, gaps and connection state, per venue and
symbol, and the consolidated top of book across venues.

Serve with ``panel serve apps/stream_monitor.py``. The numbers come from the process-wide
replay exchange + ingest pipeline and multi-venue ingest started by
:func:`spark_research.views.streams.shared_pipeline` (knobs: ``SPARK_STREAM_RATE``,
``SPARK_STREAM_FAULTS``, ``SPARK_STREAM_SYMBOL``, ``SPARK_STREAM_VENUES``); the layout and
state live in :class:`spark_research.views.streams.StreamMonitor`.
"""
import panel as pn

from spark_research.views.streams import StreamMonitor

pn.extension()

monitor = StreamMonitor()
monitor.update()
pn.state.add_periodic_callback(monitor.update, period=monitor.update_ms)

pn.Column(
    pn.pane.Markdown("## Live stream monitor"),
    monitor.panel(),
    sizing_mode="stretch_width",
).servable(title="Stream monitor")

"""Export center: start a CSV or PDF export, watch its progress and download the file.

State and logic live in :class:`spark_research.views.export_center.ExportCenter`; exports run in
the platform's export manager (the one behind ``/export/*``) as the logged-in user.
"""
import panel as pn

from spark_research.views.export_center import ExportCenter

pn.extension()

ec = ExportCenter()
pn.state.add_periodic_callback(ec.refresh, period=500)

pn.Column(
    pn.Row(pn.pane.Markdown("## Export center"), pn.Spacer(),
           pn.pane.HTML(f'<div id="whoami">exporting as <b>{ec.user}</b> · <a href="/logout">log out</a></div>')),
    pn.Row(
        pn.Column(ec.form(), width=420),
        pn.Column(pn.pane.Markdown("### Progress"), ec.message_view, ec.progress_view(), ec.download_view,
                  sizing_mode="stretch_width"),
    ),
    pn.pane.Markdown("### Your exports"),
    ec.jobs_view,
    ec.api_help(),
    sizing_mode="stretch_width",
).servable(title="Export center")

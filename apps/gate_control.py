"""Gate control: per-gate state, drift, thresholds, manual close/open with a reason, the audit trail.

Serve (bcrypt-hashed users; demo: operator/operator-demo, viewer/viewer-demo)::

    panel serve apps/gate_control.py --auth-module spark_research/gates/webauth.py --cookie-secret <secret>
"""
import panel as pn

from spark_research.views.gates import session_control

pn.extension()

ctl = session_control()
pn.state.onload(ctl.on_load)
pn.state.add_periodic_callback(ctl.refresh, period=2000)

pn.Column(
    pn.Row(pn.pane.Markdown("## Gate control"), pn.Spacer(), ctl.user_view),
    pn.Row(
        pn.Column(ctl.controls(), pn.pane.Markdown("### Thresholds"), ctl.thresholds_view, width=380),
        pn.Column(ctl.states_view, ctl.drift_view, sizing_mode="stretch_width"),
    ),
    pn.pane.Markdown("### Audit trail"),
    pn.widgets.TextInput.from_param(ctl.param.audit_filter, name="Filter", placeholder="gate, user, reason...",
                                    css_classes=["audit-filter"]),
    ctl.audit_view,
    sizing_mode="stretch_width",
).servable(title="Gate control")

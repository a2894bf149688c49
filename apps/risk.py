"""Risk: trading states and the kill switch, limits in use, positions, PnL, VaR/ES and denials.

Operators halt, reduce or resume a scope (global, a strategy, an instrument) with a reason; the
trading process's engine adopts it on its next bar. Limits with their utilisation, positions and
PnL, VaR/ES at 95/99 %, recent denials and the risk audit trail, read from ``$SPARK_VAR/risk``.

Serve (bcrypt-hashed users, as gate control; demo: operator/operator-demo, viewer/viewer-demo)::

    panel serve apps/risk.py --auth-module spark_research/gates/webauth.py --cookie-secret <secret>

``SPARK_RISK_DEMO_BARS=240`` trades a seeded demo desk first when no engine has written state yet.
"""
import panel as pn

from spark_research.views.risk import session_desk

pn.extension()

desk = session_desk()
pn.state.onload(desk.on_load)
pn.state.add_periodic_callback(desk.refresh, period=2000)

pn.Column(
    pn.Row(pn.pane.Markdown("## Risk"), pn.Spacer(), desk.user_view),
    desk.summary_view,
    pn.Row(
        pn.Column(desk.controls(), pn.pane.Markdown("### Trading states"), desk.states_view, width=420),
        pn.Column(pn.pane.Markdown("### Limits"), desk.limits_view, pn.pane.Markdown("### VaR / ES (one bar)"),
                  desk.var_view, sizing_mode="stretch_width"),
    ),
    pn.pane.Markdown("### Positions"),
    desk.positions_view,
    pn.pane.Markdown("### Recent denials"),
    desk.denials_view,
    pn.pane.Markdown("### Audit trail"),
    desk.audit_view,
    sizing_mode="stretch_width",
).servable(title="Risk")

"""State and views of the risk app: trading states with operator controls, limits and their
utilisation, positions and PnL, VaR/ES, recent denials and the risk audit trail.

:class:`RiskDesk` holds one browser session's state (who is logged in, the scope acted on, the
reason, a version bumped on every change) over a :class:`~spark_research.risk.control.RiskControl`
on the store the trading process's :class:`~spark_research.risk.engine.RiskEngine` persists to
(``$SPARK_VAR/risk``). Every view is a function of that state; viewers look, operators act
(halt, reduce, resume with a reason; a refused attempt is audited).

Example::

    >>> import tempfile
    >>> from spark_research.gates.auth import UserDirectory
    >>> from spark_research.risk.control import RiskControl
    >>> desk = RiskDesk(control=RiskControl(tempfile.mkdtemp()), users=UserDirectory.default(), user="viewer")
    >>> desk.reason = "looks wrong"
    >>> desk.halt(); desk.message
    "refused: user 'viewer' is not an operator"
"""
from __future__ import annotations

import html
import threading

import pandas as pd
import panel as pn
import param

from spark_research.gates.auth import UserDirectory
from spark_research.risk.config import RiskConfig, default_config_path
from spark_research.risk.control import RiskControl
from spark_research.risk.errors import RiskConfigError

COLOURS = {"ACTIVE": "#2e7d32", "REDUCING": "#ef6c00", "HALTED": "#c62828"}
AUDIT_COLUMNS = ["seq", "time", "actor", "kind", "gate", "old_state", "new_state", "reason"]
#: book-wide limits shown with their utilisation (``risk_utilisation`` names)
LIMITS = (("max_daily_loss", "daily_loss"), ("max_drawdown", "drawdown"), ("max_gross_exposure", "gross_exposure"),
          ("max_net_exposure", "net_exposure"), ("max_open_orders", "open_orders"), ("submit_rate", "submit_rate"),
          ("cancel_rate", "cancel_rate"))


class RiskDesk(param.Parameterized):
    """One session of the risk app."""

    scope = param.Selector(default="global", objects=["global"], doc="scope acted on")
    reason = param.String(default="", doc="why (mandatory)")
    message = param.String(default="", doc="outcome of the last action")
    version = param.Integer(default=0, doc="bumped whenever the store changed")
    live = param.Boolean(default=False, doc="the browser session is connected and loaded")

    def __init__(self, *, control: RiskControl, users: UserDirectory, user: str | None,
                 config_path=None, **params):
        super().__init__(**params)
        self.control, self.users, self.user = control, users, user
        self.config_path = config_path
        self._sync_scopes()

    @property
    def can_act(self) -> bool:
        return self.users.is_operator(self.user)

    # ------------------------------------------------------------------ data
    def _sync_scopes(self) -> None:
        docs = self.control.store.load()
        scopes = {"global"} | set(self.control.states())
        scopes |= {f"instrument:{s}" for s in docs.get("book", {}).get("marks", {})}
        scopes |= {f"strategy:{k.split(':', 1)[1]}" for k in docs if k.startswith("strategy:")}
        names = ["global"] + sorted(scopes - {"global"})
        self.param.scope.objects = names
        if self.scope not in names:
            self.scope = "global"

    def on_load(self) -> None:
        """Called once the browser has loaded the session (``pn.state.onload``)."""
        self.refresh()
        self.live = True

    def refresh(self) -> None:
        """Pick up what the trading process (or another operator) wrote (periodic callback)."""
        if self.control.store.changed():
            self._sync_scopes()
            self.version += 1

    # ------------------------------------------------------------------ actions
    def _act(self, state: str) -> None:
        action = {"HALTED": "halt", "REDUCING": "reduce", "ACTIVE": "resume"}[state]
        if not self.can_act:
            self.control.refuse(self.scope, action, actor=self.user or "anonymous",
                                reason=self.reason or "(no reason)")
            self.message = f"refused: user {self.user!r} is not an operator"
        elif not self.reason.strip():
            self.message = f"refused: reason must be a non-empty text to {action} {self.scope}"
        else:
            new = self.control.set_state(self.scope, state, actor=self.user, reason=self.reason)
            self.message = f"{self.scope} is {new} ({action} by {self.user}: {self.reason.strip()})"
            self.reason = ""
        self.version += 1

    def halt(self, event=None) -> None:
        """Nothing passes in the selected scope (operators only, reason required)."""
        self._act("HALTED")

    def reduce(self, event=None) -> None:
        """Only orders that reduce exposure pass in the selected scope."""
        self._act("REDUCING")

    def resume(self, event=None) -> None:
        """Back to ACTIVE in the selected scope."""
        self._act("ACTIVE")

    # ------------------------------------------------------------------ views
    @param.depends("live")
    def user_view(self) -> pn.pane.HTML:
        who = html.escape(self.user or "anonymous")
        role = self.users.role(self.user) or "no role"
        note = "" if self.can_act else " (read-only)"
        return pn.pane.HTML(f'<div id="whoami" data-live="{str(self.live).lower()}">Logged in as <b>{who}</b> — '
                            f'{role}{note} · <a href="/logout">log out</a></div>')

    @param.depends("version")
    def states_view(self) -> pn.pane.HTML:
        rows = []
        for scope, state in self.control.states().items():
            rows.append(f'<tr><td>{html.escape(scope)}</td><td class="risk-state" data-scope="{html.escape(scope)}" '
                        f'style="background:{COLOURS[state]};color:white;padding:2px 8px;border-radius:4px">'
                        f'{state}</td></tr>')
        return pn.pane.HTML("<table id='risk-states'><tr><th>scope</th><th>state</th></tr>" + "".join(rows)
                            + "</table>", sizing_mode="stretch_width")

    def _figures(self) -> dict:
        return self.control.store.load("figures").get("figures", {})

    @param.depends("version")
    def summary_view(self) -> pn.pane.HTML:
        st, f = self.control.status(), self._figures()
        if st["equity"] is None:
            return pn.pane.HTML('<div id="risk-summary">No risk engine has written its state yet.</div>')
        return pn.pane.HTML(
            f'<div id="risk-summary">equity <b>{st["equity"]:,.2f}</b> · day PnL <b>{st["day_pnl"]:,.2f}</b> · '
            f'drawdown <b>{100 * f.get("drawdown", 0.0):.2f} %</b> · gross <b>{f.get("gross_exposure", 0.0):,.0f}</b>'
            f' · net <b>{f.get("net_exposure", 0.0):,.0f}</b> · approved {f.get("approved", 0)} · '
            f'denied {f.get("denied", 0)}</div>')

    @param.depends("version")
    def limits_view(self) -> pn.pane.DataFrame:
        try:
            cfg = RiskConfig.load(self.config_path or default_config_path())
        except RiskConfigError as exc:
            return pn.pane.Alert(f"risk.yml: {exc}", alert_type="danger")
        used = self._figures().get("utilisation", {})
        rows = [{"limit": name, "value": getattr(cfg.limits, name), "utilisation": used.get(key)}
                for name, key in LIMITS if getattr(cfg.limits, name) is not None]
        df = pd.DataFrame(rows, columns=["limit", "value", "utilisation"])
        df["utilisation"] = df["utilisation"].map(lambda u: "" if u is None or pd.isna(u) else f"{100 * u:.1f} %")
        return pn.pane.DataFrame(df, index=False, sizing_mode="stretch_width", css_classes=["risk-limits"])

    @param.depends("version")
    def positions_view(self) -> pn.pane.DataFrame:
        book = self.control.store.load("book").get("book", {})
        marks = book.get("marks", {})
        rows = [{"symbol": s, "qty": q, "avg_price": a, "mark": marks.get(s, a), "exposure": q * marks.get(s, a),
                 "unrealised": q * (marks.get(s, a) - a), "realised": r}
                for s, (q, a, r) in sorted(book.get("positions", {}).items())]
        df = pd.DataFrame(rows, columns=["symbol", "qty", "avg_price", "mark", "exposure", "unrealised", "realised"])
        return pn.pane.DataFrame(df.round(4), index=False, sizing_mode="stretch_width", css_classes=["risk-positions"])

    @param.depends("version")
    def var_view(self) -> pn.pane.DataFrame:
        var = self._figures().get("var", {})
        rows = [{"level": lv, "VaR historical": v["historical"], "VaR Cornish-Fisher": v["cornish_fisher"],
                 "ES historical": v["es_historical"], "ES Cornish-Fisher": v["es_cornish_fisher"]}
                for lv, v in sorted(var.items())]
        df = pd.DataFrame(rows, columns=["level", "VaR historical", "VaR Cornish-Fisher", "ES historical",
                                         "ES Cornish-Fisher"])
        pct = df.columns[1:]
        df[pct] = df[pct].map(lambda x: "" if x is None or pd.isna(x) else f"{100 * x:.3f} %")
        return pn.pane.DataFrame(df, index=False, sizing_mode="stretch_width", css_classes=["risk-var"])

    @param.depends("version")
    def denials_view(self) -> pn.pane.DataFrame:
        rows = self.control.store.load("denials").get("denials", [])[::-1]
        df = pd.DataFrame(rows, columns=["ts", "strategy", "symbol", "side", "size", "price", "check", "limit",
                                         "value", "order_id"])
        df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
        return pn.pane.DataFrame(df.head(20), index=False, sizing_mode="stretch_width", css_classes=["risk-denials"])

    @param.depends("version")
    def audit_view(self) -> pn.pane.DataFrame:
        entries = [e for e in self.control.audit.entries(newest_first=True, limit=300) if e.kind != "risk_denials"]
        df = pd.DataFrame([{**e.__dict__, "time": e.time.strftime("%Y-%m-%d %H:%M:%S")} for e in entries[:100]],
                          columns=AUDIT_COLUMNS + ["values", "ts_ns", "prev_hash", "hash"])[AUDIT_COLUMNS]
        return pn.pane.DataFrame(df, index=False, sizing_mode="stretch_width", css_classes=["risk-audit"])

    @param.depends("message")
    def message_view(self) -> pn.pane.HTML:
        colour = "#c62828" if self.message.startswith("refused") else "#2e7d32"
        return pn.pane.HTML(f'<div id="risk-message" style="color:{colour}">{html.escape(self.message)}</div>')

    def controls(self) -> pn.Column:
        """Scope selector, reason field and halt/reduce/resume buttons (disabled for viewers)."""
        buttons = []
        for name, kind, css, fn in (("Halt", "danger", "risk-halt", self.halt),
                                    ("Reduce only", "warning", "risk-reduce", self.reduce),
                                    ("Resume", "success", "risk-resume", self.resume)):
            b = pn.widgets.Button(name=name, button_type=kind, disabled=not self.can_act, css_classes=[css])
            b.on_click(fn)
            buttons.append(b)
        reason = pn.widgets.TextInput(name="Reason", placeholder="why (required)", disabled=not self.can_act,
                                      css_classes=["risk-reason"])
        reason.param.watch(lambda e: setattr(self, "reason", e.new), "value_input")
        self.param.watch(lambda e: e.new == "" and reason.param.update(value="", value_input=""), "reason")
        return pn.Column(pn.widgets.Select.from_param(self.param.scope, name="Scope"), reason, pn.Row(*buttons),
                         self.message_view)


_LOCK = threading.Lock()


def shared_control() -> RiskControl:
    """The process-wide :class:`RiskControl` over ``$SPARK_VAR/risk``; with ``SPARK_RISK_DEMO_BARS=n``
    (n > 0) and an empty store, the seeded demo desk trades first so there is something to see."""
    import os

    key = "spark_research.risk.control"
    with _LOCK:
        if key not in pn.state.cache:
            ctl = RiskControl()
            n = int(os.environ.get("SPARK_RISK_DEMO_BARS", "0"))
            if n > 0 and not ctl.store.load("book"):
                from spark_research.risk.demo import run_demo

                run_demo(n_bars=n).close()
            pn.state.cache[key] = ctl
        return pn.state.cache[key]


def session_desk() -> RiskDesk:
    """A :class:`RiskDesk` for the current browser session (user from ``pn.state.user``)."""
    return RiskDesk(control=shared_control(), users=UserDirectory.default(), user=pn.state.user)

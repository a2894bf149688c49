"""State and views of the gate control app: gates with colours, drift charts, thresholds, the
audit trail, manual close/open with a reason; viewers look, operators act.

:class:`GateControl` holds one browser session's state (who is logged in, the selected gate,
the reason text, the audit filter) over a :class:`~spark_research.gates.gate.GateBook` shared by
every session of the process. Every view is a function of that state.

Example::

    >>> from spark_research.gates.audit import MemoryAudit
    >>> from spark_research.gates.auth import UserDirectory
    >>> from spark_research.gates.gate import GateBook
    >>> users = UserDirectory.default()
    >>> book = GateBook(MemoryAudit(), authorize=users.is_operator)
    >>> _ = book.add("sma_cross", "BTCUSDT")
    >>> ctl = GateControl(book=book, users=users, user="viewer")
    >>> ctl.reason = "looks wrong"
    >>> ctl.close_gate(); ctl.message
    "refused: actor 'viewer' is not authorised to close gate sma_cross/BTCUSDT"
"""
from __future__ import annotations

import html
import threading
from collections.abc import Mapping

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from spark_research.config import settings
from spark_research.gates.auth import UserDirectory
from spark_research.gates.errors import EmptyReasonError, GatePermissionError, UnknownGateError
from spark_research.gates.gate import GateBook

COLOURS = {"OPEN": "#2e7d32", "HALF_OPEN": "#ef6c00", "CLOSED": "#c62828"}
AUDIT_COLUMNS = ["seq", "time", "actor", "kind", "gate", "old_state", "new_state", "reason"]


class GateControl(param.Parameterized):
    """One session of the gate control app."""

    gate = param.Selector(default=None, objects=[], doc="gate shown and acted on")
    reason = param.String(default="", doc="why (mandatory for close/open)")
    audit_filter = param.String(default="", doc="show audit entries containing this text")
    message = param.String(default="", doc="outcome of the last action")
    version = param.Integer(default=0, doc="bumped whenever the book changed")
    live = param.Boolean(default=False, doc="the browser session is connected and loaded")

    def __init__(self, *, book: GateBook, users: UserDirectory, user: str | None,
                 drifts: dict[str, pd.DataFrame] | None = None, **params):
        super().__init__(**params)
        self.book, self.users, self.user = book, users, user
        self.drifts = drifts if drifts is not None else {}
        self._sync_gates()

    # ------------------------------------------------------------------ who
    @property
    def role(self) -> str | None:
        return self.users.role(self.user)

    @property
    def can_act(self) -> bool:
        return self.users.is_operator(self.user)

    # ------------------------------------------------------------------ actions
    def _sync_gates(self) -> None:
        names = [g.name for g in self.book]
        self.param.gate.objects = names
        if self.gate not in names:
            self.gate = names[0] if names else None

    def on_load(self) -> None:
        """Called once the browser has loaded the session (``pn.state.onload``)."""
        self.refresh()
        self.live = True

    def refresh(self) -> None:
        """Pick up changes by other sessions and processes (periodic callback)."""
        if self.book.sync():
            self._sync_gates()
            self.version += 1

    def _act(self, action: str) -> None:
        if self.gate is None:
            self.message = "refused: no gate selected"
            return
        strategy, _, symbol = self.gate.partition("/")
        try:
            state = getattr(self.book, action)(strategy, symbol, actor=self.user, reason=self.reason)
        except (GatePermissionError, EmptyReasonError, UnknownGateError) as exc:
            self.message = f"refused: {exc.args[0]}"
        else:
            self.message = f"{self.gate} is {state.name} ({action} by {self.user}: {self.reason.strip()})"
            self.reason = ""
        self.version += 1

    def close_gate(self, event=None) -> None:
        """Close the selected gate (operators only, reason required)."""
        self._act("close")

    def open_gate(self, event=None) -> None:
        """Open the selected gate (operators only, reason required)."""
        self._act("open")

    # ------------------------------------------------------------------ views
    @param.depends("live")
    def user_view(self) -> pn.pane.HTML:
        who = html.escape(self.user or "anonymous")
        role = self.role or "no role"
        note = "" if self.can_act else " (read-only)"
        return pn.pane.HTML(f'<div id="whoami" data-live="{str(self.live).lower()}">Logged in as <b>{who}</b> — {role}{note}'
                            f' · <a href="/logout">log out</a></div>')

    @param.depends("version", "gate")
    def states_view(self) -> pn.pane.HTML:
        rows = []
        for g in self.book:
            snap = g.snapshot()
            colour = COLOURS[snap["state"]]
            sel = ' style="outline: 2px solid #333"' if g.name == self.gate else ""
            rows.append(
                f'<tr{sel}><td>{html.escape(g.name)}</td>'
                f'<td class="gate-state" data-gate="{html.escape(g.name)}" style="background:{colour};color:white;'
                f'padding:2px 8px;border-radius:4px">{snap["state"]}</td>'
                f'<td>{snap["rolling_mean_bps"]:.2f}</td><td>{snap["rolling_pnl_delta"]:.2f}</td>'
                f'<td>{html.escape(snap["close_reason"])}{" (manual hold)" if snap["manual_hold"] else ""}</td></tr>')
        table = ("<table id='gate-states'><tr><th>gate</th><th>state</th><th>drift bps (rolling)</th>"
                 "<th>PnL delta (rolling)</th><th>why closed</th></tr>" + "".join(rows) + "</table>")
        return pn.pane.HTML(table, sizing_mode="stretch_width")

    @param.depends("version", "gate")
    def thresholds_view(self) -> pn.pane.DataFrame:
        if self.gate is None:
            return pn.pane.DataFrame(pd.DataFrame())
        th = self.book.get(self.gate).thresholds
        df = pd.DataFrame({"threshold": list(th.__dataclass_fields__),
                           "value": [str(getattr(th, k)) for k in th.__dataclass_fields__]})
        return pn.pane.DataFrame(df, index=False, sizing_mode="stretch_width")

    @param.depends("gate")
    def drift_view(self):
        df = self.drifts.get(self.gate)
        if df is None or df.empty:
            return pn.pane.Markdown("No live fills recorded for this gate in this process.")
        d = df.assign(time=df["timestamp"].dt.tz_localize(None), cum_pnl_delta=df["pnl_delta"].cumsum())
        bps = hv.Scatter(d, "time", "drift_bps", label="drift bps per fill").opts(
            color="#1565c0", size=5, responsive=True, height=220, tools=["hover"], title=f"{self.gate}: drift per fill")
        pnl = hv.Curve(d, "time", "cum_pnl_delta", label="live - paper PnL").opts(
            color="#6a1b9a", responsive=True, height=200, tools=["hover"], title="cumulative PnL delta")
        return pn.pane.HoloViews((bps + pnl).cols(1), sizing_mode="stretch_width")

    @param.depends("version", "audit_filter")
    def audit_view(self) -> pn.pane.DataFrame:
        entries = self.book.audit.entries(newest_first=True, limit=500)
        df = pd.DataFrame([{**e.__dict__, "time": e.time.strftime("%Y-%m-%d %H:%M:%S")} for e in entries],
                          columns=AUDIT_COLUMNS + ["values", "ts_ns", "prev_hash", "hash"])[AUDIT_COLUMNS]
        text = self.audit_filter.strip().lower()
        if text:
            hay = df[["actor", "kind", "gate", "old_state", "new_state", "reason"]].astype(str).agg(" ".join, axis=1)
            df = df[hay.str.lower().str.contains(text, regex=False)]
        return pn.pane.DataFrame(df.head(200), index=False, sizing_mode="stretch_width", css_classes=["audit-trail"])

    @param.depends("message")
    def message_view(self) -> pn.pane.HTML:
        colour = "#c62828" if self.message.startswith("refused") else "#2e7d32"
        return pn.pane.HTML(f'<div id="gate-message" style="color:{colour}">{html.escape(self.message)}</div>')

    def controls(self) -> pn.Column:
        """Gate selector, reason field and the close/open buttons (disabled for viewers)."""
        close = pn.widgets.Button(name="Close gate", button_type="danger", disabled=not self.can_act,
                                  css_classes=["close-gate"])
        open_ = pn.widgets.Button(name="Open gate", button_type="success", disabled=not self.can_act,
                                  css_classes=["open-gate"])
        close.on_click(self.close_gate)
        open_.on_click(self.open_gate)
        reason = pn.widgets.TextInput(name="Reason", placeholder="why (required)", disabled=not self.can_act,
                                      css_classes=["gate-reason"])
        # every keystroke reaches the state (a click right after typing must see the text)
        reason.param.watch(lambda e: setattr(self, "reason", e.new), "value_input")
        self.param.watch(lambda e: e.new == "" and reason.param.update(value="", value_input=""), "reason")
        return pn.Column(
            pn.widgets.Select.from_param(self.param.gate, name="Gate"),
            reason,
            pn.Row(close, open_),
            self.message_view,
        )


_DESK_LOCK = threading.Lock()


def shared_desk(demo_bars: int = 240) -> tuple[GateBook, dict[str, pd.DataFrame]]:
    """The process-wide book over the default audit log, with the seeded demo replayed once.

    Cached in ``pn.state.cache``; every browser session shares it. ``SPARK_GATE_DEMO_BARS=0``
    skips the demo replay (gates then come from the audit log only).
    """
    import os

    from spark_research.gates.audit import AuditLog
    from spark_research.gates.demo import run_demo

    key = "spark_research.gates.desk"
    with _DESK_LOCK:  # spark serve builds the desk on a thread while a first session may ask for it
        if key not in pn.state.cache:
            users = UserDirectory.default()
            book = GateBook.from_audit(AuditLog(), authorize=users.is_operator)
            n = int(os.environ.get("SPARK_GATE_DEMO_BARS", demo_bars))
            if n > 0:
                sessions = run_demo(book, n_bars=n)
                drifts: Mapping[str, pd.DataFrame] = {name: s.drift_frame() for name, s in sessions.items()}
            else:  # the desk runs elsewhere (spark serve's gates process): its drift frames are files
                drifts = _DriftFiles(settings().var_dir)
            pn.state.cache[key] = (book, drifts)
        return pn.state.cache[key]


class _DriftFiles(Mapping):
    """The demo desk's drift frames as the gates process wrote them (read when asked, so they appear once written)."""

    def __init__(self, var_dir):
        self.var_dir = var_dir

    def __getitem__(self, gate: str) -> pd.DataFrame:
        from spark_research.gates.service import demo_drift_path

        path = demo_drift_path(self.var_dir, gate)
        if not path.exists():
            raise KeyError(gate)
        return pd.read_parquet(path)

    def __iter__(self):
        return iter(p.stem.replace("__", "/") for p in sorted((self.var_dir / "gates" / "demo").glob("*.parquet")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def session_control() -> GateControl:
    """A :class:`GateControl` for the current browser session (user from ``pn.state.user``)."""
    book, drifts = shared_desk()
    return GateControl(book=book, users=UserDirectory.default(), user=pn.state.user, drifts=drifts)


# --------------------------------------------------------------------------- analysis charts
STATE_LEVEL = {"OPEN": 0, "HALF_OPEN": 1, "CLOSED": 2}


def _ensure_backend() -> None:
    if not hv.Store.current_backend or hv.Store.current_backend not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)


def drift_histogram(drift: pd.DataFrame, bins: int = 30) -> hv.Overlay:
    """Distribution of |drift| in bps per gate (``drift``: a drift table with ``strategy, symbol, drift_bps``)."""
    _ensure_backend()
    parts = []
    for (strategy, symbol), g in drift.groupby(["strategy", "symbol"], sort=True):
        freq, edges = np.histogram(g["drift_bps"], bins=bins)
        parts.append(hv.Histogram((edges, freq), kdims="drift_bps", vdims="fills", label=f"{strategy}/{symbol}")
                     .opts(alpha=0.5))
    return hv.Overlay(parts).opts(title="paper-vs-live drift per fill (bps)", responsive=True, height=280,
                                  legend_position="top_right")


def pnl_delta_curve(drift: pd.DataFrame) -> hv.Overlay:
    """Cumulative live-minus-paper PnL over time, one curve per gate."""
    _ensure_backend()
    parts = []
    for (strategy, symbol), g in drift.groupby(["strategy", "symbol"], sort=True):
        d = pd.DataFrame({"time": g["timestamp"].dt.tz_localize(None), "cum_pnl_delta": g["pnl_delta"].cumsum()})
        parts.append(hv.Curve(d, "time", "cum_pnl_delta", label=f"{strategy}/{symbol}").opts(interpolation="steps-post"))
    return hv.Overlay(parts).opts(title="cumulative PnL delta (live - paper)", responsive=True, height=280,
                                  legend_position="top_left")


def gate_timeline(audit: pd.DataFrame) -> hv.Overlay:
    """Gate state over time from an audit frame (``AuditLog.frame()``): 0 OPEN, 1 HALF_OPEN, 2 CLOSED."""
    _ensure_backend()
    moves = audit[audit["new_state"].isin(list(STATE_LEVEL))]
    parts = []
    for gate, g in moves.groupby("gate", sort=True):
        d = pd.DataFrame({"time": g["time"].dt.tz_localize(None), "state": g["new_state"].map(STATE_LEVEL)})
        parts.append(hv.Curve(d, "time", "state", label=gate).opts(interpolation="steps-post"))
    return hv.Overlay(parts).opts(title="gate state (0 OPEN, 1 HALF_OPEN, 2 CLOSED)", responsive=True, height=240,
                                  yticks=[(0, "OPEN"), (1, "HALF_OPEN"), (2, "CLOSED")], legend_position="right")

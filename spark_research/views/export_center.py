"""Export center state and views: choose what, format and parameters, start the export, watch its
progress, cancel it or download the file; the user's earlier exports below.

:class:`ExportCenter` submits through the same :class:`~spark_research.export.ExportManager` that
serves ``/export/*`` under ``spark serve`` (so an export started here is also visible to the HTTP
API of the same user), as the logged-in user (``pn.state.user``). Served alone it opens its own
manager over ``<var>/exports``.

Example::

    >>> import tempfile
    >>> from spark_research.export import ExportManager
    >>> ec = ExportCenter(manager=ExportManager(tempfile.mkdtemp()), user="alice")
    >>> ec.what, ec.format, ec.parameters
    ('synthetic_trades', 'csv', '{"rows": 10000}')
    >>> ec.start(); ec.manager.wait(ec.job_id, "alice").state
    'succeeded'
"""
from __future__ import annotations

import html
import json
import threading
from typing import Any

import pandas as pd
import panel as pn
import param

from spark_research.export.errors import ConcurrencyLimitError, ExportFinishedError, ExportParamError
from spark_research.export.jobs import FORMATS, PDF_REPORTS, ExportManager
from spark_research.export.sources import SOURCES

#: Parameters the form starts with, per source (the rest take the source's defaults).
DEFAULT_PARAMETERS: dict[str, dict[str, Any]] = {
    "synthetic_trades": {"rows": 10_000},
    "backtest_trades": {"strategy": "sma_cross", "symbol": "BTCUSDT", "params": {"fast": 10, "slow": 50}},
    "bars": {"symbol": "BTCUSDT"},
    "trades": {"symbol": "BTCUSDT"},
}
JOB_COLUMNS = ["id", "what", "format", "state", "progress", "rows_done", "bytes", "created", "error"]
_LOCK = threading.Lock()
_OWN_MANAGER: ExportManager | None = None


def export_manager() -> ExportManager:
    """The platform's manager under ``spark serve``; else this process's own one."""
    global _OWN_MANAGER
    from spark_research.platform import runtime

    platform = runtime.current()
    if platform is not None and platform.exports is not None:
        return platform.exports
    with _LOCK:
        if _OWN_MANAGER is None:
            _OWN_MANAGER = ExportManager()
        return _OWN_MANAGER


class ExportCenter(param.Parameterized):
    """One session of the export center (see module docstring)."""

    what = param.Selector(default="synthetic_trades", objects=sorted(SOURCES), doc="what to export")
    format = param.Selector(default="csv", objects=list(FORMATS), doc="file format")
    parameters = param.String(default="", doc="parameters as a JSON object")
    job_id = param.String(default="", doc="the export followed on this page")
    message = param.String(default="")
    progress = param.Integer(default=0, bounds=(0, 100))
    state = param.String(default="", doc="state of the followed export")
    version = param.Integer(default=0, doc="bumped when the followed export or the list changed")

    def __init__(self, *, manager: ExportManager | None = None, user: str | None = None, **params: Any):
        super().__init__(**params)
        self.manager = manager or export_manager()
        self.user = user or pn.state.user or "anonymous"
        self._seen: tuple = ()
        self._on_what()

    @param.depends("what", watch=True)
    def _on_what(self) -> None:
        self.parameters = json.dumps(DEFAULT_PARAMETERS.get(self.what, {}))
        if self.format == "pdf" and self.what not in PDF_REPORTS:
            self.format = "csv"

    def description(self, what: str | None = None) -> str:
        spec = SOURCES[what or self.what]
        params = ", ".join(f"{p.name}={p.default!r}" for p in spec.params)
        return f"{spec.description}. Parameters: {params or 'none'}"

    # ------------------------------------------------------------------ actions
    def start(self, event: Any = None) -> None:
        """Validate the form and queue the export as this session's user."""
        try:
            params = json.loads(self.parameters or "{}")
        except json.JSONDecodeError as exc:
            self.message = f"refused: parameters is not JSON ({exc.msg} at column {exc.colno})"
            return
        if not isinstance(params, dict):
            self.message = f"refused: parameters must be a JSON object, got {type(params).__name__}"
            return
        try:
            job = self.manager.submit(self.user, self.what, self.format, params)
        except (ExportParamError, ConcurrencyLimitError) as exc:
            self.message = f"refused: {exc}"
            return
        self.job_id, self.state, self.progress = job.id, job.state, 0
        self.message = f"export {job.id[:8]} queued: {self.what} as {self.format}"
        self.version += 1

    def cancel(self, event: Any = None) -> None:
        """Cancel the export followed on this page (queued: never starts; running: stops and its
        partial file goes). Does not wait: the state follows through :meth:`refresh`."""
        if not self.job_id:
            self.message = "refused: no export to cancel (start one first)"
            return
        try:
            job = self.manager.cancel(self.job_id, self.user, wait=0)
        except ExportFinishedError as exc:
            self.message = f"refused: {exc}"
            return
        self.state = job.state
        self.message = f"export {job.id[:8]} " + ("cancelled" if job.state == "cancelled" else "cancelling")
        self.version += 1

    def refresh(self) -> None:
        """Follow the current export and the user's list (periodic callback)."""
        jobs = self.manager.list(self.user)
        seen = tuple((j.id, j.state, j.rows_done) for j in jobs)
        if seen == self._seen:
            return
        self._seen = seen
        if self.job_id:
            job = self.manager.get(self.job_id, self.user)
            self.state = job.state
            self.progress = int(100 * (job.progress or 0))
            if job.state == "succeeded":
                self.message = f"export {job.id[:8]} ready: {job.rows_done:,} rows, {job.bytes:,} bytes"
            elif job.state == "failed":
                self.message = f"export {job.id[:8]} failed ({job.reason}): {job.error}"
            elif job.state == "cancelled":
                self.message = f"export {job.id[:8]} cancelled"
        self.version += 1

    def jobs_frame(self) -> pd.DataFrame:
        rows = [{**j.to_dict(), "id": j.id[:8], "progress": f"{100 * (j.progress or 0):.0f}%",
                 "created": pd.Timestamp(j.created_at, unit="s", tz="UTC").strftime("%H:%M:%S")}
                for j in self.manager.list(self.user)]
        return pd.DataFrame(rows, columns=JOB_COLUMNS)

    # ------------------------------------------------------------------ views
    def form(self) -> pn.Column:
        go = pn.widgets.Button(label="Start export", button_type="primary", css_classes=["start-export"])
        go.on_click(self.start)
        stop = pn.widgets.Button(label="Cancel export", button_type="warning", css_classes=["cancel-export"])
        stop.on_click(self.cancel)
        return pn.Column(
            pn.widgets.Select.from_param(self.param.what, name="What"),
            pn.bind(lambda w: pn.pane.Markdown(self.description(w), css_classes=["export-what-help"]), self.param.what),
            pn.widgets.Select.from_param(self.param.format, name="Format"),
            pn.widgets.TextAreaInput.from_param(self.param.parameters, name="Parameters (JSON)", height=90,
                                                css_classes=["export-parameters"]),
            pn.Row(go, stop),
        )

    @param.depends("message")
    def message_view(self) -> pn.pane.HTML:
        colour = "#c62828" if self.message.startswith("refused") or "failed" in self.message else "#2e7d32"
        return pn.pane.HTML(f'<div id="export-message" style="color:{colour}">{html.escape(self.message)}</div>')

    def progress_view(self) -> pn.Column:
        return pn.Column(
            pn.indicators.Progress.from_param(self.param.progress, width=360, css_classes=["export-progress"]),
            pn.bind(lambda s: pn.pane.HTML(f'<span id="export-state">{html.escape(s)}</span>'), self.param.state),
        )

    @param.depends("version")
    def download_view(self):
        if not self.job_id:
            return pn.pane.Markdown("Start an export to get a download here.")
        job = self.manager.get(self.job_id, self.user)
        if job.state != "succeeded":
            return pn.pane.Markdown(f"Download available when the export has succeeded (now: {job.state}).")
        path = self.manager.file_path(job.id, self.user)
        return pn.widgets.FileDownload(file=str(path), filename=job.filename, color="success",
                                       label=f"Download {job.filename}", embed=False, css_classes=["export-download"])

    @param.depends("version")
    def jobs_view(self) -> pn.pane.DataFrame:
        return pn.pane.DataFrame(self.jobs_frame(), index=False, sizing_mode="stretch_width",
                                 css_classes=["export-jobs"])

    def api_help(self) -> pn.pane.Markdown:
        return pn.pane.Markdown(
            "The same exports over HTTP (each user sees only their own): "
            "`curl -X POST -H 'Authorization: Bearer <token>' -d '{\"what\": \"synthetic_trades\", "
            "\"format\": \"csv\", \"parameters\": {\"rows\": 1000}}' /export/run`, then "
            "`GET /export/status/<id>` and `GET /export/download/<id>`.", css_classes=["export-api-help"])

"""Export endpoints as plain Tornado handlers, for ``panel serve``/``pn.serve`` or a companion process.

=======================================  ===========================================================
``POST /export/run``                     JSON ``{"what", "format", "parameters"}`` -> 202 ``{"id", ...}``
``GET  /export/status/{id}``             state, stage, progress, rows, bytes, error
``GET  /export/download/{id}``           the file, streamed, with its content type and filename
``POST /export/cancel/{id}``             stop a queued or running export -> 200 (cancelled) or 202
``GET  /export/list``                    the caller's exports, newest first
=======================================  ===========================================================

Every route needs ``Authorization: Bearer <token>`` (401 otherwise); users see only their
own exports (another user's id is a 404, like an unknown id); a malformed id or field is a
400 naming it; the per-user limit is a 429 with ``Retry-After``; downloading an export that
has not succeeded, or cancelling one that already finished, is a 409. Errors are JSON
``{"error": ..., "field": ...}``.

Register with Panel (``spark serve`` does this)::

    pn.serve(apps, extra_patterns=export_url_patterns())

Example (a companion process on its own port)::

    >>> app = make_app(ExportManager(tempfile.mkdtemp()))   # doctest: +SKIP
    >>> app.listen(8790, address="127.0.0.1")                # doctest: +SKIP
"""
from __future__ import annotations

import tempfile  # noqa: F401  (used in the docstring example)
from functools import partial
from typing import Any

import orjson
from tornado import iostream
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler

from spark_research import metrics
from spark_research.export.auth import load_tokens, user_for_token
from spark_research.export.errors import (
    AuthError,
    ConcurrencyLimitError,
    ExportFinishedError,
    ExportNotReadyError,
    ExportParamError,
    UnknownExportError,
)
from spark_research.export.jobs import ExportManager

CHUNK = 1 << 20  # download chunk: 1 MiB at a time, flushed, so memory stays flat
CANCEL_WAIT_S = 5.0  # how long POST /export/cancel waits for a running export to stop before answering 202


class _ExportHandler(RequestHandler):
    def initialize(self, manager: ExportManager, tokens: dict[str, str] | None = None) -> None:
        self.manager = manager
        self.tokens = tokens if tokens is not None else load_tokens()
        self.user = "anonymous"

    def prepare(self) -> None:
        try:
            self.user = user_for_token(self.request.headers.get("Authorization"), self.tokens)
        except AuthError as exc:
            metrics.EXPORT_REQUESTS.labels(format="none", status="unauthorized", user="anonymous").inc()
            self.set_header("WWW-Authenticate", 'Bearer realm="spark-export"')
            self._json(401, {"error": str(exc), "field": "Authorization"})
            self.finish()

    def check_xsrf_cookie(self) -> None:  # token auth, no cookies: XSRF does not apply
        return

    def _json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(orjson.dumps(body))

    def _error(self, exc: Exception) -> None:
        if isinstance(exc, ExportParamError):
            self._json(400, {"error": str(exc), "field": exc.field})
        elif isinstance(exc, UnknownExportError):
            self._json(404, {"error": str(exc), "field": "id"})
        elif isinstance(exc, ExportNotReadyError):
            self._json(409, {"error": str(exc), "field": "id"})
        elif isinstance(exc, ExportFinishedError):
            self._json(409, {"error": str(exc), "field": "id", "state": exc.state})
        elif isinstance(exc, ConcurrencyLimitError):
            self.set_header("Retry-After", "5")
            self._json(429, {"error": str(exc), "field": "user", "limit": exc.limit})
        else:
            raise exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": self._reason, "status": status_code}))


class ExportRunHandler(_ExportHandler):
    """``POST /export/run``: queue an export; answers 202 with its id and URLs."""

    def post(self) -> None:
        try:
            body = self._body()
        except ExportParamError as exc:  # rejected before reaching the manager, which counts the rest
            metrics.EXPORT_REQUESTS.labels(format="none", status="rejected", user=self.user).inc()
            self._error(exc)
            return
        try:
            job = self.manager.submit(self.user, body["what"], body["format"], body.get("parameters"))
        except (ExportParamError, ConcurrencyLimitError) as exc:
            self._error(exc)
            return
        base = self.request.path.rsplit("/run", 1)[0]
        self._json(202, {**job.to_dict(), "status_url": f"{base}/status/{job.id}",
                         "download_url": f"{base}/download/{job.id}", "cancel_url": f"{base}/cancel/{job.id}"})

    def _body(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.request.body or b"")
        except orjson.JSONDecodeError as exc:
            raise ExportParamError("body", self.request.body[:80].decode(errors="replace"), f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ExportParamError("body", body, "must be a JSON object with what, format, parameters")
        unknown = sorted(set(body) - {"what", "format", "parameters"})
        if unknown:
            raise ExportParamError(unknown[0], body[unknown[0]], "unknown field; expected what, format, parameters")
        for key in ("what", "format"):
            if key not in body:
                raise ExportParamError(key, None, "required")
        return body


class ExportStatusHandler(_ExportHandler):
    """``GET /export/status/{id}``: the job's state, progress, rows, bytes and error."""

    def get(self, export_id: str) -> None:
        try:
            self._json(200, self.manager.get(export_id, self.user).to_dict())
        except (ExportParamError, UnknownExportError) as exc:
            self._error(exc)


class ExportCancelHandler(_ExportHandler):
    """``POST /export/cancel/{id}``: stop a queued or running export of the caller.

    200 with the status once it is ``cancelled``; 202 with the status (``cancel_requested_at``
    set) if it is still stopping after :data:`CANCEL_WAIT_S`; 409 if it already finished.
    """

    async def post(self, export_id: str) -> None:
        try:  # the manager waits for the export to stop: off the event loop
            job = await IOLoop.current().run_in_executor(
                None, partial(self.manager.cancel, export_id, self.user, wait=CANCEL_WAIT_S))
        except (ExportParamError, UnknownExportError, ExportFinishedError) as exc:
            self._error(exc)
            return
        self._json(200 if job.state == "cancelled" else 202, job.to_dict())


class ExportListHandler(_ExportHandler):
    """``GET /export/list``: the caller's exports, newest first."""

    def get(self) -> None:
        self._json(200, {"exports": [j.to_dict() for j in self.manager.list(self.user)]})


class ExportDownloadHandler(_ExportHandler):
    """``GET /export/download/{id}``: stream the file in 1 MiB chunks."""

    async def get(self, export_id: str) -> None:
        try:
            path = self.manager.file_path(export_id, self.user)
            job = self.manager.get(export_id, self.user)
        except (ExportParamError, UnknownExportError, ExportNotReadyError) as exc:
            self._error(exc)
            return
        self.set_header("Content-Type", job.content_type)
        self.set_header("Content-Disposition", f'attachment; filename="{job.filename}"')
        self.set_header("Content-Length", str(path.stat().st_size))
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                self.write(chunk)
                try:
                    await self.flush()
                except iostream.StreamClosedError:
                    return  # the client went away; nothing else to do


def export_url_patterns(manager: ExportManager | None = None, prefix: str = "",
                        tokens: dict[str, str] | None = None) -> list[tuple]:
    """Tornado URL specs of the export endpoints (for ``extra_patterns`` or an ``Application``).

    Example::

        >>> [p[0] for p in export_url_patterns(ExportManager(tempfile.mkdtemp()))][:2]
        ['/export/run', '/export/status/([^/]+)']
    """
    manager = manager or ExportManager()
    kw = {"manager": manager, "tokens": tokens}
    return [
        (f"{prefix}/export/run", ExportRunHandler, kw),
        (f"{prefix}/export/status/([^/]+)", ExportStatusHandler, kw),
        (f"{prefix}/export/download/([^/]+)", ExportDownloadHandler, kw),
        (f"{prefix}/export/cancel/([^/]+)", ExportCancelHandler, kw),
        (f"{prefix}/export/list", ExportListHandler, kw),
    ]


def make_app(manager: ExportManager | None = None, tokens: dict[str, str] | None = None,
             with_metrics: bool = True) -> Application:
    """A Tornado application with the export endpoints (and ``/metrics``): the companion process."""
    patterns = export_url_patterns(manager, tokens=tokens)
    if with_metrics:
        patterns.append(("/metrics", metrics.tornado_handler()))
    return Application(patterns)

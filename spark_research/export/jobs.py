"""Export jobs: validated requests run on a small thread pool, persisted as JSON on disk.

Each job lives in ``<var>/exports/<id>/``: ``job.json`` (its state, rewritten atomically)
and, once finished, the exported file. A job record survives a restart: jobs that were
queued or running when the process died are queued again when the next
:class:`ExportManager` opens the directory (up to :data:`MAX_ATTEMPTS` attempts). Ids are
32 hex characters (``uuid4().hex``); anything else is rejected before it touches a path.
One server process should own a directory (``spark serve`` or ``spark export serve``): two
managers resuming the same directory would both re-run an interrupted job. ``spark export
run`` opens it without resuming, so it can run beside a server.

Example::

    >>> import tempfile
    >>> mgr = ExportManager(tempfile.mkdtemp())
    >>> job = mgr.submit("alice", "synthetic_trades", "csv", {"rows": 500})
    >>> mgr.wait(job.id, "alice").state, mgr.get(job.id, "alice").rows_done
    ('succeeded', 500)
    >>> mgr.close()
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import orjson

from spark_research import metrics
from spark_research.config import settings
from spark_research.export.errors import (
    ConcurrencyLimitError,
    ExportError,
    ExportNotReadyError,
    ExportParamError,
    ExportSourceError,
    ReportRenderError,
    UnknownExportError,
)
from spark_research.export.sources import validate_params

#: format -> (content type, file extension)
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "csv.gz": ("application/gzip", ".csv.gz"),
    "pdf": ("application/pdf", ".pdf"),
}
#: ``what`` that can be rendered as a PDF report -> report kind.
PDF_REPORTS: dict[str, str] = {"backtest_trades": "backtest"}
STATES = ("queued", "running", "succeeded", "failed")
ACTIVE = ("queued", "running")
MAX_ATTEMPTS = 3
_ID = re.compile(r"[0-9a-f]{32}")
_PERSIST_EVERY_S = 0.5


def size_bucket(rows: int) -> str:
    """The ``size`` label of ``export_latency_ms``: rows rounded up to 1k/10k/50k/100k/1m/10m/more.

    Example::

        >>> size_bucket(10_000), size_bucket(50_001), size_bucket(1_000_000)
        ('10k', '100k', '1m')
    """
    for limit, label in ((1_000, "1k"), (10_000, "10k"), (50_000, "50k"), (100_000, "100k"),
                         (1_000_000, "1m"), (10_000_000, "10m")):
        if rows <= limit:
            return label
    return "more"


def check_id(export_id: object) -> str:
    """Return ``export_id`` if it is 32 lowercase hex characters, else raise :class:`ExportParamError`."""
    if not isinstance(export_id, str) or not _ID.fullmatch(export_id):
        raise ExportParamError("id", export_id, "must be 32 lowercase hex characters")
    return export_id


@dataclass
class ExportJob:
    """One export request and its state (what ``GET /export/status/{id}`` returns)."""

    id: str
    user: str
    what: str
    format: str
    params: dict[str, Any]
    state: str = "queued"
    stage: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    rows_done: int = 0
    rows_total: int | None = None
    bytes: int = 0
    error: str | None = None
    reason: str | None = None
    attempts: int = 0

    @property
    def filename(self) -> str:
        """Download name: ``<what>-<first 8 of id><ext>``."""
        return f"{self.what}-{self.id[:8]}{FORMATS[self.format][1]}"

    @property
    def content_type(self) -> str:
        return FORMATS[self.format][0]

    @property
    def progress(self) -> float | None:
        """Fraction of rows done (1.0 once succeeded; None while the total is unknown)."""
        if self.state == "succeeded":
            return 1.0
        if not self.rows_total:
            return None
        return min(1.0, self.rows_done / self.rows_total)

    def to_dict(self) -> dict[str, Any]:
        """Status as JSON-ready dict (progress and filename included)."""
        return {**asdict(self), "progress": self.progress, "filename": self.filename}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExportJob":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ExportParamError):
        return "invalid_params"
    if isinstance(exc, (ExportSourceError, KeyError, FileNotFoundError)):
        return "source_error"
    if isinstance(exc, ReportRenderError) or type(exc).__module__.startswith(("papermill", "nbclient", "nbconvert")):
        return "render_error"
    if isinstance(exc, OSError):
        return "io_error"
    return "internal"


class ExportManager:
    """Accepts, runs, persists and serves export jobs under ``root`` (default ``<var>/exports``).

    ``max_per_user``: queued + running jobs one user may have (``SPARK_EXPORT_MAX_PER_USER``,
    default 2); ``workers``: exports run at once by this process.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_per_user: int | None = None,
                 workers: int = 2, resume: bool = True):
        self.root = Path(root) if root is not None else settings().var_dir / "exports"
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.max_per_user = int(max_per_user or os.environ.get("SPARK_EXPORT_MAX_PER_USER", 2))
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._jobs: dict[str, ExportJob] = {}
        self._outcomes: dict[str, list[int]] = {}  # format -> [succeeded, failed] in this process
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export")
        self._load(resume)

    # ------------------------------------------------------------------ persistence
    def _dir(self, export_id: str) -> Path:
        path = (self.root / check_id(export_id)).resolve()
        if path.parent != self.root:  # belt and braces: check_id already forbids '/', '.', '\\'
            raise ExportParamError("id", export_id, "escapes the export directory")
        return path

    def _save(self, job: ExportJob) -> None:
        d = self._dir(job.id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".job-{uuid.uuid4().hex}.json"
        tmp.write_bytes(orjson.dumps(asdict(job), option=orjson.OPT_INDENT_2))
        os.replace(tmp, d / "job.json")

    def _load(self, resume: bool) -> None:
        for path in sorted(self.root.glob("*/job.json")):
            if not _ID.fullmatch(path.parent.name):
                continue
            for torn in path.parent.glob(".job-*.json"):  # a record write cut short by a kill
                torn.unlink(missing_ok=True)
            try:
                job = ExportJob.from_dict(orjson.loads(path.read_bytes()))
            except (orjson.JSONDecodeError, TypeError):
                continue  # a torn record cannot exist (atomic replace); a foreign file is skipped
            self._jobs[job.id] = job
            if job.state in ACTIVE and resume:
                if job.attempts >= MAX_ATTEMPTS:
                    self._finish_failed(job, f"interrupted {job.attempts} times (server restarts)", "interrupted")
                else:
                    job.state, job.stage = "queued", "resumed after restart"
                    self._save(job)
                    self._pool.submit(self._run, job)

    # ------------------------------------------------------------------ requests
    def submit(self, user: str, what: str, fmt: str, params: Mapping[str, Any] | None = None) -> ExportJob:
        """Validate and queue an export; return its :class:`ExportJob` (state ``queued``).

        Raises :class:`ExportParamError` (bad field) or :class:`ConcurrencyLimitError`.
        """
        try:
            if fmt not in FORMATS:
                raise ExportParamError("format", fmt, f"must be one of {sorted(FORMATS)}")
            clean = validate_params(what, params)
            if fmt == "pdf" and what not in PDF_REPORTS:
                raise ExportParamError("format", fmt, f"a PDF report exists for what in {sorted(PDF_REPORTS)}, "
                                       f"not {what!r}; export it as csv")
            with self._lock:
                active = sum(1 for j in self._jobs.values() if j.user == user and j.state in ACTIVE)
                if active >= self.max_per_user:
                    raise ConcurrencyLimitError(user, active, self.max_per_user)
                job = ExportJob(uuid.uuid4().hex, user, what, fmt, {k: v for k, v in clean.items() if v is not None})
                self._jobs[job.id] = job
                self._save(job)
        except ExportParamError:
            metrics.EXPORT_REQUESTS.labels(format=str(fmt)[:16], status="rejected", user=user).inc()
            raise
        except ConcurrencyLimitError:
            metrics.EXPORT_REQUESTS.labels(format=fmt, status="throttled", user=user).inc()
            raise
        self._pool.submit(self._run, job)
        return job

    def get(self, export_id: str, user: str | None) -> ExportJob:
        """The job ``export_id`` if it belongs to ``user`` (None: any user, for the CLI)."""
        check_id(export_id)
        with self._lock:
            job = self._jobs.get(export_id)
            if job is None or (user is not None and job.user != user):
                raise UnknownExportError(export_id, user or "*")
            return ExportJob.from_dict(asdict(job))  # a snapshot: the runner mutates the original

    def list(self, user: str | None = None) -> list[ExportJob]:
        """Jobs of ``user`` (None: all), newest first."""
        with self._lock:
            jobs = [ExportJob.from_dict(asdict(j)) for j in self._jobs.values() if user is None or j.user == user]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def file_path(self, export_id: str, user: str | None) -> Path:
        """Path of the finished export's file; :class:`ExportNotReadyError` unless it succeeded."""
        job = self.get(export_id, user)
        if job.state != "succeeded":
            detail = f": {job.error}" if job.error else ""
            raise ExportNotReadyError(f"export {export_id} is {job.state}{detail}")
        path = self._dir(export_id) / job.filename
        if not path.is_file():
            raise ExportNotReadyError(f"export {export_id} has no file any more (cleaned up?)")
        return path

    def wait(self, export_id: str, user: str | None = None, timeout: float = 600.0) -> ExportJob:
        """Block until the job is finished (or ``timeout`` seconds pass); return its state."""
        deadline = time.monotonic() + timeout
        with self._done:
            while True:
                job = self.get(export_id, user)
                if job.state not in ACTIVE:
                    return job
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"export {export_id} still {job.state} after {timeout}s")
                self._done.wait(min(left, 0.5))

    def cleanup(self, max_age_s: float | None = None, now: float | None = None) -> list[str]:
        """Delete finished exports older than ``max_age_s`` (``SPARK_EXPORT_MAX_AGE_S``, default 7 days).

        Age counts from ``finished_at``; running and queued jobs are never removed. Returns the ids removed.
        """
        max_age = float(max_age_s if max_age_s is not None else os.environ.get("SPARK_EXPORT_MAX_AGE_S", 7 * 86400))
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            for job in list(self._jobs.values()):
                if job.state not in ACTIVE and job.finished_at is not None and now - job.finished_at > max_age:
                    shutil.rmtree(self._dir(job.id), ignore_errors=True)
                    del self._jobs[job.id]
                    removed.append(job.id)
        return removed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (no new exports run)."""
        return self._pool._shutdown

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait`` let running exports finish."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    # ------------------------------------------------------------------ running
    def _run(self, job: ExportJob) -> None:
        for stale in self._dir(job.id).glob(".tmp-*"):  # a partial file of an attempt killed mid-write
            stale.unlink(missing_ok=True)
        with self._lock:
            job.state, job.started_at, job.attempts = "running", time.time(), job.attempts + 1
            job.rows_done, job.bytes, job.error, job.reason = 0, 0, None, None
            self._save(job)
        metrics.EXPORT_CONCURRENT_RUNNING.inc()
        last_save = [time.monotonic()]

        def progress(rows: int, total: int | None, nbytes: int) -> None:
            with self._lock:
                job.rows_done, job.rows_total, job.bytes = rows, total, nbytes
                if time.monotonic() - last_save[0] > _PERSIST_EVERY_S:
                    self._save(job)
                    last_save[0] = time.monotonic()

        def stage(name: str) -> None:
            with self._lock:
                job.stage = name
                self._save(job)

        t0 = time.perf_counter()
        try:
            out = self._dir(job.id) / job.filename
            if job.format == "pdf":
                from spark_research.export.report import render_report

                res = render_report(PDF_REPORTS[job.what], job.params, out, progress=progress, stage=stage)
                rows, size = res.rows, res.bytes
            else:
                from spark_research.export.sources import open_source
                from spark_research.export.streaming import write_csv

                stage("open")
                src = open_source(job.what, job.params)
                with self._lock:
                    job.rows_total = src.total_rows
                stage("write")
                res = write_csv(src, out, gzip=job.format == "csv.gz", progress=progress)
                rows, size = res.rows, res.bytes
        except Exception as exc:  # every failure is recorded on the job, never lost in a thread
            metrics.EXPORT_CONCURRENT_RUNNING.dec()
            self._finish_failed(job, f"{type(exc).__name__}: {exc}", _reason(exc))
            return
        metrics.EXPORT_CONCURRENT_RUNNING.dec()
        with self._lock:
            job.state, job.stage, job.finished_at = "succeeded", None, time.time()
            job.rows_done, job.bytes = rows, size
            if job.rows_total is None:
                job.rows_total = rows
            self._save(job)
            self._count(job.format, ok=True)
            self._done.notify_all()
        metrics.EXPORT_REQUESTS.labels(format=job.format, status="succeeded", user=job.user).inc()
        metrics.EXPORT_BYTES.labels(format=job.format, status="succeeded").inc(size)
        metrics.EXPORT_LATENCY_MS.labels(format=job.format, size=size_bucket(rows)).observe(
            (time.perf_counter() - t0) * 1000)

    def _finish_failed(self, job: ExportJob, error: str, reason: str) -> None:
        with self._lock:
            job.state, job.finished_at, job.error, job.reason = "failed", time.time(), error, reason
            self._save(job)
            self._count(job.format, ok=False)
            self._done.notify_all()
        metrics.EXPORT_REQUESTS.labels(format=job.format, status="failed", user=job.user).inc()
        metrics.EXPORT_FAIL.labels(reason=reason, format=job.format).inc()
        metrics.EXPORT_BYTES.labels(format=job.format, status="failed").inc(job.bytes)

    def _count(self, fmt: str, ok: bool) -> None:
        tally = self._outcomes.setdefault(fmt, [0, 0])
        tally[0 if ok else 1] += 1
        metrics.EXPORT_SUCCESS_RATE.labels(format=fmt).set(tally[0] / (tally[0] + tally[1]))


__all__ = ["ExportJob", "ExportManager", "FORMATS", "PDF_REPORTS", "size_bucket", "check_id", "ExportError"]

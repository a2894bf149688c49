"""Export jobs: validated requests run on a small thread pool, persisted as JSON on disk.

Each job lives in ``<var>/exports/<id>/``: ``job.json`` (its state, rewritten atomically)
and, once finished, the exported file. A job record survives a restart: jobs that were
queued or running when the process died are queued again when the next
:class:`ExportManager` opens the directory (up to :data:`MAX_ATTEMPTS` attempts). Ids are
32 hex characters (``uuid4().hex``); anything else is rejected before it touches a path.
One server process should own a directory (``spark serve`` or ``spark export serve``): two
managers resuming the same directory would both re-run an interrupted job. ``spark export
run`` opens it without resuming, so it can run beside a server.

States: ``queued`` -> ``running`` -> ``succeeded`` | ``failed``, and ``cancelled`` from either
active state (:meth:`ExportManager.cancel`). A job cancelled while queued never starts; a
running CSV export stops between two batches and removes its partial file; a running PDF
report has its worker killed with the kernel, chromium or xelatex it started. A process that
does not run the job (``spark export cancel`` beside a server) leaves a :data:`CANCEL_REQUEST`
file in the job's directory, which the running process acts on within 0.1 s; a job no live
process runs (its server is down) is cancelled on the spot and not resumed later.

Under ``spark serve`` the exports run in a process of their own, the export worker
(:mod:`spark_research.export.service`, an :class:`ExportManager` that :meth:`~ExportManager.pick_up`\ s
the jobs other processes queue in its directory), and the web process serves them through a
:class:`RemoteExportManager`: the same surface, with the job records on disk as the only
channel between the two (a queued record with no owner is the worker's to run; a
:data:`CLAIM_LOCK` file lock makes "claim it" and "cancel it here" exclusive).

Example::

    >>> import tempfile
    >>> mgr = ExportManager(tempfile.mkdtemp())
    >>> job = mgr.submit("alice", "synthetic_trades", "csv", {"rows": 500})
    >>> mgr.wait(job.id, "alice").state, mgr.get(job.id, "alice").rows_done
    ('succeeded', 500)
    >>> mgr.close()
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import orjson
import psutil

from spark_research import metrics
from spark_research.config import settings
from spark_research.export.errors import (
    ConcurrencyLimitError,
    ExportError,
    ExportFinishedError,
    ExportNotReadyError,
    ExportParamError,
    ExportSourceError,
    ReportRenderError,
    UnknownExportError,
)
from spark_research.export.report import check_renderer
from spark_research.export.sources import validate_params

#: format -> (content type, file extension)
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "csv.gz": ("application/gzip", ".csv.gz"),
    "pdf": ("application/pdf", ".pdf"),
}
#: ``what`` that can be rendered as a PDF report -> report kind.
PDF_REPORTS: dict[str, str] = {"backtest_trades": "backtest"}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
MAX_ATTEMPTS = 3
#: In a job's directory: another process asks the one running the job to cancel it.
CANCEL_REQUEST = "cancel.request"
#: In the export directory: held (``flock``) while a process claims a queued job or cancels one
#: no live process runs, so the two never interleave.
CLAIM_LOCK = ".claims.lock"
_ID = re.compile(r"[0-9a-f]{32}")
_PERSIST_EVERY_S = 0.5
_WATCH_EVERY_S = 0.1
_FOLLOW_EVERY_S = 0.2  # RemoteExportManager: how often the records of unfinished jobs are looked at
log = logging.getLogger("spark_research.export")


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
    renderer: str | None = None  #: PDF only: ``chromium`` or ``latex``, whichever printed the file
    renderer_fallback: str | None = None  #: PDF only: why chromium was passed over under ``auto``
    cancel_requested_at: float | None = None
    owner: str | None = None  #: ``<pid> <start time>`` of the process that queued or ran it (not in the status)

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
        """Status as JSON-ready dict (progress and filename included, the owner process left out)."""
        status = asdict(self)
        del status["owner"]
        return {**status, "progress": self.progress, "filename": self.filename}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExportJob":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _process_id() -> str:
    """This process as ``<pid> <start time>``: a pid alone may be reused after a restart."""
    return f"{os.getpid()} {psutil.Process().create_time()!r}"


def _alive(owner: str) -> bool:
    try:
        pid, started = owner.split()
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1e-3
    except (ValueError, psutil.Error):
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
    default 2); ``workers``: exports run at once by this process. ``record_requests=False`` (the
    export worker process): ``export_requests_total`` is left to the process that took the
    requests (:class:`RemoteExportManager` counts each job's outcome from its record).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_per_user: int | None = None,
                 workers: int = 2, resume: bool = True, record_requests: bool = True):
        self.root = Path(root) if root is not None else settings().var_dir / "exports"
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.max_per_user = int(max_per_user or os.environ.get("SPARK_EXPORT_MAX_PER_USER", 2))
        self.record_requests = record_requests
        self._suspending = threading.Event()  # suspend(): running jobs stop, resumable
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._jobs: dict[str, ExportJob] = {}
        self._outcomes: dict[str, list[int]] = {}  # format -> [succeeded, failed] in this process
        self._cancels: dict[str, threading.Event] = {}  # jobs queued or running in this process
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None
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

    def _reload(self, export_id: str) -> ExportJob:
        """The record on disk (kept by the process running the job), also refreshed in memory."""
        try:
            job = ExportJob.from_dict(orjson.loads((self._dir(export_id) / "job.json").read_bytes()))
        except (OSError, orjson.JSONDecodeError, TypeError):
            return self._jobs[export_id]
        self._jobs[export_id] = job
        return job

    def _adopt(self, job: ExportJob) -> None:
        """Mark ``job`` as queued or running in this process (cancel event, owner, watcher); caller saves."""
        self._cancels[job.id] = threading.Event()
        job.owner = _process_id()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="export-cancel-watch", daemon=True)
            self._watcher.start()

    def _release(self, job: ExportJob) -> None:
        self._cancels.pop(job.id, None)
        (self._dir(job.id) / CANCEL_REQUEST).unlink(missing_ok=True)

    def _watch(self) -> None:
        """Act on cancel requests other processes leave for the jobs this process runs."""
        while not self._closing.wait(_WATCH_EVERY_S):
            with self._lock:
                for export_id, event in list(self._cancels.items()):
                    if not event.is_set() and (self.root / export_id / CANCEL_REQUEST).exists():
                        self._cancel_here(self._jobs[export_id])

    @contextlib.contextmanager
    def _claim_lock(self) -> Iterator[None]:
        """Exclusive across processes (``flock`` on :data:`CLAIM_LOCK`; a killed holder releases it)."""
        fd = os.open(self.root / CLAIM_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _load(self, resume: bool) -> None:
        for path in sorted(self.root.glob("*/job.json")):
            if not _ID.fullmatch(path.parent.name):
                continue
            try:
                job = ExportJob.from_dict(orjson.loads(path.read_bytes()))
            except (orjson.JSONDecodeError, TypeError):
                continue  # a torn record cannot exist (atomic replace); a foreign file is skipped
            self._jobs[job.id] = job
            if resume:
                # a record write cut short by a kill; only a resuming process removes them (another
                # process's write in progress looks the same)
                for torn in path.parent.glob(".job-*.json"):
                    torn.unlink(missing_ok=True)
                if job.state in ACTIVE:
                    self._resume(job, "resumed after restart")

    def _resume(self, job: ExportJob, stage: str | None) -> None:
        """Queue ``job`` (active, no live process runs it) here, or end it: asked to stop, or retried enough."""
        if job.cancel_requested_at is not None or (self._dir(job.id) / CANCEL_REQUEST).exists():
            self._finish_cancelled(job)  # asked to stop before the process running it died
        elif job.attempts >= MAX_ATTEMPTS:
            self._finish_failed(job, f"interrupted {job.attempts} times (server restarts)", "interrupted")
        else:
            job.state, job.stage = "queued", stage
            self._adopt(job)
            self._save(job)
            self._pool.submit(self._run, job)

    def pick_up(self) -> list[str]:
        """Run here every job of the directory that is queued or running and no live process runs.

        That is a job queued by a :class:`RemoteExportManager` (its record has no owner yet), or
        one whose process died (it starts over, like a resumed job at open). The export worker
        calls this at start, when woken and every few seconds. Returns the ids it queued.

        Example::

            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> client = RemoteExportManager(root)          # queues, runs nothing
            >>> job = client.submit("alice", "synthetic_trades", "csv", {"rows": 100})
            >>> worker = ExportManager(root, resume=False)
            >>> worker.pick_up() == [job.id], client.wait(job.id, "alice").state
            (True, 'succeeded')
            >>> worker.close(); client.close()
        """
        queued: list[str] = []
        with self._lock, self._claim_lock():
            for path in sorted(self.root.glob("*/job.json")):
                export_id = path.parent.name
                if self._closing.is_set():
                    break
                if not _ID.fullmatch(export_id) or export_id in self._cancels:
                    continue
                known = self._jobs.get(export_id)
                if known is not None and known.state not in ACTIVE:
                    continue  # a finished record never changes
                try:
                    job = ExportJob.from_dict(orjson.loads(path.read_bytes()))
                except (OSError, orjson.JSONDecodeError, TypeError):
                    continue
                if job.id != export_id:
                    continue  # a foreign file
                self._jobs[job.id] = job
                if job.state not in ACTIVE or (job.owner is not None and _alive(job.owner)):
                    continue
                for torn in path.parent.glob(".job-*.json"):  # its writer is dead
                    torn.unlink(missing_ok=True)
                fresh = job.owner is None and job.state == "queued"  # queued for this process, never run
                try:
                    self._resume(job, job.stage if fresh else "resumed after restart")
                except RuntimeError:  # the pool was shut down meanwhile: the next start picks it up
                    break
                if job.state == "queued":
                    queued.append(job.id)
        return queued

    # ------------------------------------------------------------------ requests
    def submit(self, user: str, what: str, fmt: str, params: Mapping[str, Any] | None = None) -> ExportJob:
        """Validate and queue an export; return its :class:`ExportJob` (state ``queued``).

        A PDF report also takes ``renderer`` among its parameters: ``auto`` (default),
        ``chromium`` or ``latex`` (see :func:`~spark_research.export.report.render_report`).
        Raises :class:`ExportParamError` (bad field) or :class:`ConcurrencyLimitError`.
        """
        try:
            if fmt not in FORMATS:
                raise ExportParamError("format", fmt, f"must be one of {sorted(FORMATS)}")
            renderer = None
            if isinstance(params, Mapping) and "renderer" in params:
                if fmt != "pdf":
                    raise ExportParamError("parameters.renderer", params["renderer"],
                                           f"applies to format 'pdf' only, not {fmt!r}")
                renderer = check_renderer(params["renderer"], "parameters.renderer")
                params = {k: v for k, v in params.items() if k != "renderer"}
            clean = validate_params(what, params)
            if fmt == "pdf" and what not in PDF_REPORTS:
                raise ExportParamError("format", fmt, f"a PDF report exists for what in {sorted(PDF_REPORTS)}, "
                                       f"not {what!r}; export it as csv")
            kept = {k: v for k, v in clean.items() if v is not None}
            if fmt == "pdf":
                kept["renderer"] = renderer or "auto"
            with self._lock:
                active = self._active_count(user)
                if active >= self.max_per_user:
                    raise ConcurrencyLimitError(user, active, self.max_per_user)
                job = ExportJob(uuid.uuid4().hex, user, what, fmt, kept)
                self._jobs[job.id] = job
                self._enqueue(job)
        except ExportParamError:
            self._count_request(str(fmt)[:16], "rejected", user)
            raise
        except ConcurrencyLimitError:
            self._count_request(fmt, "throttled", user)
            raise
        self._start(job)
        return job

    def _active_count(self, user: str) -> int:
        """Queued + running jobs of ``user`` (lock held)."""
        return sum(1 for j in self._jobs.values() if j.user == user and j.state in ACTIVE)

    def _enqueue(self, job: ExportJob) -> None:
        """Write the record of a new job (lock held): queued, run by this process."""
        self._adopt(job)
        self._save(job)

    def _start(self, job: ExportJob) -> None:
        self._pool.submit(self._run, job)

    def _count_request(self, fmt: str, status: str, user: str) -> None:
        if self.record_requests:
            metrics.EXPORT_REQUESTS.labels(format=fmt, status=status, user=user).inc()

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

    def cancel(self, export_id: str, user: str | None, wait: float = 5.0) -> ExportJob:
        """Cancel a queued or running export of ``user`` (None: any user); return its state.

        A queued export is cancelled at once and never starts. A running one is told to stop
        and this waits up to ``wait`` seconds for it to be ``cancelled`` (a CSV export stops
        before its next batch, a PDF report within a second or two); if it has not stopped by
        then, the returned state is still ``running`` with ``cancel_requested_at`` set. An
        export run by another process is asked through a :data:`CANCEL_REQUEST` file; one that
        no live process runs is cancelled here. Raises :class:`UnknownExportError` and
        :class:`ExportFinishedError` (it already succeeded, failed or was cancelled).

        Example::

            >>> import tempfile
            >>> mgr = ExportManager(tempfile.mkdtemp())
            >>> job = mgr.submit("alice", "synthetic_trades", "csv", {"rows": 50_000_000})
            >>> mgr.cancel(job.id, "alice").state
            'cancelled'
            >>> mgr.close()
        """
        self.get(export_id, user)  # unknown ids and other users' exports: UnknownExportError
        with self._lock:
            here = export_id in self._cancels
            if here:
                job = self._jobs[export_id]
                if job.state not in ACTIVE:
                    raise ExportFinishedError(export_id, job.state)
                self._cancel_here(job)
            else:
                with self._claim_lock():  # an export worker cannot claim it meanwhile (pick_up)
                    job = self._reload(export_id)
                    if job.state not in ACTIVE:
                        raise ExportFinishedError(export_id, job.state)
                    if job.owner and _alive(job.owner):
                        _write_atomic(self._dir(export_id) / CANCEL_REQUEST, _process_id().encode())
                    else:  # its process died, or none took it yet: nothing to stop, nothing shall resume it
                        self._finish_cancelled(job)
        deadline = time.monotonic() + wait
        with self._done:
            while True:
                job = self.get(export_id, user) if here else ExportJob.from_dict(asdict(self._reload(export_id)))
                if job.state not in ACTIVE or time.monotonic() >= deadline:
                    return job
                self._done.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _cancel_here(self, job: ExportJob) -> None:
        """Cancel ``job``, queued or running in this process (lock held)."""
        if job.cancel_requested_at is None:
            job.cancel_requested_at = time.time()
        if job.state == "queued":
            self._finish_cancelled(job)
        else:
            self._cancels[job.id].set()
            self._save(job)

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

    def running_here(self) -> dict[str, int]:
        """Exports this process runs: ``{"running": n, "queued": m}`` (what the export worker's ``/health`` shows).

        Example::

            >>> import tempfile
            >>> ExportManager(tempfile.mkdtemp()).running_here()
            {'running': 0, 'queued': 0}
        """
        with self._lock:
            states = [self._jobs[i].state for i in self._cancels if i in self._jobs]
        return {"running": states.count("running"), "queued": states.count("queued")}

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (no new exports run)."""
        return self._pool._shutdown

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait`` let running exports finish."""
        self._closing.set()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def suspend(self) -> None:
        """Stop now and leave every unfinished job to the next process that resumes the directory.

        What the export worker does on SIGTERM: a running CSV export stops before its next batch
        (its partial file removed), a PDF report's worker is killed; their records go back to
        ``queued`` (that attempt not counted against :data:`MAX_ATTEMPTS`), queued ones stay
        queued. Returns once no export runs here.

        Example::

            >>> import tempfile
            >>> mgr = ExportManager(tempfile.mkdtemp())
            >>> job = mgr.submit("alice", "synthetic_trades", "csv", {"rows": 50_000_000})
            >>> mgr.suspend(); mgr.get(job.id, "alice").state
            'queued'
        """
        with self._lock:
            self._suspending.set()
            self._closing.set()
            for event in self._cancels.values():
                event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ running
    def _run(self, job: ExportJob) -> None:
        with self._lock:
            if job.state != "queued" or self._suspending.is_set():  # cancelled while it waited, or suspended
                return
            cancel = self._cancels[job.id]
            for stale in self._dir(job.id).glob(".tmp-*"):  # a partial file of an attempt killed mid-write
                stale.unlink(missing_ok=True)
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

                params = dict(job.params)
                renderer = params.pop("renderer", "auto")
                res = render_report(PDF_REPORTS[job.what], params, out, renderer=renderer, progress=progress,
                                    stage=stage, cancel=cancel)
                rows, size = res.rows, res.bytes
                with self._lock:
                    job.renderer, job.renderer_fallback = res.renderer, res.renderer_fallback
            else:
                from spark_research.export.sources import open_source
                from spark_research.export.streaming import write_csv

                stage("open")
                src = open_source(job.what, job.params)
                with self._lock:
                    job.rows_total = src.total_rows
                stage("write")
                res = write_csv(src, out, gzip=job.format == "csv.gz", progress=progress, cancel=cancel)
                rows, size = res.rows, res.bytes
        except Exception as exc:  # every failure is recorded on the job, never lost in a thread
            metrics.EXPORT_CONCURRENT_RUNNING.dec()
            with self._lock:
                if cancel.is_set():  # whatever it stopped with, it was told to stop
                    if job.cancel_requested_at is None:  # by suspend(), not by a cancel
                        self._set_aside(job)
                    else:
                        self._finish_cancelled(job)
                    return
            self._finish_failed(job, f"{type(exc).__name__}: {exc}", _reason(exc))
            return
        metrics.EXPORT_CONCURRENT_RUNNING.dec()
        with self._lock:
            # cancelled as it finished: the file is no longer wanted (suspended as it finished: it is)
            if cancel.is_set() and job.cancel_requested_at is not None:
                self._finish_cancelled(job)
                return
            job.state, job.stage, job.finished_at = "succeeded", None, time.time()
            job.rows_done, job.bytes = rows, size
            if job.rows_total is None:
                job.rows_total = rows
            self._save(job)
            self._release(job)
            self._count(job.format, ok=True)
            self._done.notify_all()
        self._count_request(job.format, "succeeded", job.user)
        metrics.EXPORT_BYTES.labels(format=job.format, status="succeeded").inc(size)
        metrics.EXPORT_LATENCY_MS.labels(format=job.format, size=size_bucket(rows)).observe(
            (time.perf_counter() - t0) * 1000)

    def _finish_failed(self, job: ExportJob, error: str, reason: str) -> None:
        with self._lock:
            job.state, job.finished_at, job.error, job.reason = "failed", time.time(), error, reason
            self._save(job)
            self._release(job)
            self._count(job.format, ok=False)
            self._done.notify_all()
        self._count_request(job.format, "failed", job.user)
        metrics.EXPORT_FAIL.labels(reason=reason, format=job.format).inc()
        metrics.EXPORT_BYTES.labels(format=job.format, status="failed").inc(job.bytes)

    def _finish_cancelled(self, job: ExportJob) -> None:
        # Counted as export_requests{status="cancelled"}, not in export_fail or the success rate:
        # a user changing their mind is no failure, and must not page anyone (rules/export.yml).
        with self._lock:
            for leftover in self._dir(job.id).iterdir():  # a partial or just-finished file
                if leftover.name != "job.json" and not leftover.name.startswith(".job-"):
                    leftover.unlink(missing_ok=True)
            job.state, job.finished_at, job.reason, job.error = "cancelled", time.time(), "cancelled", None
            if job.cancel_requested_at is None:
                job.cancel_requested_at = job.finished_at
            self._save(job)
            self._release(job)
            self._done.notify_all()
        self._count_request(job.format, "cancelled", job.user)

    def _set_aside(self, job: ExportJob) -> None:
        """Back to ``queued`` after :meth:`suspend` stopped it (lock held); the next start resumes it."""
        job.state, job.stage = "queued", "stopped with its process; resumes at the next start"
        job.attempts = max(0, job.attempts - 1)  # a clean stop is no failed attempt: MAX_ATTEMPTS counts crashes
        job.started_at, job.rows_done, job.bytes = None, 0, 0
        self._save(job)
        self._cancels.pop(job.id, None)  # a cancel request left meanwhile stays, for the next start
        self._done.notify_all()

    def _count(self, fmt: str, ok: bool) -> None:
        tally = self._outcomes.setdefault(fmt, [0, 0])
        tally[0 if ok else 1] += 1
        metrics.EXPORT_SUCCESS_RATE.labels(format=fmt).set(tally[0] / (tally[0] + tally[1]))


class RemoteExportManager(ExportManager):
    """The exports of a directory run by the export worker process, as the web process sees them.

    The surface of :class:`ExportManager` (``submit``, ``get``, ``list``, ``file_path``, ``wait``,
    ``cancel``, ``cleanup``, ``closed``, ``close``), running nothing itself:

    - ``submit`` validates exactly as :class:`ExportManager` does (same errors, the same per-user
      limit, counted from the job records on disk), writes the queued record (no owner: the
      worker's to claim) and wakes the worker with ``POST wake_url``, from a thread of its own
      so a slow or restarting worker never holds up the caller. A job queued while the worker
      is down runs once it is back (it picks up queued records at start and every few seconds).
    - ``get``/``list``/``wait``/``file_path`` read the job records, which the worker rewrites as
      a job runs (progress at least every 0.5 s).
    - ``cancel`` of a job the worker runs leaves a :data:`CANCEL_REQUEST` file it acts on within
      0.1 s; one no live process runs (not claimed yet, or its worker is restarting) is cancelled
      here, under the :data:`CLAIM_LOCK` the worker claims jobs under.

    Metrics: this process records ``export_requests_total`` (rejected and throttled requests,
    and each job's outcome once its record shows it finished, counted once by a follower thread);
    the worker records the run-path families (``export.service.OWNED_METRICS``), never this one.

    Example::

        >>> import tempfile
        >>> client = RemoteExportManager(tempfile.mkdtemp(), wake_url=None)
        >>> job = client.submit("alice", "synthetic_trades", "csv", {"rows": 100})
        >>> client.get(job.id, "alice").state           # no worker runs this directory
        'queued'
        >>> client.cancel(job.id, "alice").state
        'cancelled'
        >>> client.close()
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, wake_url: str | None = None,
                 max_per_user: int | None = None):
        super().__init__(root, max_per_user=max_per_user, workers=1, resume=False)
        self.wake_url = wake_url
        self._wake = threading.Event()
        self._seen: dict[str, tuple[int, int]] = {}  # id -> (inode, mtime) of the record last read
        for target, name in ((self._waker, "export-wake"), (self._follow, "export-follow")):
            threading.Thread(target=target, name=name, daemon=True).start()

    # ------------------------------------------------------------------ what submit does differently
    def _active_count(self, user: str) -> int:
        self._refresh()
        return super()._active_count(user)

    def _enqueue(self, job: ExportJob) -> None:
        job.owner = None  # queued for the worker, which claims it by writing its own id here
        self._save(job)

    def _start(self, job: ExportJob) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ reads from the records
    def _reload(self, export_id: str) -> ExportJob:
        with self._lock:
            before = self._jobs.get(export_id)
            job = super()._reload(export_id)
            if before is not None and job is not before and before.state in ACTIVE and job.state not in ACTIVE:
                self._count_request(job.format, job.state, job.user)  # the one place an outcome is counted
                self._done.notify_all()
            return job

    def _refresh_one(self, export_id: str) -> None:
        with self._lock:
            known = self._jobs.get(export_id)
            if known is not None and known.state not in ACTIVE:
                return  # a finished record never changes
            try:
                self._reload(export_id)
            except KeyError:  # unknown here and no record on disk
                pass

    def _refresh(self) -> None:
        """Read the records of unfinished jobs again, and those queued by other processes."""
        with self._lock:
            on_disk = set()
            for path in self.root.glob("*/job.json"):
                export_id = path.parent.name
                if _ID.fullmatch(export_id):
                    on_disk.add(export_id)
                    self._refresh_one(export_id)
            for gone in [i for i in self._jobs if i not in on_disk]:
                del self._jobs[gone]  # removed by a cleanup in another process

    def get(self, export_id: str, user: str | None) -> ExportJob:
        self._refresh_one(check_id(export_id))
        return super().get(export_id, user)

    def list(self, user: str | None = None) -> list[ExportJob]:
        self._refresh()
        return super().list(user)

    def cleanup(self, max_age_s: float | None = None, now: float | None = None) -> list[str]:
        self._refresh()
        return super().cleanup(max_age_s, now)

    def close(self, wait: bool = True) -> None:
        super().close(wait)
        self._wake.set()  # the wake thread sees the manager closing and ends

    # ------------------------------------------------------------------ threads
    def _waker(self) -> None:
        while True:
            self._wake.wait()
            if self._closing.is_set():
                return
            self._wake.clear()  # wakes asked meanwhile are served by this one request
            if self.wake_url:
                req = urllib.request.Request(self.wake_url, data=b"", method="POST")
                try:
                    urllib.request.urlopen(req, timeout=2.0).close()
                except OSError as exc:  # the worker is restarting: it picks the job up at its start
                    log.debug("export worker not woken (%s): %s", self.wake_url, exc)

    def _follow(self) -> None:
        """Notice unfinished jobs finishing (their records rewritten), so each outcome is counted and waits end."""
        while not self._closing.wait(_FOLLOW_EVERY_S):
            with self._lock:
                active = [i for i, j in self._jobs.items() if j.state in ACTIVE]
                for export_id in active:
                    try:
                        st = os.stat(self.root / export_id / "job.json")
                    except OSError:
                        continue
                    if self._seen.get(export_id) != (st.st_ino, st.st_mtime_ns):
                        self._seen[export_id] = (st.st_ino, st.st_mtime_ns)
                        self._reload(export_id)
                for export_id in [i for i in self._seen if i not in self._jobs or self._jobs[i].state not in ACTIVE]:
                    del self._seen[export_id]


__all__ = ["ExportJob", "ExportManager", "RemoteExportManager", "FORMATS", "PDF_REPORTS", "STATES", "size_bucket",
           "check_id", "ExportError"]

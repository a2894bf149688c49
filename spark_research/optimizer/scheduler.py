"""Scheduling in front of Dask: priority classes, fair sharing, backpressure, cancellation.

Jobs are lists of steps (a function and its arguments). Steps wait in a bounded queue and a
dispatcher thread hands them to Dask one at a time, never holding more than
``max_inflight_per_worker x workers`` submitted-and-unfinished steps (backpressure: Dask's
own queue stays short, so a new high-priority or new-user step overtakes promptly).

Which step goes next:

1. **Priority classes** are strict: a ``high`` step is always dispatched before any
   ``normal`` step, ``normal`` before ``low``.
2. **Fairness between users** inside a class is **deficit round robin** (Shreedhar and
   Varghese, 1996): users take turns; on each visit a user's deficit grows by a quantum
   (the largest head-of-line step cost among the active users, times the user's weight)
   and the user may dispatch steps while the deficit covers their cost (combinations x bars).
   So every user gets an equal share of *work* whatever the number or size of their jobs:
   a user with 100 queued jobs cannot starve a user with one.
3. Within one user, jobs are served first come, first served.

The queue is bounded (``max_queued_steps``): :meth:`Scheduler.submit` raises
:class:`QueueFull` or, with ``block=True``, waits for room (up to ``timeout``).
:meth:`Scheduler.cancel` drops a job's pending steps, cancels its running futures and marks
it CANCELLED at once. A step that raises fails its job (other jobs go on); a worker that
dies mid-step is Dask's business: the scheduler re-runs the step on another worker.

Example::

    >>> sched = Scheduler(client, max_inflight_per_worker=2)    # doctest: +SKIP
    >>> job = sched.submit([(pow, (2, 10), {}, 1.0)], user="ana")  # doctest: +SKIP
    >>> job.result(timeout=10)                                    # doctest: +SKIP
    [1024]
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from spark_research import metrics
from spark_research.optimizer.spec import PRIORITIES


class QueueFull(RuntimeError):
    """The step queue has no room for the job (``max_queued_steps`` reached)."""


class JobFailed(RuntimeError):
    """A step of the job raised; the message carries the step's error."""


class JobCancelled(RuntimeError):
    """The job was cancelled before it finished."""


class JobStatus(str, Enum):
    """Lifecycle of a job: QUEUED -> RUNNING -> COMPLETED | FAILED | CANCELLED."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


StepSpec = tuple[Callable[..., Any], tuple, dict, float]


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Run ``fn`` on the worker and return ``(result, milliseconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t0) * 1e3


@dataclass(eq=False)
class _Step:
    job: "Job"
    index: int
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    cost: float
    enqueued: float = 0.0
    submitted: float | None = None


@dataclass(eq=False)
class Job:
    """A submitted job: status, progress and (when done) the step results in order."""

    id: str
    user: str
    priority: str
    n_steps: int
    status: JobStatus = JobStatus.QUEUED
    error: str | None = None
    steps_done: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    results: list[Any] = field(default_factory=list, repr=False)
    step_ms: list[float] = field(default_factory=list, repr=False)
    queue_wait_ms: list[float] = field(default_factory=list, repr=False)
    _pending: deque = field(default_factory=deque, repr=False)
    _futures: dict = field(default_factory=dict, repr=False)
    _done_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _callbacks: list = field(default_factory=list, repr=False)

    @property
    def progress(self) -> float:
        """Share of steps done, 0..1."""
        return self.steps_done / self.n_steps if self.n_steps else 1.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first step finishes)."""
        if self.status.final:
            return 0.0
        if not self.steps_done or self.started is None:
            return None
        elapsed = time.time() - self.started
        return elapsed / self.steps_done * (self.n_steps - self.steps_done)

    def info(self) -> dict[str, Any]:
        """Status as a JSON-ready dict (id, user, priority, status, steps, ETA, error, times)."""
        return {"id": self.id, "user": self.user, "priority": self.priority, "status": self.status.value,
                "steps_done": self.steps_done, "steps_total": self.n_steps, "progress": round(self.progress, 6),
                "eta_s": self.eta_s, "error": self.error, "created": self.created, "started": self.started,
                "finished": self.finished}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is final; False on timeout."""
        return self._done_event.wait(timeout)

    def result(self, timeout: float | None = None) -> list[Any]:
        """Step results in step order; raises :class:`JobFailed`, :class:`JobCancelled` or ``TimeoutError``."""
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.id} not finished within {timeout}s ({self.steps_done}/{self.n_steps} steps)")
        if self.status is JobStatus.FAILED:
            raise JobFailed(f"job {self.id} failed: {self.error}")
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        return list(self.results)

    def add_done_callback(self, fn: Callable[["Job"], None]) -> None:
        """Call ``fn(job)`` once the job is final (immediately if it already is)."""
        if self._done_event.is_set():
            fn(self)
        else:
            self._callbacks.append(fn)


class Scheduler:
    """Priority + fair-share + backpressure queue feeding a ``distributed.Client``.

    ``max_inflight_per_worker``: steps submitted to Dask and unfinished, per worker.
    ``max_queued_steps``: bound of the waiting queue (all jobs together).
    ``weights``: optional ``{user: weight}`` for the deficit round robin (default 1).
    """

    def __init__(self, client, *, max_inflight_per_worker: int = 2, max_queued_steps: int = 100_000,
                 weights: dict[str, float] | None = None):
        if max_inflight_per_worker < 1:
            raise ValueError(f"max_inflight_per_worker must be >= 1, got {max_inflight_per_worker!r}")
        if max_queued_steps < 1:
            raise ValueError(f"max_queued_steps must be >= 1, got {max_queued_steps!r}")
        self.client = client
        self.max_inflight_per_worker = max_inflight_per_worker
        self.max_queued_steps = max_queued_steps
        self.weights = dict(weights or {})
        self._cond = threading.Condition()
        # per priority: round-robin order of users with pending steps, and their job FIFOs
        self._users: dict[str, deque[str]] = {p: deque() for p in PRIORITIES}
        self._user_jobs: dict[str, dict[str, deque[Job]]] = {p: {} for p in PRIORITIES}
        self._deficit: dict[str, dict[str, float]] = {p: {} for p in PRIORITIES}
        self._jobs: dict[str, Job] = {}
        self._pending = 0
        self.inflight = 0
        self.max_inflight_seen = 0
        self.dispatch_log: deque[tuple[float, str, int]] = deque(maxlen=100_000)  #: (time, job id, step)
        self._by_key: dict[str, _Step] = {}
        self._workers = 1
        self._workers_checked = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch_loop, name="optimizer-dispatch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def capacity(self) -> int:
        """Steps that may be in flight right now (per-worker bound x workers)."""
        return self.max_inflight_per_worker * self._workers

    def worker_count(self) -> int:
        """Workers of the cluster now (re-read from the scheduler at most every 0.25 s)."""
        with self._cond:
            self._refresh_workers()
            return self._workers

    @property
    def queue_depth(self) -> int:
        """Steps waiting to be dispatched."""
        return self._pending

    def submit(self, steps: list[StepSpec], *, user: str = "default", priority: str = "normal",
               block: bool = False, timeout: float | None = None, job_id: str | None = None) -> Job:
        """Queue a job of ``steps`` (``(fn, args, kwargs, cost)`` each) and return its :class:`Job`.

        Raises :class:`QueueFull` when the queue cannot take every step (at once, or within
        ``timeout`` with ``block=True``); ``ValueError`` for an unknown ``priority``.
        """
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        if not steps:
            raise ValueError("a job needs at least one step, got 0")
        n = len(steps)
        if n > self.max_queued_steps:
            raise QueueFull(f"job needs {n} steps but the queue holds at most max_queued_steps={self.max_queued_steps}")
        job = Job(id=job_id or uuid.uuid4().hex[:12], user=user, priority=priority, n_steps=n)
        job.results = [None] * n
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if job.id in self._jobs:
                raise ValueError(f"job id {job.id!r} already exists")
            while self._pending + n > self.max_queued_steps:
                if not block:
                    raise QueueFull(f"queue full: {self._pending} of max_queued_steps={self.max_queued_steps} "
                                    f"steps waiting, job needs {n}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise QueueFull(f"queue still full after waiting {timeout}s: {self._pending} of "
                                    f"max_queued_steps={self.max_queued_steps} steps waiting, job needs {n}")
                self._cond.wait(left if left is not None else 1.0)
            now = time.monotonic()
            for i, (fn, args, kwargs, cost) in enumerate(steps):
                job._pending.append(_Step(job, i, fn, tuple(args), dict(kwargs), float(cost), enqueued=now))
            self._jobs[job.id] = job
            jobs = self._user_jobs[priority].setdefault(user, deque())
            jobs.append(job)
            if user not in self._users[priority]:
                self._users[priority].append(user)
                self._deficit[priority][user] = 0.0
            self._pending += n
            metrics.OPTIMIZER_QUEUE_DEPTH.set(self._pending)
            metrics.OPTIMIZER_JOBS.labels(status="submitted").inc()
            self._cond.notify_all()
        return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a job: drop its pending steps, cancel its running futures. False if already final."""
        with self._cond:
            job = self._get(job_id)
            if job.status.final:
                return False
            futures = self._finish(job, JobStatus.CANCELLED)
        if futures:
            self.client.cancel(futures, force=True)
        self._fire_callbacks(job)
        return True

    def job(self, job_id: str) -> Job:
        """The :class:`Job` with ``job_id`` (``KeyError`` naming it if unknown)."""
        with self._cond:
            return self._get(job_id)

    def jobs(self) -> list[Job]:
        """Every job this scheduler has seen, oldest first."""
        with self._cond:
            return list(self._jobs.values())

    def close(self) -> None:
        """Stop dispatching (running futures are left to the client)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ internals
    def _get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job id {job_id!r}") from None

    def _refresh_workers(self) -> None:
        now = time.monotonic()
        if now - self._workers_checked < 0.25:
            return
        self._workers_checked = now
        try:
            n = len(self.client.scheduler_info()["workers"])
        except Exception:  # scheduler momentarily unreachable: keep the last count
            return
        self._workers = max(1, n)
        metrics.OPTIMIZER_WORKERS_RUNNING.set(n)

    def _pick(self) -> _Step | None:
        """Next step by strict priority, then deficit round robin between users."""
        for prio in PRIORITIES:
            users = self._users[prio]
            if not users:
                continue
            deficit, user_jobs = self._deficit[prio], self._user_jobs[prio]
            quantum = max(user_jobs[u][0]._pending[0].cost for u in users)
            for _ in range(2 * len(users) + 1):
                user = users[0]
                head = user_jobs[user][0]._pending[0]
                if deficit[user] >= head.cost:
                    deficit[user] -= head.cost
                    return self._take(prio, user)
                users.rotate(-1)  # next user's turn: it earns a quantum
                nxt = users[0]
                deficit[nxt] += quantum * self.weights.get(nxt, 1.0)
            # unreachable with positive weights; serve the head user rather than spin
            return self._take(prio, users[0])
        return None

    def _take(self, prio: str, user: str) -> _Step:
        jobs = self._user_jobs[prio][user]
        job = jobs[0]
        step = job._pending.popleft()
        if not job._pending:
            jobs.popleft()
        if not jobs:
            self._drop_user(prio, user)
        self._pending -= 1
        return step

    def _drop_user(self, prio: str, user: str) -> None:
        self._user_jobs[prio].pop(user, None)
        self._deficit[prio].pop(user, None)
        try:
            self._users[prio].remove(user)
        except ValueError:
            pass

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    self._refresh_workers()
                    if self._pending and self.inflight < self.capacity:
                        break
                    self._cond.wait(0.25)
                step = self._pick()
                if step is None:
                    continue
                job = step.job
                now = time.monotonic()
                step.submitted = now
                wait_ms = (now - step.enqueued) * 1e3
                job.queue_wait_ms.append(wait_ms)
                metrics.OPTIMIZER_QUEUE_WAIT_MS.observe(wait_ms)
                metrics.OPTIMIZER_QUEUE_DEPTH.set(self._pending)
                if job.status is JobStatus.QUEUED:
                    job.status, job.started = JobStatus.RUNNING, time.time()
                self.inflight += 1
                self.max_inflight_seen = max(self.max_inflight_seen, self.inflight)
                metrics.OPTIMIZER_STEPS_INFLIGHT.set(self.inflight)
                key = f"sweep-step-{job.id}-{step.index}-{uuid.uuid4().hex[:8]}"
                self._by_key[key] = step
                self.dispatch_log.append((time.time(), job.id, step.index))
            try:
                fut = self.client.submit(_timed, step.fn, *step.args, key=key, pure=False, **step.kwargs)
            except Exception as exc:  # e.g. client closed: fail this job, keep the loop alive
                with self._cond:
                    self._by_key.pop(key, None)
                    self.inflight -= 1
                    futures = [] if job.status.final else self._finish(job, JobStatus.FAILED, f"submit failed: {exc!r}")
                    self._cond.notify_all()
                if futures:
                    self.client.cancel(futures, force=True)
                self._fire_callbacks(job)
                continue
            with self._cond:
                live = not job.status.final
                if live:
                    job._futures[step.index] = fut
            if not live:
                fut.cancel()
            fut.add_done_callback(self._on_done)

    def _on_done(self, fut) -> None:
        with self._cond:
            step = self._by_key.pop(fut.key, None)
        if step is None:
            return
        job = step.job
        state, result, error = fut.status, None, None
        if state == "finished":
            try:
                result, ms = fut.result()
                metrics.OPTIMIZER_STEP_LATENCY_MS.observe(ms)
            except Exception as exc:  # result lost between status and fetch
                state, error = "error", exc
        elif state == "error":
            error = fut.exception()
        cancel_these: list = []
        with self._cond:
            self.inflight -= 1
            metrics.OPTIMIZER_STEPS_INFLIGHT.set(self.inflight)
            job._futures.pop(step.index, None)
            final_now = False
            if not job.status.final:
                if state == "finished":
                    job.results[step.index] = result
                    job.step_ms.append(ms)
                    job.steps_done += 1
                    if job.steps_done == job.n_steps:
                        self._finish(job, JobStatus.COMPLETED)
                        final_now = True
                elif state == "error":
                    msg = f"step {step.index}: {type(error).__name__}: {error}"
                    cancel_these = self._finish(job, JobStatus.FAILED, msg)
                    final_now = True
            self._cond.notify_all()
        if cancel_these:
            self.client.cancel(cancel_these, force=True)
        if final_now:
            self._fire_callbacks(job)

    def _finish(self, job: Job, status: JobStatus, error: str | None = None) -> list:
        """Mark ``job`` final (lock held); returns the futures still to cancel."""
        dropped = len(job._pending)
        job._pending.clear()
        queue = self._user_jobs[job.priority].get(job.user)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                self._drop_user(job.priority, job.user)
        self._pending -= dropped
        metrics.OPTIMIZER_QUEUE_DEPTH.set(self._pending)
        job.status, job.error, job.finished = status, error, time.time()
        metrics.OPTIMIZER_JOBS.labels(status=status.value).inc()
        futures = list(job._futures.values())
        job._futures.clear()
        job._done_event.set()
        self._cond.notify_all()
        return futures

    def _fire_callbacks(self, job: Job) -> None:
        callbacks, job._callbacks = job._callbacks, []
        for fn in callbacks:
            fn(job)



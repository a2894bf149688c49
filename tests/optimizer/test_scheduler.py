"""Scheduling in front of Dask: priority, fairness, backpressure, bounded queue, cancellation, failures."""
from __future__ import annotations

import sys
import threading
import time

import cloudpickle
import pytest

from spark_research import metrics
from spark_research.optimizer.scheduler import JobCancelled, JobFailed, JobStatus, QueueFull, Scheduler

# task functions defined here travel to the workers by value (the workers cannot import tests/)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def nap(seconds: float, tag: object = None) -> object:
    time.sleep(seconds)
    return tag


def explode(message: str) -> None:
    raise ValueError(message)


def steps(n: int, seconds: float, tag: str = "") -> list:
    return [(nap, (seconds, f"{tag}{i}"), {}, 1.0) for i in range(n)]


@pytest.fixture
def sched(dask_client):
    s = Scheduler(dask_client, max_inflight_per_worker=1)
    yield s
    for job in s.jobs():
        s.cancel(job.id)
    s.close()


def _order(s: Scheduler, job_ids: set[str]) -> list[str]:
    return [jid for _, jid, _ in s.dispatch_log if jid in job_ids]


def test_job_runs_and_returns_step_results_in_order(sched):
    job = sched.submit(steps(5, 0.01, "s"), user="ana")
    assert job.result(timeout=30) == [f"s{i}" for i in range(5)]
    assert job.status is JobStatus.COMPLETED and job.steps_done == 5 and job.progress == 1.0
    assert job.info()["eta_s"] == 0.0


def test_high_priority_dispatched_before_normal_before_low(sched):
    blocker = sched.submit(steps(2, 0.6, "b"), user="x")  # fills both workers
    deadline = time.monotonic() + 10
    while sched.inflight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    low = sched.submit(steps(3, 0.02), user="l", priority="low")
    normal = sched.submit(steps(3, 0.02), user="n", priority="normal")
    high = sched.submit(steps(3, 0.02), user="h", priority="high")
    for job in (blocker, low, normal, high):
        job.result(timeout=30)
    order = _order(sched, {low.id, normal.id, high.id})
    assert order == [high.id] * 3 + [normal.id] * 3 + [low.id] * 3


def test_fairness_single_job_of_user_b_starts_before_user_a_backlog_finishes(sched):
    a_jobs = [sched.submit(steps(2, 0.03), user="A") for _ in range(50)]
    time.sleep(0.2)  # A's backlog is being worked off
    b_job = sched.submit(steps(2, 0.03), user="B")
    b_job.result(timeout=60)
    dispatched = [jid for _, jid, _ in sched.dispatch_log]
    first_b = dispatched.index(b_job.id)
    a_ids = {j.id for j in a_jobs}
    a_before_b = sum(1 for jid in dispatched[:first_b] if jid in a_ids)
    # B's first step went out right after its submission, not behind A's 100-step backlog
    assert a_before_b < 30, f"B waited behind {a_before_b} of A's steps"
    assert sum(not j.status.final for j in a_jobs) > 10, "A's backlog was nearly gone: B got no real test"
    # while both had work, steps alternated between A and B (deficit round robin)
    window = dispatched[first_b - 1:first_b + 3]
    assert window.count(b_job.id) == 2 and sum(1 for j in window if j in a_ids) == 2, window
    for j in a_jobs:
        j.result(timeout=60)
    assert b_job.finished < max(j.finished for j in a_jobs)


def test_backpressure_bound_never_exceeded(dask_client):
    s = Scheduler(dask_client, max_inflight_per_worker=2)
    try:
        jobs = [s.submit(steps(20, 0.02), user=u) for u in ("a", "b", "c")]
        per_worker_max, stop = [0], threading.Event()

        def watch():  # Dask's own view: tasks processing per worker
            while not stop.is_set():
                proc = dask_client.processing()
                per_worker_max[0] = max([per_worker_max[0], *map(len, proc.values())])
                time.sleep(0.01)

        t = threading.Thread(target=watch)
        t.start()
        for j in jobs:
            j.result(timeout=60)
        stop.set()
        t.join()
        assert s.capacity == 4
        assert s.max_inflight_seen == 4, "the bound was never reached: the test proved nothing"
        assert per_worker_max[0] <= 2
        assert s.inflight == 0 and s.queue_depth == 0
    finally:
        s.close()


def test_queue_full_raises_or_waits_by_callers_choice(dask_client):
    s = Scheduler(dask_client, max_inflight_per_worker=1, max_queued_steps=5)
    try:
        s.submit(steps(2, 0.5), user="x")
        deadline = time.monotonic() + 10
        while s.queue_depth and time.monotonic() < deadline:  # both dispatched, queue empty
            time.sleep(0.01)
        first = s.submit(steps(4, 0.05), user="a")
        with pytest.raises(QueueFull, match="max_queued_steps=5"):
            s.submit(steps(3, 0.05), user="b")
        with pytest.raises(QueueFull, match="after waiting 0.2s"):
            s.submit(steps(3, 0.05), user="b", block=True, timeout=0.2)
        late = s.submit(steps(3, 0.05), user="b", block=True, timeout=30)  # room frees as steps dispatch
        assert late.result(timeout=30) and first.result(timeout=30)
        with pytest.raises(QueueFull, match="needs 6 steps"):
            s.submit(steps(6, 0.0), user="c", block=True)
        with pytest.raises(ValueError, match="'urgent'"):
            s.submit(steps(1, 0.0), priority="urgent")
    finally:
        s.close()


def test_cancel_marks_cancelled_within_1s_and_cancels_running_futures(sched, dask_client):
    cancelled_before = metrics.OPTIMIZER_JOBS.labels(status="cancelled")._value.get()
    job = sched.submit(steps(40, 0.3), user="ana")
    deadline = time.monotonic() + 15
    while job.steps_done < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    running = list(job._futures.values())
    assert running, "no step was running when cancelling"
    t0 = time.monotonic()
    assert sched.cancel(job.id)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - t0 < 1.0
    cancelled_at = time.time()
    while any(f.status != "cancelled" for f in running) and time.monotonic() - t0 < 1.0:
        time.sleep(0.01)
    assert [f.status for f in running] == ["cancelled"] * len(running)
    assert job.steps_done < 40 and sched.queue_depth == 0
    with pytest.raises(JobCancelled):
        job.result(timeout=1)
    after = sched.submit(steps(2, 0.01), user="bob")
    assert after.result(timeout=10) == ["0", "1"]
    assert not [1 for ts, jid, _ in sched.dispatch_log if jid == job.id and ts > cancelled_at]
    assert metrics.OPTIMIZER_JOBS.labels(status="cancelled")._value.get() == cancelled_before + 1
    assert not sched.cancel(job.id)


def test_failing_step_fails_its_job_only(sched):
    good = sched.submit(steps(6, 0.05, "g"), user="ana")
    bad = sched.submit([(nap, (0.01,), {}, 1.0), (explode, ("bad parameter fast=0",), {}, 1.0)] + steps(10, 0.05),
                       user="bob")
    with pytest.raises(JobFailed, match="bad parameter fast=0"):
        bad.result(timeout=30)
    assert bad.status is JobStatus.FAILED and "ValueError" in bad.error
    assert good.result(timeout=30) == [f"g{i}" for i in range(6)]
    assert good.status is JobStatus.COMPLETED


def test_unknown_job_id_is_named(sched):
    with pytest.raises(KeyError, match="'nope'"):
        sched.cancel("nope")


def _sample(name: str, labels: dict | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_metrics_count_jobs_steps_and_waits(sched):
    before = {k: _sample(k) for k in ("optimizer_queue_wait_ms_count", "optimizer_step_latency_ms_count")}
    submitted = _sample("optimizer_jobs_total", {"status": "submitted"})
    completed = _sample("optimizer_jobs_total", {"status": "completed"})
    failed = _sample("optimizer_jobs_total", {"status": "failed"})
    sched.submit(steps(3, 0.01), user="m").result(timeout=30)
    with pytest.raises(JobFailed):
        sched.submit([(explode, ("boom",), {}, 1.0)], user="m").result(timeout=30)
    assert _sample("optimizer_queue_wait_ms_count") == before["optimizer_queue_wait_ms_count"] + 4
    assert _sample("optimizer_step_latency_ms_count") == before["optimizer_step_latency_ms_count"] + 3
    assert _sample("optimizer_jobs_total", {"status": "submitted"}) == submitted + 2
    assert _sample("optimizer_jobs_total", {"status": "completed"}) == completed + 1
    assert _sample("optimizer_jobs_total", {"status": "failed"}) == failed + 1
    assert _sample("optimizer_workers_running") == 2
    assert _sample("optimizer_queue_depth") == 0 and _sample("optimizer_steps_inflight") == 0

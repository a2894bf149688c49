"""The export worker as a supervised process of its own, and the web side's client of it.

A real ``python -m spark_research.export.service`` under :class:`Supervised` (as ``spark serve``
runs it) owns the export directory; the test process plays the web server with a
:class:`RemoteExportManager`. The worker's directory poll is set to a minute, so a job runs
within a test only through a wake-up or the worker's start.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pyarrow.csv as pacsv
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spark_research import metrics
from spark_research.export.errors import ConcurrencyLimitError, ExportParamError
from spark_research.export.jobs import ExportJob, RemoteExportManager
from spark_research.export.service import OWNED_METRICS, ExportService
from spark_research.platform.supervisor import Supervised
from tests.conftest import free_port

BIG_CSV = 2_000_000  # rows: seconds of writing, so a kill lands while it runs
ENDLESS_CSV = 50_000_000  # always cancelled long before its end


class Worker:
    """The export worker process under a supervisor; stoppable and startable again on the same port."""

    def __init__(self, tmp: Path, root: Path):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_file, self.log = tmp / "run" / "exports.json", tmp / "exports.log"
        self.sup: Supervised | None = None

    def start(self) -> "Worker":
        argv = [sys.executable, "-m", "spark_research.export.service", "--root", str(self.root),
                "--port", str(self.port), "--state-file", str(self.state_file), "--poll", "60"]
        self.sup = Supervised("exports", argv, state_file=self.state_file, log_file=self.log, ready_timeout=60).start()
        return self

    def stop(self) -> None:
        self.sup.stop()  # SIGTERM

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read()

    def samples(self) -> dict[tuple, float]:
        return samples(self.get("/metrics").decode())


def samples(text: str, prefixes: tuple[str, ...] = ("export_",)) -> dict[tuple, float]:
    """``{(sample name, sorted labels): value}`` of the export samples of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name.startswith(prefixes)}


def requests_counted(status: str, user: str) -> float:
    return metrics.EXPORT_REQUESTS.labels(format="csv", status=status, user=user)._value.get()


class Tally:
    """This process's ``export_requests_total{format="csv"}`` of one user, counted from its creation on."""

    def __init__(self, user: str):
        self.user = user
        self.base = {status: requests_counted(status, user) for status in ("succeeded", "failed", "cancelled")}

    def __call__(self, status: str) -> float:
        return requests_counted(status, self.user) - self.base[status]


def record(root: Path, export_id: str) -> dict:
    return orjson.loads((root / export_id / "job.json").read_bytes())


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def running_in(worker: Worker, root: Path, export_id: str) -> dict:
    """The job's record once the worker runs it and has written part of its file."""
    def check():
        rec = record(root, export_id)
        partial = any(p.name.startswith(".tmp-") for p in (root / export_id).iterdir())
        return rec if rec["state"] == "running" and rec["rows_done"] > 0 and partial else None

    rec = wait_until(check, 60, f"export {export_id} running in the worker")
    assert int(rec["owner"].split()[0]) == worker.sup.pid
    return rec


class FileWatch:
    """Looks at a job's directory every few ms: every size its final file was ever seen with."""

    def __init__(self, path: Path):
        self.path, self.sizes = path, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.wait(0.005) and time.monotonic() < deadline:
            try:
                self.sizes.add(self.path.stat().st_size)
            except FileNotFoundError:
                pass

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join(5)
        return self.sizes


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(worker, client): the worker process over ``<tmp>/exports`` and the web side's manager on it."""
    tmp = tmp_path_factory.mktemp("export-service")
    root = tmp / "exports"
    worker = Worker(tmp, root).start()
    client = RemoteExportManager(root, wake_url=worker.url + "/wake", max_per_user=2)
    try:
        yield worker, client
    finally:
        client.close()
        worker.sup.stop()
        print(worker.log.read_text(errors="replace")[-3000:])


def check_complete_csv(path: Path, rows: int) -> None:
    """Every id 1..rows exactly once, in order: nothing lost, nothing written twice."""
    ids = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=["id"]))["id"].to_numpy()
    assert len(ids) == rows
    assert np.array_equal(ids, np.arange(1, rows + 1))


# ------------------------------------------------------------------------------------------
def test_jobs_queued_by_the_client_run_once_in_the_worker_process(served):
    worker, client = served
    before, counted = worker.samples(), Tally("svc-alice")
    jobs = [client.submit("svc-alice", "synthetic_trades", "csv", {"rows": 3_000, "seed": s}) for s in (1, 2)]
    assert all(j.state == "queued" for j in jobs)
    done = [client.wait(j.id, "svc-alice", timeout=60) for j in jobs]
    assert [(j.state, j.rows_done, j.attempts) for j in done] == [("succeeded", 3_000, 1)] * 2
    assert {int(record(client.root, j.id)["owner"].split()[0]) for j in jobs} == {worker.sup.pid}
    for job in done:
        check_complete_csv(client.file_path(job.id, "svc-alice"), 3_000)
    after = worker.samples()
    latency = ("export_latency_ms_count", (("format", "csv"), ("size", "10k")))
    assert after[latency] - before.get(latency, 0) == 2
    # the web side counts each outcome once, from the records; the worker counts no requests
    wait_until(lambda: counted("succeeded") == 2, 5, "both outcomes counted by the client")
    assert not any(name.startswith("export_requests") for name, _ in after)
    health = json.loads(worker.get("/health"))
    assert health["pid"] == worker.sup.pid and health["running"] == health["queued"] == 0


def test_a_worker_killed_mid_export_is_restarted_and_the_export_completes_exactly_once(served):
    worker, client = served
    counted = Tally("svc-kill9")
    job = client.submit("svc-kill9", "synthetic_trades", "csv", {"rows": BIG_CSV})
    final = client.root / job.id / job.filename
    watch = FileWatch(final)
    running_in(worker, client.root, job.id)
    old_pid, restarts = worker.sup.pid, worker.sup.restarts
    os.kill(old_pid, signal.SIGKILL)
    time.sleep(0.1)
    killed = record(client.root, job.id)
    assert killed["state"] == "running" and killed["attempts"] == 1 and not final.exists()

    done = client.wait(job.id, "svc-kill9", timeout=120)
    time.sleep(0.05)
    sizes = watch.stop()
    assert worker.sup.restarts == restarts + 1 and worker.sup.pid != old_pid and worker.sup.alive()
    assert (done.state, done.attempts, done.rows_done, done.stage) == ("succeeded", 2, BIG_CSV, None)
    assert sizes == {final.stat().st_size} == {done.bytes}  # never seen partial under its own name
    assert sorted(p.name for p in (client.root / job.id).iterdir()) == sorted(["job.json", job.filename])
    check_complete_csv(final, BIG_CSV)
    # succeeded once: one outcome counted by the client, one latency sample in the restarted worker
    wait_until(lambda: counted("succeeded") == 1, 5, "the outcome counted")
    after = worker.samples()
    assert after[("export_latency_ms_count", (("format", "csv"), ("size", "10m")))] == 1
    assert after[("export_concurrent_running", ())] == 0
    time.sleep(0.5)  # a late second count would show here
    assert counted("succeeded") == 1
    final.unlink()  # hundreds of MB


def test_jobs_stopped_or_queued_while_the_worker_is_down_run_once_it_is_back(served):
    worker, client = served
    dora, erin = Tally("svc-dora"), Tally("svc-erin")
    big = client.submit("svc-dora", "synthetic_trades", "csv", {"rows": BIG_CSV})
    running_in(worker, client.root, big.id)
    worker.stop()  # SIGTERM: the running export stops, resumable
    stopped = record(client.root, big.id)
    assert stopped["state"] == "queued" and stopped["attempts"] == 0 and stopped["rows_done"] == 0
    assert [p.name for p in (client.root / big.id).iterdir()] == ["job.json"]  # partial file removed
    assert client.get(big.id, "svc-dora").state == "queued"

    small = client.submit("svc-erin", "synthetic_trades", "csv", {"rows": 1_000})
    dropped = client.submit("svc-erin", "synthetic_trades", "csv", {"rows": 1_000})
    assert client.cancel(dropped.id, "svc-erin").state == "cancelled"  # nobody runs it: cancelled here
    time.sleep(1.0)
    assert client.get(small.id, "svc-erin").state == "queued"  # no worker: waits
    assert record(client.root, small.id)["owner"] is None  # nobody claimed it

    worker.start()
    assert client.wait(small.id, "svc-erin", timeout=60).state == "succeeded"
    resumed = client.wait(big.id, "svc-dora", timeout=120)
    assert (resumed.state, resumed.attempts, resumed.rows_done) == ("succeeded", 1, BIG_CSV)
    assert client.get(dropped.id, "svc-erin").state == "cancelled"  # not resumed by the new worker
    assert sorted(p.name for p in (client.root / dropped.id).iterdir()) == ["job.json"]
    wait_until(lambda: erin("succeeded") == erin("cancelled") == dora("succeeded") == 1, 5, "each outcome counted")
    time.sleep(0.5)  # a late second count would show here
    assert (erin("succeeded"), erin("cancelled"), dora("succeeded"), dora("cancelled")) == (1, 1, 1, 0)
    (client.root / big.id / resumed.filename).unlink()


def test_the_client_validates_and_limits_from_the_records_and_cancels_what_the_worker_runs(served):
    worker, client = served
    counted = Tally("svc-carol")
    with pytest.raises(ExportParamError) as bad:
        client.submit("svc-carol", "synthetic_trades", "xls", {})
    assert bad.value.field == "format"
    jobs = [client.submit("svc-carol", "synthetic_trades", "csv", {"rows": ENDLESS_CSV}) for _ in range(2)]
    # a client that did not queue them (a restarted web process) counts carol's jobs from their records
    other = RemoteExportManager(client.root, wake_url=worker.url + "/wake", max_per_user=2)
    try:
        with pytest.raises(ConcurrencyLimitError):
            other.submit("svc-carol", "synthetic_trades", "csv", {"rows": 10})
    finally:
        other.close()
    for job in jobs:
        running_in(worker, client.root, job.id)
    t0 = time.perf_counter()
    cancelled = client.cancel(jobs[0].id, "svc-carol", wait=10)
    seconds = time.perf_counter() - t0
    assert cancelled.state == "cancelled" and cancelled.reason == "cancelled" and seconds < 5
    assert 0 < cancelled.rows_done < ENDLESS_CSV
    assert [p.name for p in (client.root / jobs[0].id).iterdir()] == ["job.json"]
    assert client.cancel(jobs[1].id, "svc-carol", wait=10).state == "cancelled"
    assert worker.samples()[("export_concurrent_running", ())] == 0
    wait_until(lambda: counted("cancelled") == 2, 5, "both cancels counted once")
    again = client.submit("svc-carol", "synthetic_trades", "csv", {"rows": 10})  # both slots free again
    assert client.wait(again.id, "svc-carol", timeout=60).state == "succeeded"


def test_the_worker_owns_the_run_metrics_and_the_client_records_none_of_them(served):
    worker, client = served
    counted = Tally("svc-frank")
    own_before = samples(metrics.render()[0].decode(), OWNED_METRICS)
    job = client.submit("svc-frank", "synthetic_trades", "csv", {"rows": 2_000, "fail_after": 100})
    assert client.wait(job.id, "svc-frank", timeout=60).reason == "source_error"
    ok = client.wait(client.submit("svc-frank", "synthetic_trades", "csv", {"rows": 2_000}).id, "svc-frank", timeout=60)
    assert ok.state == "succeeded"
    wait_until(lambda: counted("failed") == 1, 5, "the failure counted by the client")

    text = worker.get("/metrics").decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"export_latency_ms", "export_bytes", "export_concurrent_running", "export_fail",
            "export_success_rate"} <= families
    worker_samples = samples(text)
    assert worker_samples[("export_fail_total", (("format", "csv"), ("reason", "source_error")))] >= 1
    assert worker_samples[("export_fail_total", (("format", "pdf"), ("reason", "interrupted")))] == 0  # primed
    assert 0 < worker_samples[("export_success_rate", (("format", "csv"),))] < 1
    assert samples(metrics.render()[0].decode(), OWNED_METRICS) == own_before  # nothing recorded here

    # what the web server's /metrics serves: its own families but the worker's, those from the worker
    url = worker.url + "/metrics"
    metrics.relay(url, OWNED_METRICS)
    try:
        merged = metrics.merge(metrics.render()[0].decode(), {url: text})
    finally:
        metrics._RELAYS.pop(url, None)
    helps = [line.split()[2] for line in merged.splitlines() if line.startswith("# HELP export_")]
    assert len(helps) == len(set(helps))  # each export family exactly once
    assert {h.removesuffix("_created").removesuffix("_total") for h in helps} == {
        "export_requests", "export_latency_ms", "export_bytes", "export_concurrent_running", "export_fail",
        "export_success_rate"}
    assert {k: v for k, v in samples(merged).items() if k[0].startswith(OWNED_METRICS)} == \
        {k: v for k, v in worker_samples.items() if k[0].startswith(OWNED_METRICS)}
    assert samples(merged)[("export_requests_total", (("format", "csv"), ("status", "failed"), ("user", "svc-frank")))] \
        == requests_counted("failed", "svc-frank")  # the web process's own family, from the web process


@pytest.fixture
def web(served):
    """The export endpoints and /metrics as the web server serves them: handlers on the client, the
    worker's families relayed (a Tornado server on its own thread and event loop)."""
    import asyncio

    from tornado.ioloop import IOLoop

    from spark_research.export.handlers import make_app

    worker, client = served
    port, box, ready = free_port(), {}, threading.Event()

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        box["server"] = make_app(client, tokens={"tok-hank": "svc-hank"}).listen(port, address="127.0.0.1")
        box["loop"] = IOLoop.current()
        ready.set()
        box["loop"].start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    metrics.relay(worker.url + "/metrics", OWNED_METRICS)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        metrics._RELAYS.pop(worker.url + "/metrics", None)
        box["loop"].add_callback(box["server"].stop)
        box["loop"].add_callback(box["loop"].stop)
        thread.join(10)


def http(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Authorization": "Bearer tok-hank"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_http_endpoints_serve_the_workers_exports_and_metrics_from_the_client(web):
    status, body = http("POST", web + "/export/run", {"what": "synthetic_trades", "format": "csv",
                                                      "parameters": {"rows": 1_500}})
    assert status == 202, body
    job = json.loads(body)
    state = wait_until(lambda: json.loads(http("GET", web + job["status_url"])[1])["state"] == "succeeded", 60,
                       "the export succeeded")
    assert state
    status, data = http("GET", web + job["download_url"])
    assert status == 200 and data.count(b"\n") == 1_501
    status, body = http("POST", web + "/export/run", {"what": "synthetic_trades", "format": "xls"})
    assert status == 400 and json.loads(body)["field"] == "format"
    status, body = http("POST", web + job["cancel_url"])
    assert status == 409 and json.loads(body)["state"] == "succeeded"

    status, text = http("GET", web + "/metrics")
    helps = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# HELP export_")]
    assert status == 200 and len(helps) == len(set(helps))
    scraped = samples(text.decode())
    assert scraped[("export_latency_ms_count", (("format", "csv"), ("size", "10k")))] >= 1  # from the worker
    assert scraped[("export_requests_total", (("format", "xls"), ("status", "rejected"), ("user", "svc-hank")))] >= 1


def test_without_wake_ups_the_worker_finds_queued_jobs_by_its_directory_poll(tmp_path):
    service = ExportService(tmp_path / "exports", poll_s=0.2).start()
    client = RemoteExportManager(tmp_path / "exports", wake_url=None)
    try:
        job = client.submit("svc-gina", "synthetic_trades", "csv", {"rows": 500})
        done = client.wait(job.id, "svc-gina", timeout=30)
        assert (done.state, done.rows_done) == ("succeeded", 500)
        assert ExportJob.from_dict(record(client.root, job.id)).owner.split()[0] == str(os.getpid())
    finally:
        client.close()
        service.stop()
    with pytest.raises(ValueError, match="poll_s"):
        ExportService(tmp_path, poll_s=0)

"""Cancelling exports: POST /export/cancel/{id} over HTTP on 127.0.0.1, ``spark export cancel``, restarts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nbformat
import orjson
import psutil
import pytest

from spark_research.export import ExportManager
from spark_research.export._process import terminated
from spark_research.export.jobs import ExportJob
from tests.export.conftest import ROOT

BIG_CSV = {"rows": 50_000_000}  # minutes of writing: it is always cancelled long before the end


def wait_until(check, timeout: float, what: str):
    """Poll ``check()`` every 20 ms until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def cancel(srv, export_id: str, token: str = "tok-alice") -> tuple[int, dict, float]:
    t0 = time.perf_counter()
    status, _, body = srv.request("POST", f"/export/cancel/{export_id}", token)
    return status, json.loads(body), time.perf_counter() - t0


def files_of(srv, export_id: str) -> list[str]:
    return sorted(p.name for p in (srv.var / "exports" / export_id).iterdir() if not p.name.startswith(".job-"))


def spark(*args: str, var) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spark_research.cli", "export", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "SPARK_VAR": str(var)})


def running_csv(srv, token: str = "tok-alice") -> dict:
    """A big CSV export that has written its first batch (a partial file exists)."""
    job = srv.run("synthetic_trades", "csv", BIG_CSV, token=token)
    wait_until(lambda: srv.status(job["id"], token)["rows_done"] > 0 and any(
        n.startswith(".tmp-") for n in files_of(srv, job["id"])), 60, "the export writing its partial file")
    return job


# ---------------------------------------------------------------------------------------- CSV
def test_a_running_csv_export_stops_between_batches_and_removes_its_partial_file(export_server):
    srv = export_server()
    job = running_csv(srv)
    status, body, seconds = cancel(srv, job["id"])
    print(f"CSV cancel answered in {seconds * 1000:.0f} ms after {body['rows_done']} rows")
    assert status == 200, body
    assert body["state"] == "cancelled" and body["reason"] == "cancelled" and body["error"] is None
    assert 0 < body["rows_done"] < BIG_CSV["rows"] and body["cancel_requested_at"] <= body["finished_at"]
    assert seconds < 2.0
    assert files_of(srv, job["id"]) == ["job.json"]  # partial file removed, no export file
    assert srv.status(job["id"])["state"] == "cancelled"
    status, _, raw = srv.request("GET", job["download_url"])
    assert status == 409 and "cancelled" in json.loads(raw)["error"]
    assert srv.metric("export_requests_total", format="csv", status="cancelled", user="alice") == 1
    assert srv.metric("export_concurrent_running") == 0


def test_a_queued_export_is_cancelled_without_starting_and_frees_its_slot(export_server):
    srv = export_server(max_per_user=3)  # the server runs 2 exports at once: the third one waits
    running = [running_csv(srv) for _ in range(2)]
    queued = srv.run("synthetic_trades", "csv", {"rows": 1_000})
    assert srv.status(queued["id"])["state"] == "queued"
    assert srv.request("POST", "/export/run", body={"what": "synthetic_trades", "format": "csv"})[0] == 429
    status, body, seconds = cancel(srv, queued["id"])
    assert status == 200 and body["state"] == "cancelled"
    assert body["started_at"] is None and body["attempts"] == 0 and body["rows_done"] == 0
    assert files_of(srv, queued["id"]) == ["job.json"]
    again = srv.run("synthetic_trades", "csv", {"rows": 1_000})  # its slot is free at once
    for job in running:
        assert cancel(srv, job["id"])[1]["state"] == "cancelled"
    assert srv.wait(again["id"])["state"] == "succeeded"  # the workers are free: it would have run by now
    final = srv.status(queued["id"])
    assert final["state"] == "cancelled" and final["started_at"] is None and final["attempts"] == 0
    assert srv.metric("export_requests_total", format="csv", status="cancelled", user="alice") == 3


def test_cancelled_is_persisted_and_not_resumed_after_a_restart(export_server):
    srv = export_server()
    job = running_csv(srv)
    assert cancel(srv, job["id"])[1]["state"] == "cancelled"
    record = orjson.loads((srv.var / "exports" / job["id"] / "job.json").read_bytes())
    assert record["state"] == "cancelled"
    srv.kill()
    srv.start()
    st = srv.status(job["id"])
    assert st["state"] == "cancelled" and st["attempts"] == 1 and st["stage"] == "write"
    assert files_of(srv, job["id"]) == ["job.json"]
    assert srv.metric("export_concurrent_running") == 0


# ---------------------------------------------------------------------------------------- errors
def test_cancelling_a_finished_export_is_409_naming_its_state(shared_export_server):
    srv = shared_export_server
    done = srv.run("synthetic_trades", "csv", {"rows": 100})
    assert srv.wait(done["id"])["state"] == "succeeded"
    status, body, _ = cancel(srv, done["id"])
    assert status == 409 and body["field"] == "id" and body["state"] == "succeeded"
    assert f"export '{done['id']}' already succeeded" in body["error"] and "queued or running" in body["error"]
    assert srv.status(done["id"])["state"] == "succeeded"
    job = running_csv(srv)
    assert cancel(srv, job["id"])[0] == 200
    status, body, _ = cancel(srv, job["id"])
    assert status == 409 and "already cancelled" in body["error"]


def test_cancel_needs_the_owner_a_known_id_and_a_token(shared_export_server):
    srv = shared_export_server
    job = running_csv(srv, token="tok-bob")
    status, body, _ = cancel(srv, job["id"], token="tok-carol")  # another user's export looks unknown
    assert status == 404 and body["field"] == "id" and "carol" in body["error"]
    assert srv.status(job["id"], "tok-bob")["state"] == "running"
    assert cancel(srv, "0" * 32)[0] == 404
    status, body, _ = cancel(srv, "ABC" + "0" * 29)
    assert status == 400 and body["field"] == "id"
    status, _, raw = srv.request("POST", f"/export/cancel/{job['id']}", token=None)
    assert status == 401 and json.loads(raw)["field"] == "Authorization"
    assert cancel(srv, job["id"], token="tok-bob")[1]["state"] == "cancelled"


# ---------------------------------------------------------------------------------------- PDF
def report_dir(tmp_path, source: str):
    """A report notebook whose one cell is ``source`` (it hangs somewhere we want to cancel)."""
    d = tmp_path / "reports"
    d.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('artifacts = ""\ntitle = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, d / "backtest_report.ipynb")
    return d


HANGS = {
    # (renderer, stage, process that must be running when we cancel, notebook cell)
    "kernel": ("auto", "execute", "ipykernel_launcher", "import time\ntime.sleep(600)"),
    "chromium": ("chromium", "print", "--type=renderer",  # the page's renderer: the browser is all up
                 "from IPython.display import HTML, display\ndisplay(HTML('<p>x</p><script>for(;;){}</script>'))"),
    "xelatex": ("latex", "print", "xelatex",
                "from IPython.display import Latex, display\ndisplay(Latex(r'\\loop\\iftrue\\repeat'))"),
}


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if not terminated(p)]
    except psutil.NoSuchProcess:
        return []


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.browser
@pytest.mark.parametrize("hang", sorted(HANGS))
def test_a_running_pdf_report_is_stopped_with_every_process_it_started(export_server, tmp_path, monkeypatch, hang):
    renderer, stage, process, cell = HANGS[hang]
    monkeypatch.setenv("SPARK_REPORTS", str(report_dir(tmp_path, cell)))
    srv = export_server()
    job = srv.run("backtest_trades", "pdf", {"synthetic_bars": 1_000, "renderer": renderer})
    wait_until(lambda: any(process in cmdline(p) for p in descendants(srv.proc.pid)), 120, f"{process} running")
    tree = descendants(srv.proc.pid)
    assert srv.status(job["id"])["stage"] == stage
    names = sorted({p.name() for p in tree})
    status, body, seconds = cancel(srv, job["id"])
    print(f"{hang}: cancel answered in {seconds * 1000:.0f} ms, {len(tree)} processes stopped: {names}")
    assert status == 200 and body["state"] == "cancelled" and body["stage"] == stage
    assert seconds < 2.0
    alive = [p.pid for p in tree if not terminated(p)]
    assert alive == [], f"left running after the cancel: {alive}"
    assert descendants(srv.proc.pid) == []
    assert files_of(srv, job["id"]) == ["job.json"]
    assert srv.metric("export_requests_total", format="pdf", status="cancelled", user="alice") == 1


def test_a_report_cancelled_in_its_data_stage_stops_before_executing(tmp_path):
    mgr = ExportManager(tmp_path / "exports")
    try:
        job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 600_000})
        wait_until(lambda: mgr.get(job.id, "alice").stage == "data", 60, "the backtest running")
        worker = wait_until(lambda: [p for p in psutil.Process().children(recursive=True)
                                     if "_report_worker" in cmdline(p)], 30, "the report worker started")
        final = mgr.cancel(job.id, "alice", wait=120)  # the backtest itself runs to its end first
        assert final.state == "cancelled" and final.stage == "data"
        assert all(terminated(p) for p in worker)
        assert sorted(p.name for p in (mgr.root / job.id).iterdir()) == ["job.json"]
    finally:
        mgr.close()


# ---------------------------------------------------------------------------------------- CLI
def test_spark_export_cancel_stops_an_export_the_server_runs(export_server):
    srv = export_server()
    job = running_csv(srv)
    t0 = time.perf_counter()
    run = spark("cancel", job["id"], var=srv.var)
    print(f"spark export cancel: {time.perf_counter() - t0:.2f} s (process start included)")
    assert run.returncode == 0, run.stderr
    assert f"id={job['id']}" in run.stdout and "state=cancelled" in run.stdout
    assert srv.status(job["id"])["state"] == "cancelled"
    assert files_of(srv, job["id"]) == ["job.json"]
    again = spark("cancel", job["id"], var=srv.var)
    assert again.returncode == 2 and "already cancelled" in again.stderr
    unknown = spark("cancel", "f" * 32, var=srv.var)
    assert unknown.returncode == 2 and "no export" in unknown.stderr


def test_an_export_whose_server_died_is_cancelled_by_the_cli_and_not_resumed(export_server):
    srv = export_server()
    job = running_csv(srv)
    srv.kill()  # the record still says running; nothing runs it
    assert orjson.loads((srv.var / "exports" / job["id"] / "job.json").read_bytes())["state"] == "running"
    run = spark("cancel", job["id"], var=srv.var)
    assert run.returncode == 0 and "state=cancelled" in run.stdout, run.stderr
    srv.start()
    st = srv.status(job["id"])
    assert st["state"] == "cancelled" and st["attempts"] == 1
    assert files_of(srv, job["id"]) == ["job.json"]


def test_a_cancel_asked_before_a_crash_is_honoured_at_the_restart(tmp_path):
    root = tmp_path / "exports"
    asked = ExportJob("c" * 32, "bob", "synthetic_trades", "csv", {"rows": 500}, state="running", attempts=1,
                      cancel_requested_at=time.time())
    (root / asked.id).mkdir(parents=True)
    (root / asked.id / "job.json").write_bytes(orjson.dumps(asked.to_dict()))
    (root / asked.id / ".tmp-0-partial.csv").write_text("ts,symbol\n")
    mgr = ExportManager(root)
    try:
        st = mgr.get(asked.id, "bob")
        assert st.state == "cancelled" and st.attempts == 1 and st.rows_done == 0
        assert sorted(p.name for p in (root / asked.id).iterdir()) == ["job.json"]
    finally:
        mgr.close()

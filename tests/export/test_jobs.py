"""Export jobs as a library: persistence, resume after a crash, cleanup by age, id hygiene."""
from __future__ import annotations

import time

import orjson
import pytest

from spark_research.export import ExportManager, ExportParamError, UnknownExportError
from spark_research.export.jobs import MAX_ATTEMPTS, ExportJob, check_id, size_bucket


@pytest.fixture
def mgr(tmp_path):
    m = ExportManager(tmp_path / "exports", max_per_user=3)
    yield m
    m.close()


def test_job_record_on_disk_matches_the_status(mgr):
    job = mgr.submit("alice", "synthetic_trades", "csv", {"rows": 2_000})
    final = mgr.wait(job.id, "alice", timeout=60)
    on_disk = orjson.loads((mgr.root / job.id / "job.json").read_bytes())
    assert on_disk["state"] == final.state == "succeeded"
    assert on_disk["rows_done"] == 2_000 and on_disk["bytes"] == (mgr.root / job.id / final.filename).stat().st_size


def test_cleanup_removes_only_finished_exports_older_than_max_age(mgr):
    old = mgr.wait(mgr.submit("alice", "synthetic_trades", "csv", {"rows": 100}).id)
    new = mgr.wait(mgr.submit("alice", "synthetic_trades", "csv", {"rows": 100}).id)
    # a job record of a run still going on must never be removed, whatever its age
    running = ExportJob("f" * 32, "alice", "synthetic_trades", "csv", {"rows": 1}, state="running",
                        created_at=0.0, started_at=0.0)
    mgr._jobs[running.id] = running
    assert mgr.cleanup(max_age_s=60, now=old.finished_at + 59) == []
    removed = mgr.cleanup(max_age_s=60, now=old.finished_at + 60.0001 + (new.finished_at - old.finished_at) / 2)
    assert removed == [old.id] if new.finished_at > old.finished_at else old.id in removed
    assert not (mgr.root / old.id).exists()
    with pytest.raises(UnknownExportError):
        mgr.get(old.id, "alice")
    assert new.id in mgr.cleanup(max_age_s=0, now=time.time() + 1)
    assert mgr.get(running.id, "alice").state == "running"


def test_interrupted_jobs_are_retried_then_given_up(tmp_path):
    root = tmp_path / "exports"
    stuck = ExportJob("e" * 32, "bob", "synthetic_trades", "csv", {"rows": 500}, state="running", attempts=1)
    hopeless = ExportJob("d" * 32, "bob", "synthetic_trades", "csv", {"rows": 500}, state="running",
                         attempts=MAX_ATTEMPTS)
    for job in (stuck, hopeless):
        (root / job.id).mkdir(parents=True)
        (root / job.id / "job.json").write_bytes(orjson.dumps(job.to_dict()))
    mgr = ExportManager(root)
    try:
        assert mgr.wait(stuck.id, "bob", timeout=60).state == "succeeded"
        gave_up = mgr.get(hopeless.id, "bob")
        assert gave_up.state == "failed" and gave_up.reason == "interrupted"
    finally:
        mgr.close()


@pytest.mark.parametrize("bad", ["../etc", "a" * 31, "A" * 32, "g" * 32, "", None, 5, "a" * 32 + "/"])
def test_ids_must_be_32_lowercase_hex(bad):
    with pytest.raises(ExportParamError) as err:
        check_id(bad)
    assert err.value.field == "id"


def test_size_buckets_label_latency_by_row_count():
    assert [size_bucket(n) for n in (1, 10_000, 10_001, 50_000, 999_999, 1_000_001, 10**9)] == \
        ["1k", "10k", "50k", "50k", "1m", "10m", "more"]


def test_pdf_is_refused_for_sources_without_a_report(mgr):
    with pytest.raises(ExportParamError) as err:
        mgr.submit("alice", "bars", "pdf", {})
    assert err.value.field == "format" and "backtest_trades" in str(err.value)


@pytest.mark.browser
def test_a_report_notebook_that_raises_fails_the_job_as_render_error(mgr, tmp_path, monkeypatch):
    import nbformat

    from spark_research import metrics
    from spark_research.export import report

    broken = tmp_path / "reports"
    broken.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('artifacts = ""\ntitle = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError('chart library exploded')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, broken / "backtest_report.ipynb")
    monkeypatch.setattr(report, "REPORTS_DIR", broken)
    before = metrics.EXPORT_FAIL.labels(reason="render_error", format="pdf")._value.get()
    job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 1_000})
    final = mgr.wait(job.id, "alice", timeout=180)
    assert final.state == "failed" and final.reason == "render_error"
    assert "chart library exploded" in final.error
    assert metrics.EXPORT_FAIL.labels(reason="render_error", format="pdf")._value.get() == before + 1
    assert not any(p.suffix == ".pdf" for p in (mgr.root / job.id).iterdir())

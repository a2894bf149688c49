"""The export endpoints end to end over HTTP on 127.0.0.1, against a real server process."""
from __future__ import annotations

import gzip
import http.client
import io
import json
import time

import pyarrow.csv as pcsv
import pytest
from pypdf import PdfReader


@pytest.fixture
def srv(shared_export_server):
    """One server for the tests that need no fresh metrics (starting one costs about a second)."""
    return shared_export_server


@pytest.fixture
def fresh(export_server):
    """A server of its own: metrics and limits start from zero."""
    return export_server(max_per_user=2)


def test_csv_export_runs_reports_progress_and_downloads(srv):
    job = srv.run("synthetic_trades", "csv", {"rows": 10_000, "seed": 2})
    assert job["state"] in ("queued", "running") and job["user"] == "alice"
    st = srv.wait(job["id"])
    assert st["state"] == "succeeded" and st["progress"] == 1.0
    assert st["rows_done"] == st["rows_total"] == 10_000
    status, headers, body = srv.request("GET", job["download_url"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == f'attachment; filename="synthetic_trades-{job["id"][:8]}.csv"'
    assert len(body) == st["bytes"]
    assert pcsv.read_csv(io.BytesIO(body)).num_rows == 10_000
    listed = json.loads(srv.request("GET", "/export/list")[2])["exports"]
    assert job["id"] in [e["id"] for e in listed]
    assert all(e["user"] == "alice" for e in listed)


def test_gzip_and_pdf_exports_download_with_their_content_types(srv):
    gz = srv.run("synthetic_trades", "csv.gz", {"rows": 5_000})
    pdf = srv.run("backtest_trades", "pdf", {"synthetic_bars": 3_000, "seed": 1})
    assert srv.wait(gz["id"])["state"] == "succeeded"
    st = srv.wait(pdf["id"], timeout=180)
    assert st["state"] == "succeeded", st
    status, headers, body = srv.request("GET", gz["download_url"])
    assert headers["Content-Type"] == "application/gzip"
    assert gzip.decompress(body).count(b"\n") == 5_001
    status, headers, body = srv.request("GET", pdf["download_url"])
    assert status == 200 and headers["Content-Type"] == "application/pdf" and body.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(body))
    assert f"Trades in this report: {st['rows_done']}" in " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert "trades.csv" in reader.attachments


@pytest.mark.parametrize("token", [None, "tok-nobody", ""])
def test_requests_without_a_valid_token_are_401(srv, token):
    for method, path, body in (("POST", "/export/run", {"what": "bars", "format": "csv"}),
                               ("GET", "/export/status/" + "a" * 32, None), ("GET", "/export/list", None)):
        status, headers, raw = srv.request(method, path, token=token, body=body)
        assert status == 401, (path, raw)
        assert json.loads(raw)["field"] == "Authorization"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert srv.metric("export_requests_total", format="none", status="unauthorized", user="anonymous") >= 3


def test_another_users_export_is_invisible(srv):
    job = srv.run("synthetic_trades", "csv", {"rows": 1_000}, token="tok-alice")
    srv.wait(job["id"])
    for path in (f"/export/status/{job['id']}", f"/export/download/{job['id']}"):
        status, _, body = srv.request("GET", path, token="tok-bob")
        assert status == 404 and "bob" in json.loads(body)["error"]
    assert json.loads(srv.request("GET", "/export/list", token="tok-bob")[2])["exports"] == []


def test_unknown_id_is_404(srv):
    status, _, body = srv.request("GET", "/export/status/" + "0" * 32)
    assert status == 404 and json.loads(body)["field"] == "id"


@pytest.mark.parametrize("evil", ["..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..%5C..%5Cjob.json",
                                  "ABCDEF0123456789abcdef0123456789", "a" * 31, "a" * 33, "x.json"])
def test_ids_that_are_not_32_hex_chars_are_400_and_never_touch_a_path(srv, evil):
    for route in ("status", "download"):
        status, _, body = srv.request("GET", f"/export/{route}/{evil}")
        assert status == 400, body
        err = json.loads(body)
        assert err["field"] == "id" and "root:" not in body.decode()


def test_dot_dot_segments_do_not_reach_files(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/export/download/../../../etc/passwd", headers={"Authorization": "Bearer tok-alice"})
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 404 and b"root:" not in body


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"format": "csv"}', "what"),
    (b'{"what": "synthetic_trades"}', "format"),
    (b'{"what": "synthetic_trades", "format": "xlsx"}', "format"),
    (b'{"what": "secrets", "format": "csv"}', "what"),
    (b'{"what": "bars", "format": "pdf"}', "format"),
    (b'{"what": "synthetic_trades", "format": "csv", "parameters": {"rows": -5}}', "parameters.rows"),
    (b'{"what": "synthetic_trades", "format": "csv", "parameters": {"path": "/etc"}}', "parameters.path"),
    (b'{"what": "synthetic_trades", "format": "csv", "parameters": [1]}', "parameters"),
    (b'{"what": "synthetic_trades", "format": "csv", "extra": 1}', "extra"),
])
def test_invalid_requests_are_400_naming_the_field(srv, body, field):
    status, _, raw = srv.request("POST", "/export/run", raw=body)
    assert status == 400, raw
    err = json.loads(raw)
    assert err["field"] == field and field in err["error"]


def test_concurrency_limit_answers_429_and_frees_up(fresh):
    srv = fresh
    ids = [srv.run("synthetic_trades", "csv", {"rows": 2_000_000}, token="tok-carol")["id"] for _ in range(2)]
    status, headers, raw = srv.request("POST", "/export/run", token="tok-carol",
                                       body={"what": "synthetic_trades", "format": "csv", "parameters": {"rows": 10}})
    assert status == 429 and headers["Retry-After"] == "5"
    err = json.loads(raw)
    assert err["field"] == "user" and err["limit"] == 2 and "carol" in err["error"]
    # other users are not held up by carol's exports
    assert srv.request("POST", "/export/run", token="tok-dave",
                       body={"what": "synthetic_trades", "format": "csv", "parameters": {"rows": 10}})[0] == 202
    assert srv.metric("export_requests_total", format="csv", status="throttled", user="carol") == 1
    for export_id in ids:
        assert srv.wait(export_id, token="tok-carol")["state"] == "succeeded"
    assert srv.request("POST", "/export/run", token="tok-carol",
                       body={"what": "synthetic_trades", "format": "csv", "parameters": {"rows": 10}})[0] == 202


def test_failing_export_says_so_in_status_metrics_and_download(fresh):
    srv = fresh
    ok = srv.run("synthetic_trades", "csv", {"rows": 1_000})
    srv.wait(ok["id"])
    job = srv.run("synthetic_trades", "csv", {"rows": 300_000, "fail_after": 140_000})
    st = srv.wait(job["id"])
    assert st["state"] == "failed" and st["reason"] == "source_error"
    assert "injected failure after 131072 rows" in st["error"]
    status, _, body = srv.request("GET", job["download_url"])
    assert status == 409 and "failed" in json.loads(body)["error"]
    assert srv.metric("export_fail_total", reason="source_error", format="csv") == 1
    assert srv.metric("export_requests_total", format="csv", status="failed", user="alice") == 1
    assert srv.metric("export_requests_total", format="csv", status="succeeded", user="alice") == 1
    assert srv.metric("export_success_rate", format="csv") == 0.5
    assert srv.metric("export_bytes_total", format="csv", status="failed") > 0
    assert srv.metric("export_concurrent_running") == 0
    assert srv.metric("export_latency_ms_count", format="csv", size="1k") == 1


def test_jobs_survive_a_killed_server(export_server, tmp_path):
    srv = export_server(max_per_user=2)
    done = srv.run("synthetic_trades", "csv", {"rows": 2_000})
    assert srv.wait(done["id"])["state"] == "succeeded"
    big = srv.run("synthetic_trades", "csv", {"rows": 3_000_000})
    deadline = time.monotonic() + 60
    while (st := srv.status(big["id"]))["rows_done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert st["state"] == "running", st
    srv.kill()  # SIGKILL mid-export
    left = sorted(p.name for p in (srv.var / "exports" / big["id"]).iterdir() if not p.name.startswith(".job-"))
    assert left[0].startswith(".tmp-") and left[1:] == ["job.json"]  # killed mid-write: a partial, no export file
    srv.start()
    assert srv.status(done["id"])["state"] == "succeeded"
    status, _, body = srv.request("GET", done["download_url"])
    assert status == 200 and body.count(b"\n") == 2_001
    st = srv.wait(big["id"], timeout=180)
    assert st["state"] == "succeeded" and st["attempts"] == 2 and st["rows_done"] == 3_000_000
    leftovers = [p.name for p in (srv.var / "exports" / big["id"]).iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []

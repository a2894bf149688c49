"""The pieces of ``spark serve`` without a server: config, ports, index, scrape config, views."""
from __future__ import annotations

import json
import socket
import subprocess
import tempfile
from pathlib import Path

import panel as pn
import pytest
import yaml

from spark_research.platform.components import Platform, ServeConfig
from spark_research.platform.prometheus import default_rules, scrape_config, write_scrape_config
from spark_research.platform.web import APP_ORDER, discover_apps, render_index
from spark_research.serve import port_free, resolve_port
from tests.conftest import ROOT
from tests.serve.serve_helpers import APPS, SPARK


# ---------------------------------------------------------------------------- config and ports
@pytest.mark.parametrize(("field", "value"), [("port", 70000), ("n_workers", 0), ("rate", 0),
                                              ("prometheus_port", 0)])
def test_serve_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ServeConfig(**{field: value})


def test_prometheus_port_is_derived_from_the_web_port_unless_given():
    assert ServeConfig(port=6000).prom_port == 6084
    assert ServeConfig(port=6000, prometheus_port=9999).prom_port == 9999


def test_port_comes_from_flag_then_env_then_default(monkeypatch):
    monkeypatch.delenv("SPARK_PORT", raising=False)
    assert resolve_port(None) == 5006
    monkeypatch.setenv("SPARK_PORT", "7123")
    assert resolve_port(None) == 7123
    assert resolve_port(7200) == 7200
    monkeypatch.setenv("SPARK_PORT", "http")
    with pytest.raises(SystemExit, match="SPARK_PORT='http'"):
        resolve_port(None)
    with pytest.raises(SystemExit, match="port 0 is outside"):
        resolve_port(0)


def test_port_free_sees_a_listening_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_free("127.0.0.1", port) is False
    assert port_free("127.0.0.1", port) is True


def test_serve_refuses_a_taken_port_before_starting_anything(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([*SPARK, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60,
                             cwd=ROOT, env={"PATH": "/usr/bin:/bin", "SPARK_VAR": str(tmp_path)})
    assert out.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr
    assert not (tmp_path / "exports").exists()  # nothing started


# ---------------------------------------------------------------------------- index
def test_every_app_is_discovered_with_a_description():
    apps = {a.slug: a for a in discover_apps()}
    assert set(APPS) <= set(apps)
    for slug in APPS:
        assert apps[slug].description and apps[slug].title, slug
    assert [a.slug for a in discover_apps()][:len(APP_ORDER)] == list(APP_ORDER)  # the platform's order


def test_index_page_links_every_app_and_is_no_template_left(tmp_path):
    out = render_index(discover_apps(), tmp_path / "index.html")
    text = out.read_text()
    for slug in APPS:
        assert f'href="/{slug}"' in text
    assert "{{" not in text and "{%" not in text  # Bokeh renders the file again as a template
    assert "http" not in text.replace('lang="en"', "")  # no absolute (CDN) URL


# ---------------------------------------------------------------------------- prometheus config
def test_scrape_config_names_targets_interval_and_rules():
    cfg = scrape_config(["127.0.0.1:5006"], interval="1s", rules=default_rules())
    assert cfg["global"]["scrape_interval"] == "1s"
    job = cfg["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["127.0.0.1:5006"]
    names = {Path(r).name for r in cfg["rule_files"]}
    assert names == {"streams.yml", "optimizer.yml", "gates.yml", "backtest.yml", "export.yml", "models.yml",
                     "risk.yml"}  # no *_test.yml


@pytest.mark.parametrize("targets", [[], ["localhost"], ["127.0.0.1:port"]])
def test_scrape_config_rejects_bad_targets(targets):
    with pytest.raises(ValueError, match="target"):
        scrape_config(targets)


def test_written_config_passes_promtool(tmp_path):
    path = tmp_path / "prometheus.yml"
    out = subprocess.run([*SPARK, "serve", "--port", "5123", "--write-prometheus-config", str(path),
                          "--scrape-interval", "1s"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(path.read_text())["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:5123"]
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout + check.stderr


def test_dask_job_reads_a_targets_file_keeps_only_dask_series_and_passes_promtool(tmp_path):
    from spark_research.platform.prometheus import dask_targets, write_sd_targets

    sd = tmp_path / "dask_targets.json"
    info = {"services": {"dashboard": 8787}, "workers": {
        "tcp://127.0.0.1:2": {"name": 1, "services": {"dashboard": 9002}},
        "tcp://127.0.0.1:1": {"name": 0, "services": {"dashboard": 9001}},
        "tcp://127.0.0.1:3": {"name": 2, "services": {}}}}  # a worker without an HTTP server: not a target
    assert write_sd_targets(sd, dask_targets(info)) is True
    assert write_sd_targets(sd, dask_targets(info)) is False  # unchanged: not rewritten
    groups = json.loads(sd.read_text())
    assert [g["targets"] for g in groups] == [["127.0.0.1:8787"], ["127.0.0.1:9001"], ["127.0.0.1:9002"]]
    assert [g["labels"].get("worker") for g in groups] == [None, "0", "1"]
    path = write_scrape_config(tmp_path / "prometheus.yml", ["127.0.0.1:5006"], dask_sd_file=sd)
    cfg = yaml.safe_load(path.read_text())
    job = cfg["scrape_configs"][1]
    assert job["job_name"] == "dask" and job["file_sd_configs"][0]["files"] == [str(sd.resolve())]
    assert job["metric_relabel_configs"][0]["action"] == "keep"
    import re
    keep = re.compile(job["metric_relabel_configs"][0]["regex"])
    assert keep.fullmatch("dask_worker_tasks") and keep.fullmatch("process_resident_memory_bytes")
    assert not keep.fullmatch("optimizer_workers_running")  # the platform's metrics come from the platform only
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_write_scrape_config_leaves_no_temp_file(tmp_path):
    write_scrape_config(tmp_path / "p.yml", ["127.0.0.1:1"])
    assert [p.name for p in tmp_path.iterdir()] == ["p.yml"]


# ---------------------------------------------------------------------------- health without a server
def test_health_of_a_platform_not_started_is_starting_and_names_failures():
    p = Platform(ServeConfig(var_dir=Path(tempfile.mkdtemp())))
    body = p.health()
    assert body["status"] == "starting"
    assert body["components"]["prometheus"]["state"] == "disabled"
    p.states["optimizer"].state, p.states["optimizer"].error = "failed", "OSError: no scheduler at tcp://x:1"
    body = p.health()
    assert body["status"] == "degraded"
    assert body["components"]["optimizer"] == {"state": "failed", "up": False,
                                               "error": "OSError: no scheduler at tcp://x:1", "started_s": None}
    json.dumps(body)  # JSON-ready


# ---------------------------------------------------------------------------- views
def test_research_sweep_values_and_parse_errors():
    from spark_research.views.research import ResearchExplorer, parse_values

    assert parse_values("5, 10,20", "x values") == [5, 10, 20]
    with pytest.raises(ValueError, match="x values: 'a, b'"):
        parse_values("a, b", "x values")
    with pytest.raises(ValueError, match="y values"):
        parse_values(" , ", "y values")
    ex = ResearchExplorer(bars=1_000)
    assert (ex.x_param, ex.y_param) == ("fast", "slow")
    assert ex.x_values == "2, 52, 101, 150, 200"
    ex.strategy = "rsi_reversion"
    assert ex.x_param == "window" and set(ex.values) == {"window", "lower", "upper"}


def test_research_refuses_a_sweep_on_one_parameter_twice():
    from spark_research.views.research import ResearchExplorer

    ex = ResearchExplorer(bars=1_000)
    ex.y_param = ex.x_param
    ex.run_sweep()
    assert ex.message.startswith("sweep refused: x and y parameter are both 'fast'")
    assert ex.handle is None


def test_research_backtest_shows_stats_and_trades():
    from spark_research.views.research import ResearchExplorer

    ex = ResearchExplorer(bars=2_000)
    ex.run_backtest()
    assert ex.stats["trades"] > 0 and "trades" in ex.message
    ex.values["fast"] = 10**6  # outside the declared range: the page shows why, nothing raises
    ex.run_backtest()
    assert ex.message.startswith("backtest failed:") and "fast" in ex.message


def test_export_center_refuses_bad_forms_with_the_field_named(tmp_path):
    from spark_research.export import ExportManager
    from spark_research.views.export_center import ExportCenter

    ec = ExportCenter(manager=ExportManager(tmp_path), user="alice")
    ec.parameters = "{rows: 1}"
    ec.start()
    assert ec.message.startswith("refused: parameters is not JSON")
    ec.parameters = '{"rows": 0}'
    ec.start()
    assert "parameters.rows" in ec.message and ec.job_id == ""
    ec.what = "bars"
    assert json.loads(ec.parameters) == {"symbol": "BTCUSDT"}
    ec.format = "pdf"
    ec.start()
    assert ec.message.startswith("refused:") and "format" in ec.message
    ec.manager.close()


def test_export_center_follows_a_job_to_its_download(tmp_path):
    from spark_research.export import ExportManager
    from spark_research.views.export_center import ExportCenter

    ec = ExportCenter(manager=ExportManager(tmp_path), user="alice")
    ec.parameters = '{"rows": 700}'
    ec.start()
    ec.manager.wait(ec.job_id, "alice", timeout=60)
    ec.refresh()
    assert (ec.state, ec.progress) == ("succeeded", 100)
    assert "700 rows" in ec.message
    dl = ec.download_view()
    assert Path(dl.file).read_text().count("\n") == 701 and dl.filename.endswith(".csv")
    other = ExportCenter(manager=ec.manager, user="bob")
    assert other.jobs_frame().empty  # users see only their own exports
    ec.manager.close()


def test_export_center_cancels_the_followed_export_from_its_button(tmp_path):
    from spark_research.export import ExportManager
    from spark_research.views.export_center import ExportCenter

    ec = ExportCenter(manager=ExportManager(tmp_path), user="alice")
    ec.cancel()
    assert ec.message.startswith("refused: no export to cancel")
    ec.parameters = '{"rows": 50000000}'  # minutes of work: it is running or queued when cancelled
    ec.start()
    form = ec.form()
    stop = next(w for w in form.select(pn.widgets.Button) if w.label == "Cancel export")
    stop.clicks += 1  # what a click in the browser does
    job = ec.manager.wait(ec.job_id, "alice", timeout=30)
    ec.refresh()
    assert job.state == ec.state == "cancelled", (job.state, ec.message)
    assert ec.message.endswith("cancelled")
    assert not [p for p in (tmp_path / ec.job_id).iterdir() if p.suffix == ".csv"]  # no partial file left
    ec.cancel()  # already final: refused, named
    assert ec.message.startswith("refused:") and "cancelled" in ec.message
    ec.manager.close()


def test_a_write_to_a_closed_browser_socket_is_one_info_line_other_task_errors_stay_errors(caplog):
    """Panel leaves some websocket writes un-awaited (holoviz/panel#3341): a tab closed mid-message
    must not put a traceback in the server log, while any other lost task exception still does."""
    import asyncio
    import gc
    import logging

    from tornado.websocket import WebSocketClosedError

    from spark_research.platform.web import quiet_closed_websockets

    async def closed():
        raise WebSocketClosedError()

    async def broken():
        raise ValueError("a real bug")

    async def main():
        asyncio.get_running_loop().set_exception_handler(quiet_closed_websockets)
        for coro in (closed(), broken()):
            task = asyncio.ensure_future(coro)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert task.done()
            del task  # never retrieved: asyncio reports it when the task is collected
            gc.collect()

    caplog.set_level(logging.INFO)
    import threading  # a fresh loop on its own thread: a session fixture may run a loop in this one

    t = threading.Thread(target=asyncio.run, args=(main(),))
    t.start()
    t.join(10)
    assert not t.is_alive()
    quiet = [r for r in caplog.records if r.name == "spark_research.platform"]
    assert [r.levelno for r in quiet] == [logging.INFO]
    assert "WebSocketClosedError" in quiet[0].getMessage() and quiet[0].exc_info is None
    loud = [r for r in caplog.records if r.name == "asyncio"]
    assert len(loud) == 1 and loud[0].levelno == logging.ERROR
    assert "never retrieved" in loud[0].getMessage() and "ValueError" in repr(loud[0].exc_info)


def test_stream_monitor_under_spark_serve_never_starts_a_second_ingest():
    """Before the ingest process is up, a stream monitor page waits for it ("connecting") instead of
    starting an ingest of its own in the web process (two writers of one journal)."""
    from types import SimpleNamespace

    from spark_research.platform import runtime
    from spark_research.views import streams

    platform = SimpleNamespace(pipeline=None)
    runtime.register(platform)
    try:
        mon = streams.StreamMonitor()
        mon.update()
        assert mon.state == "connecting" and mon.updates == 1
        assert streams._SHARED is None  # nothing started here
        snap = {"time": 1.0, "gaps_ms": [], "ingest": {
            "counters": {k: 0 for k in ("msgs", "trades", "gaps", "resyncs", "book_resyncs", "duplicates",
                                        "malformed", "reconnects")},
            "latency_ms": {"p50": 0.1, "p95": 0.2}, "state": {"trade": "connected"}, "gaps_open": 0,
            "last_price": 100.0}}
        platform.pipeline = SimpleNamespace(snapshot=lambda: snap)
        mon.update()
        assert mon.state == "connected" and mon.last_price == 100.0
    finally:
        runtime.register(None)

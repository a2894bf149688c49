"""Supervised processes, the ingest's bar channel and the relayed /metrics, piece by piece."""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest

from spark_research import metrics
from spark_research.platform.supervisor import BACKOFF_S, Supervised

CHILD = textwrap.dedent('''
    import json, os, signal, sys, threading, time
    from spark_research._lifecycle import die_with_parent
    state = sys.argv[1]
    die_with_parent(int(os.environ["SPARK_SUPERVISOR_PID"]), every_s=0.1)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    with open(state + ".tmp", "w") as f:
        json.dump({"pid": os.getpid()}, f)
    os.replace(state + ".tmp", state)
    done.wait()
''')


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state = tmp_path / "run" / "child.json"
    proc = Supervised("child", [sys.executable, str(script), str(state)], state_file=state,
                      log_file=tmp_path / "child.log", ready_timeout=30)
    yield proc
    proc.stop()


def test_a_killed_process_is_restarted_with_backoff_and_counted(child):
    child.start()
    first = child.info()
    assert first["state"] == "up" and first["restarts"] == 0 and psutil.pid_exists(first["pid"])
    os.kill(first["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (child.info()["pid"] == first["pid"] or child.info()["state"] != "up") and time.monotonic() < deadline:
        time.sleep(0.05)
    again = child.info()
    assert again["state"] == "up" and again["restarts"] == 1 and again["last_exit"] == -signal.SIGKILL
    assert again["pid"] != first["pid"]
    assert BACKOFF_S[0] <= 1.0  # the first restart comes quickly


def test_stop_terminates_and_is_not_restarted(child):
    child.start()
    pid = child.pid
    child.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    time.sleep(0.5)
    assert child.info()["state"] == "stopped" and child.pid == pid  # no new process after a stop


def test_a_process_that_dies_before_ready_is_an_error_naming_it(tmp_path):
    proc = Supervised("broken", [sys.executable, "-c", "import sys; sys.exit(3)"],
                      state_file=tmp_path / "x.json", ready_timeout=30)
    with pytest.raises(RuntimeError, match="broken process exited with 3 before it was ready"):
        proc.start()


def test_a_child_exits_when_its_supervisor_is_killed(tmp_path):
    """The supervisor itself killed with -9: its supervised child does not stay behind."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state = tmp_path / "child.json"
    boss = (f"import sys, time\nfrom pathlib import Path\nfrom spark_research.platform.supervisor import Supervised\n"
            f"Supervised('c', [sys.executable, {str(script)!r}, {str(state)!r}], state_file=Path({str(state)!r})).start()\n"
            f"print('ready', flush=True)\ntime.sleep(600)\n")
    import subprocess

    sup = subprocess.Popen([sys.executable, "-c", boss], stdout=subprocess.PIPE, text=True)
    try:
        assert sup.stdout.readline().strip() == "ready"
        child_pid = json.loads(state.read_text())["pid"]
        assert psutil.pid_exists(child_pid)
        sup.kill()
        sup.wait(10)
        gone, alive = psutil.wait_procs([psutil.Process(child_pid)], timeout=10)
        assert not alive, "the child outlived its supervisor"
    finally:
        if sup.poll() is None:
            sup.kill()


def test_slow_channel_subscriber_loses_its_oldest_bars_never_blocks_the_ingest():
    from spark_research.streams.bars import Bar
    from spark_research.streams.service import BarChannel

    ch = BarChannel(maxsize=5)
    sid, q = ch.subscribe()
    before = metrics.STREAM_CHANNEL_DROPPED.labels(subscriber=str(sid))._value.get()
    t0 = time.perf_counter()
    for i in range(20):
        ch.publish(Bar("BTCUSDT", "1s", i, 1.0, 1.0, 1.0, 1.0, 1.0, 1, i, i))
    assert time.perf_counter() - t0 < 1.0
    assert q.qsize() == 5 and [q.get().start_us for _ in range(5)] == [15, 16, 17, 18, 19]
    assert metrics.STREAM_CHANNEL_DROPPED.labels(subscriber=str(sid))._value.get() - before == 15
    ch.unsubscribe(sid)
    assert ch.subscribers == 0


def test_relayed_families_come_from_their_owner_once():
    own = ("# HELP a_total a\n# TYPE a_total counter\na_total 1.0\n"
           "# HELP ws_msgs_total m\n# TYPE ws_msgs_total counter\nws_msgs_total 0.0\n")
    ingest = ("# HELP ws_msgs_total m\n# TYPE ws_msgs_total counter\nws_msgs_total 42.0\n"
              "# HELP process_cpu_seconds_total c\n# TYPE process_cpu_seconds_total counter\n"
              "process_cpu_seconds_total 3.0\n")
    url = "http://127.0.0.1:1/metrics"
    metrics.relay(url, ("ws_",))
    try:
        merged = metrics.merge(own, {url: ingest})
        assert merged.count("# HELP ws_msgs_total") == 1 and "ws_msgs_total 42.0" in merged
        assert "a_total 1.0" in merged and "process_cpu" not in merged  # only the families it owns
        assert "ws_msgs_total" not in metrics.merge(own, {url: None})  # owner away: absent, not stale
    finally:
        metrics.clear_relays()


def test_ingest_service_serves_snapshot_bars_and_metrics(tmp_path):
    """The ingest process as spark serve runs it, on its own: its HTTP face and bar channel."""
    import subprocess

    state = tmp_path / "ingest.json"
    proc = Supervised("ingest", [sys.executable, "-m", "spark_research.streams.service", "--rate", "2000",
                                 "--tape", "20000", "--root", str(tmp_path / "ingest"),
                                 "--state-file", str(state)],
                      state_file=state, log_file=tmp_path / "ingest.log").start()
    try:
        from spark_research.streams.remote import RemoteStream

        stream = RemoteStream(f"http://127.0.0.1:{proc.ready_info['port']}")
        bars = []
        stream.on_bar(bars.append)
        deadline = time.monotonic() + 30
        while (len([b for b in bars if b.interval == "1s"]) < 3 or stream.snapshot()["ingest"]["last_id"] < 100) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len([b for b in bars if b.interval == "1s"]) >= 3 and bars[0].symbol == "BTCUSDT"
        assert stream.snapshot()["ingest"]["state"]["trade"] in ("connected", "resyncing")
        with urllib.request.urlopen(stream.base_url + "/metrics", timeout=10) as r:
            assert b"ws_msgs_total" in r.read()
        starts = [b.start_us for b in bars if b.interval == "1s"]
        assert starts == sorted(set(starts))  # in order, once each
    finally:
        proc.stop()
    assert proc.info()["state"] == "stopped"
    assert subprocess.run(["pgrep", "-f", str(state)], capture_output=True).returncode == 1

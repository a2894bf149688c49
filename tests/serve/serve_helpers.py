"""Helpers for the spark serve tests: a real ``spark serve`` subprocess and ways to talk to it."""
from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.conftest import ROOT, free_port

SPARK = [sys.executable, "-m", "spark_research.cli"]
OPERATOR = ("operator", "operator-demo")
VIEWER = ("viewer", "viewer-demo")
APPS = ("stream_monitor", "gate_control", "research", "export_center", "risk", "model_monitor")


@dataclass
class Served:
    """A running ``spark serve``: its process, base URL, var dir, log and start-up timings."""

    proc: subprocess.Popen
    port: int
    var: Path
    log_path: Path
    started_at: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def opener(self, user: tuple[str, str] = OPERATOR) -> urllib.request.OpenerDirector:
        """A cookie-keeping opener logged in as ``user`` through the /login form."""
        jar = http.cookiejar.CookieJar()
        op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        data = urllib.parse.urlencode({"username": user[0], "password": user[1], "next": "/"}).encode()
        op.open(self.url + "/login", data=data, timeout=30).close()
        assert any(c.name == "user" for c in jar), f"login as {user[0]} set no cookie"
        return op


def start_serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    """Start ``spark serve`` on a free port with its state under ``tmp`` (returns at once)."""
    port = free_port()
    var = tmp / "var"
    log_path = tmp / "serve.log"
    log = open(log_path, "w")
    # Its own process group, like a shell job: a terminal's Ctrl-C can be replayed with killpg.
    proc = subprocess.Popen([*SPARK, "serve", "--port", str(port), *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "SPARK_VAR": str(var), "PYTHONUNBUFFERED": "1", **(env or {})})
    return Served(proc, port, var, log_path, time.monotonic())


def wait_until_apps_answer(s: Served, timeout: float = 180.0, until_health_ok: bool = True) -> dict[str, float]:
    """Poll until /health answers, every app returns 200 to a logged-in user, and (``until_health_ok``)
    /health is ok.

    Returns seconds from process start to each milestone.
    """
    deadline = s.started_at + timeout
    op = None
    pending = list(APPS)
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            raise RuntimeError(f"spark serve exited with {s.proc.returncode}:\n{s.log()[-4000:]}")
        try:
            if "web" not in s.timings:
                urllib.request.urlopen(s.url + "/health", timeout=2).close()
        except urllib.error.HTTPError:
            pass
        except OSError:
            time.sleep(0.1)
            continue
        s.timings.setdefault("web", time.monotonic() - s.started_at)
        try:
            op = op or s.opener()
            for app in list(pending):
                with op.open(f"{s.url}/{app}", timeout=60) as r:
                    assert r.status == 200
                pending.remove(app)
                s.timings[app] = time.monotonic() - s.started_at
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.2)
            continue
        if not pending:
            s.timings["apps"] = time.monotonic() - s.started_at
            # CPU the server spent getting there: on a loaded machine wall time says little
            cpu = psutil.Process(s.proc.pid).cpu_times()
            s.timings["apps_cpu_s_main_process"] = cpu.user + cpu.system
            s.timings["load_avg_1m"] = os.getloadavg()[0]
            break
    else:
        raise TimeoutError(f"apps {pending} did not answer within {timeout}s:\n{s.log()[-4000:]}")
    if not until_health_ok:
        return s.timings
    while time.monotonic() < deadline:
        if s.health()["status"] == "ok":
            s.timings["health_ok"] = time.monotonic() - s.started_at
            return s.timings
        time.sleep(0.2)
    raise TimeoutError(f"/health not ok within {timeout}s: {s.health()}")


def stop_serve(s: Served, sig: int = signal.SIGINT, timeout: float = 60.0,
               group: bool = False) -> tuple[int | None, list[str]]:
    """Signal ``spark serve`` (``group``: its whole process group, as a terminal's Ctrl-C does),
    wait for it, and return ``(exit code, descriptions of survivors)``.

    Survivors are its child processes still alive 5 s after it exited (orphans); they, and the
    server itself if it hangs past ``timeout``, are killed before returning, so nothing leaks.
    """
    kids = s.children()
    if s.proc.poll() is None:
        if group:
            os.killpg(s.proc.pid, sig)
        else:
            s.proc.send_signal(sig)
    try:
        code = s.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
        s.proc.kill()
        s.proc.wait(timeout=10)
    _, alive = psutil.wait_procs(kids, timeout=5)
    survivors = []
    for p in alive:
        try:
            survivors.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return code, survivors

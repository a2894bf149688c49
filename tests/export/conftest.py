"""Fixtures of the export tests: a private var dir, and the export server as a real process."""
from __future__ import annotations

import http.client  # noqa: F401  (type of the headers returned)
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_http  # noqa: F401  (re-exported to the export tests)

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-carol": "carol", "tok-dave": "dave"}


@pytest.fixture
def var_dir(tmp_path, monkeypatch) -> Path:
    """``SPARK_VAR`` pointing at a fresh temporary directory."""
    var = tmp_path / "var"
    var.mkdir()
    monkeypatch.setenv("SPARK_VAR", str(var))
    return var


class ExportServer:
    """``spark export serve`` in a subprocess on a free loopback port; restartable and killable."""

    def __init__(self, var: Path, max_per_user: int = 2):
        self.var, self.max_per_user = var, max_per_user
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = var / "server.log"

    def start(self) -> "ExportServer":
        env = {**os.environ, "SPARK_VAR": str(self.var), "SPARK_EXPORT_TOKENS": json.dumps(TOKENS),
               "SPARK_HOST": "127.0.0.1"}
        cmd = [sys.executable, "-m", "spark_research.cli", "export", "serve", "--port", str(self.port),
               "--max-per-user", str(self.max_per_user)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        try:
            wait_http(self.url + "/metrics", timeout=60, proc=self.proc)
        except Exception:
            print(self.log.read_text())
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crash or an OOM kill."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    # --------------------------------------------------------------- a tiny HTTP client
    def request(self, method: str, path: str, token: str | None = "tok-alice", body: object = None,
                raw: bytes | None = None) -> tuple[int, "http.client.HTTPMessage", bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def run(self, what: str, fmt: str = "csv", params: dict | None = None, token: str = "tok-alice") -> dict:
        status, _, body = self.request("POST", "/export/run", token, {"what": what, "format": fmt, "parameters": params or {}})
        assert status == 202, body
        return json.loads(body)

    def status(self, export_id: str, token: str = "tok-alice") -> dict:
        status, _, body = self.request("GET", f"/export/status/{export_id}", token)
        assert status == 200, body
        return json.loads(body)

    def wait(self, export_id: str, token: str = "tok-alice", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(export_id, token)
            if st["state"] in ("succeeded", "failed", "cancelled"):
                return st
            time.sleep(0.1)
        raise TimeoutError(f"export {export_id} not finished after {timeout}s: {st}")

    def metric(self, name: str, **labels: str) -> float:
        """Value of one sample on ``/metrics`` (0 if absent)."""
        _, _, body = self.request("GET", "/metrics", None)
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in body.decode().splitlines():
            if line.startswith(name + ("{" if labels else " ")):
                head, value = line.rsplit(" ", 1)
                got = head[len(name):].strip("{}")
                if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                    return float(value)
        return 0.0


@pytest.fixture
def export_server(tmp_path):
    """Start (and at teardown stop) export servers: ``srv = export_server(max_per_user=2)``."""
    servers: list[ExportServer] = []

    def start(var: Path | None = None, max_per_user: int = 2) -> ExportServer:
        v = var or tmp_path / f"var{len(servers)}"
        v.mkdir(exist_ok=True)
        srv = ExportServer(v, max_per_user).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="module")
def shared_export_server(tmp_path_factory):
    """One export server for a whole test module (alice, bob, carol, dave; 2 exports per user)."""
    srv = ExportServer(tmp_path_factory.mktemp("var"), max_per_user=2).start()
    yield srv
    srv.stop()

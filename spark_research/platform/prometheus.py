"""A Prometheus scrape config for the platform, and a local Prometheus server to run it.

``spark serve --write-prometheus-config FILE`` writes the config; ``spark serve --prometheus``
also starts Debian's ``/usr/bin/prometheus`` with it and with the project's alert rules
(``rules/*.yml`` without the ``*_test.yml`` unit tests), bound to 127.0.0.1.

Example::

    >>> cfg = scrape_config(["127.0.0.1:5006"], interval="1s")
    >>> cfg["scrape_configs"][0]["static_configs"][0]["targets"]
    ['127.0.0.1:5006']
    >>> cfg["global"]["scrape_interval"]
    '1s'
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from spark_research.observability.catalog import rule_files

JOB = "spark_research"


def scrape_config(targets: list[str], *, interval: str = "5s", rules: list[Path] | None = None,
                  job: str = JOB) -> dict[str, Any]:
    """A ``prometheus.yml`` as a dict: one job scraping ``/metrics`` of every ``host:port`` target.

    ``rules``: alert rule files to load (default none; :func:`default_rules` gives the project's).
    """
    if not targets:
        raise ValueError("targets must name at least one host:port to scrape, got []")
    for t in targets:
        host, _, port = t.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target {t!r} is not host:port")
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "scrape_interval": interval,
                            "static_configs": [{"targets": list(targets)}]}],
    }
    if rules:
        cfg["rule_files"] = [str(Path(r).resolve()) for r in rules]
    return cfg


def default_rules() -> list[Path]:
    """The project's alert rule files (``rules/*.yml``, the promtool ``*_test.yml`` excluded)."""
    return rule_files()


def write_scrape_config(path: str | os.PathLike[str], targets: list[str], **kw: Any) -> Path:
    """Write :func:`scrape_config` as YAML to ``path`` (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(scrape_config(targets, **kw), sort_keys=False))
    os.replace(tmp, path)
    return path


def prometheus_path() -> str:
    """The ``prometheus`` binary (``SPARK_PROMETHEUS`` or on ``PATH``); a clear error if missing."""
    exe = os.environ.get("SPARK_PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(exe).is_file():
        raise FileNotFoundError(f"prometheus binary not found ({exe}); install Debian's 'prometheus' package "
                                "(make sysdeps) or set SPARK_PROMETHEUS")
    return exe


class PrometheusProcess:
    """``prometheus`` as a child process on ``127.0.0.1:port`` with a generated config.

    Its TSDB lives under ``workdir/data``; :meth:`stop` terminates it (SIGTERM, then SIGKILL).
    """

    def __init__(self, targets: list[str], port: int, workdir: str | os.PathLike[str], *, interval: str = "1s",
                 rules: bool = False, retention: str = "1h"):
        self.targets, self.port, self.interval = list(targets), int(port), interval
        self.workdir = Path(workdir)
        self.rules = default_rules() if rules else []
        self.retention = retention
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "PrometheusProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = write_scrape_config(self.workdir / "prometheus.yml", self.targets, interval=self.interval,
                                     rules=self.rules)
        cmd = [prometheus_path(), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{self.port}", f"--storage.tsdb.retention.time={self.retention}",
               "--log.level=warn"]
        self._log = open(self.workdir / "prometheus.log", "ab")
        # Own process group: a Ctrl-C in the terminal reaches spark serve, which stops Prometheus in order.
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for ``/-/ready``; raises with the log tail if Prometheus exits or stays unready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"prometheus exited with {self.proc.returncode if self.proc else None}: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus on port {self.port} not ready within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._log.close()

"""A Prometheus scrape config for the platform, and a local Prometheus server to run it.

``spark serve --write-prometheus-config FILE`` writes the config; ``spark serve --prometheus``
also starts Debian's ``/usr/bin/prometheus`` with it and with the project's alert rules
(``rules/*.yml`` without the ``*_test.yml`` unit tests), bound to 127.0.0.1.

Besides the platform's own ``/metrics`` (job ``spark_research``), the Dask scheduler and every
worker process serve ``/metrics`` on their HTTP ports (Dask's ``dask_scheduler_*`` /
``dask_worker_*`` and per-process ``process_*`` series). Their addresses change when a worker
restarts, so they are found through a file of targets (Prometheus ``file_sd_configs``,
job ``dask``) that the platform rewrites from the scheduler's worker list
(:func:`dask_targets`, :func:`write_sd_targets`). Only Dask's and the process series are kept
from those endpoints: the platform's own metrics, present in every process that imports
:mod:`spark_research.metrics`, are scraped once, from the platform.

Example::

    >>> cfg = scrape_config(["127.0.0.1:5006"], interval="1s")
    >>> cfg["scrape_configs"][0]["static_configs"][0]["targets"]
    ['127.0.0.1:5006']
    >>> cfg["global"]["scrape_interval"]
    '1s'
"""
from __future__ import annotations

import json
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
DASK_JOB = "dask"
#: Series kept from the Dask endpoints (a relabel ``keep``): Dask's own and the process's.
DASK_KEEP = "dask_.*|process_.*|python_.*"


def scrape_config(targets: list[str], *, interval: str = "5s", rules: list[Path] | None = None,
                  job: str = JOB, dask_sd_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A ``prometheus.yml`` as a dict: one job scraping ``/metrics`` of every ``host:port`` target.

    ``rules``: alert rule files to load (default none; :func:`default_rules` gives the project's).
    ``dask_sd_file``: a targets file (:func:`write_sd_targets`) for a second job, ``dask``,
    scraping the Dask scheduler and workers.
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
    if dask_sd_file is not None:
        cfg["scrape_configs"].append({
            "job_name": DASK_JOB, "metrics_path": "/metrics", "scrape_interval": interval,
            "file_sd_configs": [{"files": [str(Path(dask_sd_file).resolve())], "refresh_interval": "5s"}],
            "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": DASK_KEEP, "action": "keep"}],
        })
    if rules:
        cfg["rule_files"] = [str(Path(r).resolve()) for r in rules]
    return cfg


def dask_targets(scheduler_info: dict[str, Any], host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """File-SD target groups for the Dask scheduler and each worker with an HTTP port.

    ``scheduler_info``: ``Client.scheduler_info()``; ``host``: the scheduler's host (workers
    give their own). Each group is labelled ``role`` (scheduler/worker) and, for workers,
    ``worker`` (the worker's name).

    Example::

        >>> info = {"services": {"dashboard": 8787},
        ...         "workers": {"tcp://127.0.0.1:1": {"name": 0, "services": {"dashboard": 9001}}}}
        >>> [(g["targets"], g["labels"]) for g in dask_targets(info)]
        [(['127.0.0.1:8787'], {'role': 'scheduler'}), (['127.0.0.1:9001'], {'role': 'worker', 'worker': '0'})]
    """
    groups = []
    port = (scheduler_info.get("services") or {}).get("dashboard")
    if port:
        groups.append({"targets": [f"{host}:{port}"], "labels": {"role": "scheduler"}})
    for addr, w in sorted((scheduler_info.get("workers") or {}).items()):
        port = (w.get("services") or {}).get("dashboard")
        if port:
            groups.append({"targets": [f"{w.get('host') or host}:{port}"],
                           "labels": {"role": "worker", "worker": str(w.get("name", addr))}})
    return groups


def write_sd_targets(path: str | os.PathLike[str], groups: list[dict[str, Any]]) -> bool:
    """Write target groups as Prometheus file-SD JSON, atomically; False when unchanged (not rewritten)."""
    path = Path(path)
    text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


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
                 rules: bool = False, retention: str = "1h", dask: bool = False):
        self.targets, self.port, self.interval = list(targets), int(port), interval
        self.workdir = Path(workdir)
        #: file-SD targets of the ``dask`` job (written by the owner with :func:`write_sd_targets`)
        self.dask_sd_file = self.workdir / "dask_targets.json" if dask else None
        self.rules = default_rules() if rules else []
        self.retention = retention
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "PrometheusProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.dask_sd_file is not None and not self.dask_sd_file.exists():
            write_sd_targets(self.dask_sd_file, [])
        config = write_scrape_config(self.workdir / "prometheus.yml", self.targets, interval=self.interval,
                                     rules=self.rules, dask_sd_file=self.dask_sd_file)
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

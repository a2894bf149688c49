"""Components of ``spark serve`` that run as processes of their own, started, watched and restarted.

A :class:`Supervised` process is started with its command line; it signals that it is ready
by writing a JSON state file (with its pid). A watcher thread notices when it exits without
being asked to and starts it again after a backoff (0.5 s, doubling to 10 s; back to 0.5 s
once it stayed up for a minute), so a crash or a ``kill -9`` costs a few seconds of that
component, while the others keep serving. :meth:`Supervised.info` is what ``/health`` shows:
pid, state, restarts, uptime, last exit code.

Children die with the supervisor: a child calls :func:`die_with_parent` with
``SPARK_SUPERVISOR_PID`` (set for it), and :meth:`Supervised.stop` sends SIGTERM, then
SIGKILL after ``stop_timeout``.

Example::

    >>> proc = Supervised("ingest", [sys.executable, "-m", "spark_research.streams.service", ...],  # doctest: +SKIP
    ...                   state_file=Path("var/run/ingest.json")).start()
    >>> proc.info()["state"]                                                                          # doctest: +SKIP
    'up'
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("spark_research.platform")

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
STABLE_S = 60.0  # up this long: the next crash starts the backoff over


class Supervised:
    """One supervised process (see the module docstring)."""

    def __init__(self, name: str, argv: list[str], *, state_file: Path, env: dict[str, str] | None = None,
                 log_file: Path | None = None, ready_timeout: float = 60.0, stop_timeout: float = 10.0,
                 on_ready: Callable[[dict[str, Any]], None] | None = None):
        self.name, self.argv = name, list(argv)
        self.state_file, self.env = Path(state_file), env
        self.log_file = log_file
        self.ready_timeout, self.stop_timeout = ready_timeout, stop_timeout
        self.on_ready = on_ready
        self.proc: subprocess.Popen | None = None
        self.state = "starting"  #: starting | up | restarting | stopped | failed
        self.restarts = 0
        self.last_exit: int | None = None
        self.started_at: float | None = None
        self.ready_info: dict[str, Any] = {}
        self.error: str | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Supervised":
        """Start the process and wait until it is ready; then watch it (raises if it never gets ready)."""
        self._spawn_and_wait()
        self._watcher = threading.Thread(target=self._watch, name=f"supervise-{self.name}", daemon=True)
        self._watcher.start()
        return self

    def _spawn_and_wait(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.unlink(missing_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            with self._lock:
                # its own process group: a Ctrl-C in the terminal reaches spark serve, which stops
                # the children in order (a child that died of the SIGINT would be restarted meanwhile)
                self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env={**os.environ, "SPARK_SUPERVISOR_PID": str(os.getpid()),
                                                  **(self.env or {})}, process_group=0)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            code = self.proc.poll()
            if code is not None:
                self.last_exit = code
                raise RuntimeError(f"{self.name} process exited with {code} before it was ready"
                                   + (f" (log: {self.log_file})" if self.log_file else ""))
            info = self._read_state()
            if info.get("pid") == self.proc.pid:
                self.ready_info = info
                self.started_at = time.monotonic()
                self.state = "up"
                if self.on_ready is not None:
                    self.on_ready(info)
                return
            time.sleep(0.05)
        if not self._stopping.is_set():
            self._kill()
            raise TimeoutError(f"{self.name} process not ready within {self.ready_timeout}s")

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _watch(self) -> None:
        attempt = 0
        while not self._stopping.wait(0.2):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            if self._stopping.is_set():
                return
            self.last_exit = proc.returncode
            up_for = time.monotonic() - (self.started_at or time.monotonic())
            attempt = 0 if up_for >= STABLE_S else attempt
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            self.state = "restarting"
            log.warning("component %s: process %s exited with %s after %.1fs; restarting in %.1fs",
                        self.name, proc.pid, proc.returncode, up_for, delay)
            if self._stopping.wait(delay):
                return
            attempt += 1
            self.restarts += 1
            try:
                self._spawn_and_wait()
                self.error = None
                log.info("component %s restarted (pid %s, restart %d)", self.name, self.proc.pid, self.restarts)
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("component %s: restart failed: %s", self.name, self.error)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; the watcher does not restart it."""
        self._stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.state = "stopped"

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    # ------------------------------------------------------------------ health
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.state == "up"

    def info(self) -> dict[str, Any]:
        """pid, state, restarts, uptime (s), last exit code, error: one row of ``/health``'s processes."""
        up = self.alive()
        return {"pid": self.pid, "state": self.state if up or self.state != "up" else "down",
                "restarts": self.restarts, "last_exit": self.last_exit, "error": self.error,
                "uptime_s": round(time.monotonic() - self.started_at, 1) if up and self.started_at else 0.0}


__all__ = ["Supervised", "BACKOFF_S"]

"""The export workers as a process of their own: the export jobs of one directory, run and resumed.

``spark serve`` starts it with ``python -m spark_research.export.service`` and watches it
(:mod:`spark_research.platform.supervisor`): a million-row CSV or a PDF report then never
shares an interpreter (and its GIL) with Panel's rendering or the web server. The web process
serves ``/export/*`` and the export center through a
:class:`~spark_research.export.jobs.RemoteExportManager` on the same directory: it validates,
writes a queued job record and wakes this process, which claims and runs the job. Killed, this
process is restarted and resumes what it was running (each job starts over, its partial file
never visible, up to :data:`~spark_research.export.jobs.MAX_ATTEMPTS` attempts) and runs what
was queued meanwhile. SIGTERM stops it cleanly: running exports stop before their next batch
and stay queued for the next start.

Its face, on ``127.0.0.1:<port>`` (the port is written to ``--state-file`` once it listens):

``GET /health``    pid, uptime, the directory, exports running and queued here
``GET /metrics``   this process's export metrics, Prometheus text: the families of
                   :data:`OWNED_METRICS`, which the web server's ``/metrics`` relays (it records
                   ``export_requests_total`` itself), so Prometheus scrapes every series once
``POST /wake``     look for newly queued jobs now (202; the directory is also looked at every
                   ``--poll`` seconds, so a lost wake-up costs at most that)

Example::

    python -m spark_research.export.service --root var/exports --port 8791 --state-file var/run/exports.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spark_research import metrics
from spark_research.export.jobs import FORMATS, ExportManager

log = logging.getLogger("spark_research.export")

#: Families of metrics this process owns (the web server relays exactly these): the run path.
#: ``export_requests_total`` is the web process's (:class:`~spark_research.export.jobs.RemoteExportManager`).
OWNED_METRICS = ("export_latency_ms", "export_bytes", "export_concurrent_running", "export_fail",
                 "export_success_rate")
#: ``reason`` labels of ``export_fail_total`` (primed at zero at start).
FAIL_REASONS = ("invalid_params", "source_error", "render_error", "io_error", "internal", "interrupted")


def prime_metrics() -> None:
    """Zero-valued series of the failure counter, so the first scrape shows them (a counter that
    appears only at its first increment makes ``increase()`` miss that increment).

    Example::

        >>> prime_metrics()
        >>> metrics.EXPORT_FAIL.labels(reason="interrupted", format="pdf")._value.get() >= 0
        True
    """
    for fmt in FORMATS:
        for reason in FAIL_REASONS:
            metrics.EXPORT_FAIL.labels(reason=reason, format=fmt)
    metrics.EXPORT_CONCURRENT_RUNNING.inc(0)


class ExportService:
    """An :class:`ExportManager` that picks up the jobs others queue, and its HTTP face.

    Example::

        >>> svc = ExportService(tempfile.mkdtemp()).start()   # doctest: +SKIP
        >>> svc.health()["running"]                           # doctest: +SKIP
        0
        >>> svc.stop()                                        # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], *, port: int = 0, workers: int = 2, poll_s: float = 2.0,
                 cleanup_every_s: float = 3600.0):
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
        self.t0 = time.monotonic()
        self.root = Path(root)
        self.workers, self.poll_s, self.cleanup_every_s = workers, poll_s, cleanup_every_s
        self._port = port
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.manager: ExportManager | None = None
        self.server: ThreadingHTTPServer | None = None
        self._picker: threading.Thread | None = None

    def start(self) -> "ExportService":
        prime_metrics()
        # record_requests=False: export_requests_total is counted by the process that took the request
        self.manager = ExportManager(self.root, workers=self.workers, resume=False, record_requests=False)
        self.manager.cleanup()
        resumed = self.manager.pick_up()  # interrupted jobs of the last run, and jobs queued while it was down
        if resumed:
            log.info("export worker: %d export(s) queued at start", len(resumed))
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="export-http", daemon=True).start()
        self._picker = threading.Thread(target=self._pick_loop, name="export-pick-up", daemon=True)
        self._picker.start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def wake(self) -> None:
        """Look for newly queued jobs now (``POST /wake``)."""
        self._wake.set()

    def _pick_loop(self) -> None:
        next_cleanup = time.monotonic() + self.cleanup_every_s
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.manager.pick_up()
                if time.monotonic() >= next_cleanup:
                    self.manager.cleanup()
                    next_cleanup = time.monotonic() + self.cleanup_every_s
            except Exception:  # a bad record must not stop the worker picking up the next ones
                log.exception("export worker: picking up queued exports failed")

    def health(self) -> dict[str, Any]:
        """pid, uptime (s), the directory, workers, and the exports running and queued here."""
        counts = self.manager.running_here() if self.manager is not None else {"running": 0, "queued": 0}
        return {"pid": os.getpid(), "uptime_s": round(time.monotonic() - self.t0, 2), "root": str(self.root),
                "workers": self.workers, **counts}

    def stop(self) -> None:
        """Stop picking up, stop the running exports (resumable) and the HTTP face."""
        self._stop.set()
        self._wake.set()
        if self._picker is not None:
            self._picker.join(timeout=10)
        if self.manager is not None:
            self.manager.suspend()
        if self.server is not None:
            self.server.shutdown()


def _handler(service: ExportService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:  # no line per request on stderr
            return

        def _json(self, body: Any, code: int = 200) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path == "/health":
                    self._json(service.health())
                elif path == "/metrics":
                    body, ctype = metrics.render()
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json({"error": f"no route {path!r}"}, 404)
            except (BrokenPipeError, ConnectionResetError):
                return

        def do_POST(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path == "/wake":
                    service.wake()
                    self._json({"woken": True}, 202)
                else:
                    self._json({"error": f"no route {path!r}"}, 404)
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_research.export.service", description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="the export directory (spark serve: <var>/exports)")
    p.add_argument("--port", type=int, default=0, help="this process's HTTP port (0: any free one)")
    p.add_argument("--state-file", required=True, help="JSON file written with the pid and port once listening")
    p.add_argument("--workers", type=int, default=2, help="exports run at once")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between looks for queued jobs without a wake-up")
    p.add_argument("--cleanup-every", type=float, default=3600.0,
                   help="seconds between removals of finished exports older than SPARK_EXPORT_MAX_AGE_S")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.poll <= 0:
        p.error(f"--poll must be > 0, got {args.poll}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The supervisor stops this process with SIGTERM; a terminal's Ctrl-C is left to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get("SPARK_SUPERVISOR_PID"):
        from spark_research._lifecycle import die_with_parent

        die_with_parent(int(os.environ["SPARK_SUPERVISOR_PID"]))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    service = ExportService(args.root, port=args.port, workers=args.workers, poll_s=args.poll,
                            cleanup_every_s=args.cleanup_every).start()
    from spark_research._lifecycle import write_json_atomic

    write_json_atomic(args.state_file, {"port": service.port, **service.health()})
    done.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

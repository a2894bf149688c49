"""Run the platform until SIGINT/SIGTERM: components, web server, orderly shutdown.

Example::

    >>> from spark_research.platform.components import ServeConfig
    >>> run(ServeConfig(port=5006))   # doctest: +SKIP  (blocks until Ctrl-C)
"""
from __future__ import annotations

import logging
import logging.handlers
import signal
import sys
import threading
import time
from pathlib import Path

from spark_research.platform import runtime
from spark_research.platform.components import Platform, ServeConfig
from spark_research.platform.web import banner, build_server, discover_apps, quiet_closed_websockets

log = logging.getLogger("spark_research.platform")


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup_logging(var_dir: Path) -> Path:
    """A quiet console, everything in ``var/log/serve.log``; returns the log file's path.

    The console shows warnings and errors of every library, and the platform's own progress
    (one line per component as it comes up). Everything at INFO and above, Dask's and
    Tornado's chatter included, goes to the rotating log file.
    """
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "serve.log"
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=20 * 2**20, backupCount=3)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(console)
    root.setLevel(logging.INFO)
    progress = logging.StreamHandler(sys.stdout)  # the platform's own INFO lines, plainly
    progress.setLevel(logging.INFO)
    progress.addFilter(_BelowWarning())
    progress.setFormatter(logging.Formatter("spark serve: %(message)s"))
    log.addHandler(progress)
    log.setLevel(logging.INFO)
    # Dask configures its loggers at import with a handler of its own: route them to the file only.
    for name in ("distributed", "bokeh", "tornado"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
    # one line per request, 5xx at ERROR (a 503 while starting is expected): the file, not the console
    access = logging.getLogger("tornado.access")
    access.propagate = False
    access.addHandler(file_handler)
    # The demo stream injects malformed frames on purpose; the stream monitor counts them.
    logging.getLogger("spark_research.streams.ingest").setLevel(logging.ERROR)
    return path


def run(config: ServeConfig) -> int:
    """Start everything, print the URLs, serve until a signal, stop everything; exit code."""
    log_path = setup_logging(config.var_dir)
    t0 = time.monotonic()
    platform = Platform(config)
    runtime.register(platform)
    apps = discover_apps()
    server = None
    stopping: list[int] = []
    # Ctrl-C in a terminal reaches the whole process group, Dask's worker processes included.
    # Ignored while they are spawned, SIGINT stays ignored in them (an ignored signal is inherited),
    # so they are stopped in order by the cluster instead of dying with a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    try:
        # The web server first: the sign-in page and the index answer while the components start
        # behind it (app pages answer 503 until their modules are imported: platform._auth).
        platform.start_exports_now()  # the export routes need the manager
        server = build_server(platform, apps, host=config.host, port=config.port)
        # pn.serve installs a SIGINT handler of its own; the Dask workers spawned next must inherit
        # SIG_IGN (see above), so it goes until arm_signals puts ours in place
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.start()
        loop = server.io_loop
        loop.asyncio_loop.set_exception_handler(quiet_closed_websockets)

        def stop(signum, _frame) -> None:
            log.info("%s received, stopping", signal.Signals(signum).name)
            loop.asyncio_loop.call_soon_threadsafe(loop.stop)

        def arm_signals() -> None:  # on the main thread (the loop's), once the Dask workers are spawned
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
            if stopping:  # a SIGTERM that came while starting
                stop(stopping[0], None)

        def start_components() -> None:
            try:
                platform.start()
            except Exception:  # reported per component by /health; the web server keeps serving
                log.exception("starting the components failed")
            finally:
                platform.cluster_spawned.wait(60)
                loop.add_callback(arm_signals)

        starter = threading.Thread(target=start_components, name="platform-start", daemon=True)
        print(banner(config.host, config.port, apps,
                     f"http://127.0.0.1:{config.prom_port}" if config.prometheus else None), flush=True)
        print(f"  logs      {log_path}  (Dask, Tornado and the components at INFO; warnings also here)\n",
              flush=True)
        log.info("web server listening after %.2fs", time.monotonic() - t0)
        starter.start()
        loop.start()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.stop()
        platform.stop()
        runtime.register(None)
        print("spark serve: stopped", flush=True)
    return 0

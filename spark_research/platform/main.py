"""Run the platform until SIGINT/SIGTERM: components, web server, orderly shutdown.

Example::

    >>> from spark_research.platform.components import ServeConfig
    >>> run(ServeConfig(port=5006))   # doctest: +SKIP  (blocks until Ctrl-C)
"""
from __future__ import annotations

import logging
import signal
import sys
import time

from spark_research.platform import runtime
from spark_research.platform.components import Platform, ServeConfig
from spark_research.platform.web import banner, build_server, discover_apps, quiet_closed_websockets

log = logging.getLogger("spark_research.platform")


def run(config: ServeConfig) -> int:
    """Start everything, print the URLs, serve until a signal, stop everything; exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO)
    # The demo stream injects malformed frames on purpose; the stream monitor counts them.
    logging.getLogger("spark_research.streams.ingest").setLevel(logging.ERROR)
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
        platform.start()
        server = build_server(platform, apps, host=config.host, port=config.port)
        server.start()
        loop = server.io_loop
        loop.asyncio_loop.set_exception_handler(quiet_closed_websockets)

        def stop(signum, _frame) -> None:
            log.info("spark serve: %s received, stopping", signal.Signals(signum).name)
            loop.asyncio_loop.call_soon_threadsafe(loop.stop)

        platform.cluster_spawned.wait(60)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if stopping:  # a SIGTERM that came while starting
            stop(stopping[0], None)
        print(banner(config.host, config.port, apps,
                     f"http://127.0.0.1:{config.prom_port}" if config.prometheus else None), flush=True)
        log.info("web server listening after %.2fs", time.monotonic() - t0)
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

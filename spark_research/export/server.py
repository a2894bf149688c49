"""The export companion process: the export endpoints and ``/metrics`` on one Tornado server.

``spark export serve --port 8790`` runs it. Old exports are cleaned by age at start and then
every ``cleanup_every_s`` seconds.

Example::

    >>> serve(port=8790)   # doctest: +SKIP  (blocks; Ctrl-C stops it)
"""
from __future__ import annotations

import signal

from spark_research.config import settings
from spark_research.export.handlers import make_app
from spark_research.export.jobs import ExportManager


def serve(port: int = 8790, host: str | None = None, root: str | None = None, max_per_user: int | None = None,
          workers: int = 2, cleanup_every_s: float = 3600.0) -> None:
    """Serve the export endpoints on ``host:port`` until SIGTERM/SIGINT."""
    from tornado.ioloop import IOLoop, PeriodicCallback

    host = host or settings().host
    manager = ExportManager(root, max_per_user=max_per_user, workers=workers)
    manager.cleanup()
    app = make_app(manager)
    server = app.listen(port, address=host)
    loop = IOLoop.current()
    PeriodicCallback(manager.cleanup, cleanup_every_s * 1000).start()

    def stop(*_: object) -> None:
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"spark export: serving http://{host}:{port}/export/ (exports in {manager.root})", flush=True)
    try:
        loop.start()
    finally:
        server.stop()
        manager.close(wait=False)

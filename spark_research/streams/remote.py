"""The ingest process seen from another process: what the stream monitor and the live session use.

:class:`RemoteStream` has the parts of :class:`~spark_research.streams.pipeline.StreamPipeline`
they read: ``snapshot()`` (over HTTP, shared by every browser session for ``cache_s``),
``exchange.ws_url`` / ``exchange.rest_url``, ``venues`` (``{venue: [symbols]}`` of its multi-venue
ingest), and ``on_bar(callback)``, fed by the ingest
process's bar channel (``GET /bars``, one JSON line per bar) on a thread of its own that
reconnects with backoff and asks for the bars it missed.

Example::

    >>> stream = RemoteStream("http://127.0.0.1:8711")     # doctest: +SKIP
    >>> stream.snapshot()["ingest"]["last_id"]             # doctest: +SKIP
    48213
"""
from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace
from typing import Callable

from spark_research.streams.bars import Bar

log = logging.getLogger(__name__)


class RemoteStream:
    """A stream pipeline running in another process (see the module docstring)."""

    def __init__(self, base_url: str, *, cache_s: float = 0.1, timeout: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.cache_s, self.timeout = cache_s, timeout
        self._snap: tuple[float, dict] | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Bar], None]] = []
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self.channel_reconnects = 0
        self.last_bar_us = 0
        info = self.health()
        self.symbol = info["symbol"]
        self.venues: dict[str, list[str]] = info.get("venues", {})
        self.exchange = SimpleNamespace(ws_url=info["ws_url"], rest_url=info["rest_url"])

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=self.timeout) as r:
            return json.loads(r.read())

    def health(self) -> dict:
        """The ingest process's ``/health`` (pid, uptime, URLs, archive progress)."""
        return self._get("/health")

    def snapshot(self) -> dict:
        """Ingest status and recent gaps, every venue's row and the consolidated top of book; while the
        process is away, the last one with every stream marked disconnected."""
        with self._lock:
            if self._snap is not None and time.monotonic() - self._snap[0] < self.cache_s:
                return self._snap[1]
            try:
                snap = self._get("/snapshot")
            except OSError:
                if self._snap is None:
                    raise
                snap = json.loads(json.dumps(self._snap[1]))
                snap["time"] = time.time()
                snap["ingest"]["state"] = {k: "disconnected" for k in snap["ingest"].get("state", {})}
                for row in snap.get("venues", []):
                    row["state"] = {k: "disconnected" for k in row.get("state", {})}
                    row["connected"] = False
                for c in snap.get("consolidated", []):  # no book is live while nothing answers
                    c.update(best_bid=None, best_ask=None, crossed=False, spread=None,
                             venues=[{**v, "stale": True} for v in c.get("venues", [])])
            self._snap = (time.monotonic(), snap)
            return snap

    def on_bar(self, callback: Callable[[Bar], None]) -> None:
        """Call ``callback(bar)`` for every bar the ingest closes (from a channel thread)."""
        self._callbacks.append(callback)
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_channel, name="bar-channel", daemon=True)
            self._reader.start()

    def _read_channel(self) -> None:
        backoff = 0.2
        url = urllib.parse.urlsplit(self.base_url)
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5.0)
            try:
                conn.request("GET", f"/bars?after_us={self.last_bar_us}")
                resp = conn.getresponse()
                backoff = 0.2
                while not self._stop.is_set():
                    line = resp.readline()
                    if not line:
                        break  # the ingest process went away
                    if line == b"\n":
                        continue  # heartbeat
                    bar = Bar(**json.loads(line))
                    if bar.interval == "1s":
                        self.last_bar_us = max(self.last_bar_us, bar.start_us)
                    for cb in list(self._callbacks):
                        try:
                            cb(bar)
                        except Exception:  # one consumer's bug must not stop the channel for the others
                            log.exception("bar callback %r failed", cb)
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                conn.close()
            if self._stop.wait(backoff):
                return
            self.channel_reconnects += 1
            backoff = min(backoff * 2, 2.0)

    def stop(self) -> None:
        """Stop reading the bar channel (the ingest process is stopped by its supervisor)."""
        self._stop.set()


__all__ = ["RemoteStream"]

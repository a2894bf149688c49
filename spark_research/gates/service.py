"""The paper/live session and its gates as a process of their own.

``spark serve`` starts it with ``python -m spark_research.gates.service`` and watches it
(:mod:`spark_research.platform.supervisor`). It runs

- the seeded demo desk (:func:`~spark_research.gates.demo.run_demo`) once per ``--run-id``,
  its drift frames written to ``<var>/gates/demo/`` for the gate control app;
- the live :class:`~spark_research.gates.session.PaperLiveSession`: the strategy on the ingest
  process's 1 s bars (its bar channel, :class:`~spark_research.streams.remote.RemoteStream`),
  its live orders gated, checked by the pre-trade risk engine (``risk.yml``) and sent to the
  replay exchange's order entry.

Gates live in the audit log (SQLite, shared with the web server's gate control app): this
process adopts the app's manual decisions within ``SYNC_S`` (:meth:`GateBook.sync`), the app
adopts this process's transitions the same way. Killed, the process is started again and
continues where it stopped: gates from the audit log, fills from its fills file (none lost,
none written twice), the engine's cash, position and order numbers from those fills, and the
bars it had already traded on (``<var>/run/gates-progress.json``) only warm the strategy up,
so no order is sent twice (a replayed order keeps its client order id; the venue finds it).

A model strategy (``--strategy model:ID``) trades its model's predictions, computed on each live
bar with the features' live path; a :class:`~spark_research.models.monitor.ModelMonitor` of the
same model watches those bars too (``model_predictions_total``, ``model_inference_latency_ms``,
feature and prediction drift).

Its face on ``127.0.0.1:<port>``: ``GET /health`` (pid, strategy, gates, bars, fills, the model's
predictions) and ``GET /metrics`` (the gate families, relayed by the web server's ``/metrics``:
:data:`OWNED_METRICS`; the model families, which the web server writes too: :data:`SHARED_METRICS`).

Example::

    python -m spark_research.gates.service --ingest-url http://127.0.0.1:8711 --symbol BTCUSDT \\
        --state-file var/run/gates.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spark_research import metrics
from spark_research._lifecycle import write_json_atomic as _write_json

log = logging.getLogger(__name__)

#: Families of metrics this process owns (the web server relays exactly these).
OWNED_METRICS = ("gate_", "drift_", "paper_live_", "risk_", "portfolio_")
#: Families this process and the web server both write (its model monitor app and start-up exercise
#: watch models too): the web server adds this process's series (the live model's) to its own.
SHARED_METRICS = ("model_", "feature_drift_")
#: How often the book adopts decisions other processes wrote to the audit log (seconds).
SYNC_S = 0.2


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def demo_drift_path(var_dir: Path, gate: str) -> Path:
    """Where the demo desk's drift frame of ``gate`` (``strategy/symbol``) is kept."""
    return Path(var_dir) / "gates" / "demo" / f"{gate.replace('/', '__')}.parquet"


def live_session(book, stream, symbol: str, strategy: Any = "sma_cross", params: dict[str, Any] | None = None,
                 *, risk=None):
    """A paper engine running ``strategy`` on ``symbol``, its live orders sent to the stream's exchange
    order entry (:class:`~spark_research.gates.venue.ExchangeVenue` on ``stream.exchange.rest_url``),
    gated in ``book`` with :data:`~spark_research.gates.demo.LIVE_THRESHOLDS` and, with ``risk`` (a
    :class:`~spark_research.risk.engine.RiskEngine`), checked by it before it reaches the venue. Feed it bars yourself
    (``stream.on_bar(stream_bar_callback(session, "1s", background=True))``), as :class:`GatesService` does.
    """
    from spark_research.gates.demo import LIVE_THRESHOLDS
    from spark_research.gates.session import PaperLiveSession
    from spark_research.gates.venue import ExchangeVenue

    venue = ExchangeVenue(stream.exchange.rest_url, name="replay")
    if risk is not None:
        from spark_research.risk.venue import RiskGuardedVenue

        venue = RiskGuardedVenue(venue, risk)  # an order reaches the venue only through the risk engine
    return PaperLiveSession.create(strategy, symbol, book, venue, params=params, thresholds=LIVE_THRESHOLDS)


def model_monitor(strategy_cls: Any) -> Any:
    """A :class:`~spark_research.models.monitor.ModelMonitor` of the model behind a model strategy class
    (``model:ID``), or None for any other strategy."""
    if not getattr(strategy_cls, "model_id", ""):
        return None
    from spark_research.models.monitor import ModelMonitor

    return ModelMonitor(strategy_cls.model())


class GatesService:
    """The demo desk and the live gated session of one process (see the module docstring)."""

    def __init__(self, *, ingest_url: str, symbol: str, strategy: str, params: dict[str, Any] | None,
                 var_dir: Path, run_id: str, demo_bars: int = 60):
        self.ingest_url, self.symbol = ingest_url, symbol
        self.strategy, self.params = strategy, params
        self.var_dir, self.run_id, self.demo_bars = Path(var_dir), run_id, demo_bars
        self.progress_file = self.var_dir / "run" / "gates-progress.json"
        self.t0 = time.monotonic()
        self.book = self.session = self.stream = self.risk = None
        self.monitor = None  #: the live model's ModelMonitor when the strategy is a model strategy
        self.bars = 0
        self._stop = threading.Event()
        self._rows: queue.SimpleQueue = queue.SimpleQueue()

    def start(self) -> "GatesService":
        from spark_research.gates.audit import AuditLog
        from spark_research.gates.gate import GateBook

        self.book = GateBook.from_audit(AuditLog(self.var_dir / "audit" / "gates.db"))  # the app's log too
        self._run_demo_once()
        self._start_live()
        threading.Thread(target=self._sync_loop, name="gate-sync", daemon=True).start()
        return self

    # ------------------------------------------------------------------ demo desk
    def _run_demo_once(self) -> None:
        marker = self.var_dir / "gates" / "demo" / "run.json"
        if self.demo_bars <= 0 or _read_json(marker).get("run_id") == self.run_id:
            return  # a restart within the same spark serve: the demo's entries are in the log already
        from spark_research.gates.demo import run_demo

        for name, session in run_demo(self.book, n_bars=self.demo_bars).items():
            path = demo_drift_path(self.var_dir, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            session.drift_frame().to_parquet(tmp, index=False)
            os.replace(tmp, path)
        _write_json(marker, {"run_id": self.run_id})

    # ------------------------------------------------------------------ live session
    def _start_live(self) -> None:
        import pandas as pd

        from spark_research.streams.remote import RemoteStream

        from spark_research.risk.engine import RiskEngine

        self.stream = RemoteStream(self.ingest_url)
        # limits from risk.yml (SPARK_RISK_CONFIG), state, day counters and audit in <var>/risk/: a restart
        # keeps today's realised loss and the trading states (spark risk status|halt|resume act on them)
        self.risk = RiskEngine.from_config(root=self.var_dir / "risk")
        self.session = live_session(self.book, self.stream, self.symbol, self.strategy, self.params, risk=self.risk)
        self.monitor = model_monitor(self.session.engine.strategy_cls)
        if self.monitor is not None:
            self._model_health = {"model_id": self.monitor.model_id, "bars": 0, "predictions": 0,
                                  "latency_p95_ms": None, "drifted": False}
        from spark_research.risk.engine import CHECKS

        for check in CHECKS:  # zero-valued series: the first denial of a kind is not missed by increase()
            metrics.RISK_DENIALS.labels(check=check, strategy=self.session.engine.label)
        fills_path = self.var_dir / "gates" / "fills" / f"{self.session.engine.label}_{self.symbol}.parquet"
        progress = _read_json(self.progress_file)
        self.resume_after_ns = 0
        if progress.get("run_id") == self.run_id:  # restarted: carry on from what was kept
            if fills_path.exists():
                self.session.resume(pd.read_parquet(fills_path), progress.get("orders_placed", 0))
            self.resume_after_ns = int(progress.get("last_bar_ns", 0))
        self.session.record_fills(fills_path.parent)
        threading.Thread(target=self._work, name="live-session", daemon=True).start()
        self.stream.on_bar(self._enqueue)

    def _enqueue(self, bar: Any) -> None:  # on the bar channel's thread: never blocks on the venue
        if bar.interval == "1s" and bar.symbol == self.symbol:
            self._rows.put(bar.as_row())

    def _work(self) -> None:
        from spark_research.gates.paper import bar_timestamp_ns

        while not self._stop.is_set():
            row = self._rows.get()
            try:
                ts = bar_timestamp_ns(row["timestamp"])
                if self.session.engine.bars_seen and ts <= self.session.engine._ts[-1]:
                    continue  # the channel repeats kept bars after a reconnect
                self.risk.on_bar(self.symbol, float(row["close"]), ts)  # marks the book, VaR, the day's loss
                self._watch_model(row)
                self.risk.follow_gates(self.book)  # a CLOSED gate: its strategy at least REDUCING
                if ts <= self.resume_after_ns:
                    self.session.engine.warm(row)  # traded on before the restart: history only
                else:
                    self.session.on_bar(row)
                self.bars += 1
                _write_json(self.progress_file, {"run_id": self.run_id, "last_bar_ns": max(ts, self.resume_after_ns),
                                                 "orders_placed": self.session.engine.orders_placed})
            except Exception:  # one bad bar must not stop the session
                log.exception("live session: bar %s failed", row.get("timestamp"))

    def _watch_model(self, row: dict[str, Any]) -> None:
        if self.monitor is None:
            return
        m = self.monitor
        try:
            m.update(row)
            # read here, on the bars' thread: /health must not iterate the monitor's windows as they move
            self._model_health = {"model_id": m.model_id, "bars": m.bars, "predictions": m.predictions,
                                  "latency_p95_ms": m.latency_quantile(0.95) if m.predictions else None,
                                  "drifted": m.drifted}
        except Exception:  # watching the model must not stop it trading
            log.exception("model monitor: bar %s failed", row.get("timestamp"))

    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_S):
            try:
                self.book.sync()
            except Exception:
                log.exception("gate book sync failed")

    # ------------------------------------------------------------------ face
    def health(self) -> dict[str, Any]:
        s = self.session
        out = {"pid": os.getpid(), "uptime_s": round(time.monotonic() - self.t0, 1),
               "strategy": s.engine.label if s is not None else self.strategy,
               "gates": {g.name: g.state.name for g in self.book} if self.book is not None else {},
               "live_gate": s.gate.name if s is not None else None, "bars": self.bars,
               "orders_placed": s.engine.orders_placed if s else 0,
               "paper_fills": len(s.paper_fills) if s else 0, "live_fills": len(s.live_fills) if s else 0,
               "resumed_after_ns": getattr(self, "resume_after_ns", 0)}
        if self.monitor is not None:
            out["model"] = dict(self._model_health)
        return out

    def stop(self) -> None:
        self._stop.set()
        if self.stream is not None:
            self.stream.stop()
        audit = getattr(self.book, "audit", None)
        if audit is not None:
            audit.close()


def _handler(service: GatesService):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.startswith("/metrics"):
                body, ctype = metrics.render()
            elif self.path.startswith("/health"):
                body, ctype = json.dumps(service.health()).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_research.gates.service")
    parser.add_argument("--ingest-url", required=True, help="the ingest process's http://127.0.0.1:PORT")
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--strategy", default="sma_cross", help="any name the strategy resolver takes")
    parser.add_argument("--params", default="", help="the strategy's parameters as JSON (empty: its defaults)")
    parser.add_argument("--var", required=True, help="the platform's var directory")
    parser.add_argument("--run-id", required=True, help="spark serve's run: a restart with the same id resumes")
    parser.add_argument("--demo-bars", type=int, default=60)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if "SPARK_SUPERVISOR_PID" in os.environ:
        from spark_research._lifecycle import die_with_parent

        die_with_parent(int(os.environ["SPARK_SUPERVISOR_PID"]))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    service = GatesService(ingest_url=args.ingest_url, symbol=args.symbol, strategy=args.strategy,
                           params=json.loads(args.params) if args.params else None, var_dir=Path(args.var),
                           run_id=args.run_id, demo_bars=args.demo_bars).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="gates-http", daemon=True).start()
    _write_json(Path(args.state_file), {"pid": os.getpid(), "port": server.server_address[1],
                                        "live_gate": service.session.gate.name})
    stopped.wait()
    server.shutdown()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

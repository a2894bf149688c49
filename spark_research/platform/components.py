"""The platform's components, started together and stopped together.

==================  ===================================================================
``streams``         embedded replay exchange (WebSocket on 127.0.0.1) + ingest client
``archive``         the live 1 s bars written to a Parquet store every few seconds
``gates``           the gate book over the audit log, the seeded demo desk, and a paper
                    engine trading the live stream beside live orders on the replay exchange
``exports``         the export manager behind ``/export/*`` and the export center
``optimizer``       the Dask cluster (LocalCluster, or ``SPARK_DASK_SCHEDULER``) and its scheduler
``prometheus``      optional local Prometheus scraping this process (``--prometheus``)
==================  ===================================================================

Components start on background threads so the web server answers at once; ``/health``
reports each one as ``starting``, ``up``, ``down`` or ``failed`` (with the error). Once they are
up, :meth:`Platform.exercise` runs one small backtest, sweep and export so every metric of
``SPEC.md`` has data in the first scrape.

Example::

    >>> p = Platform(ServeConfig(port=0, n_workers=1))   # doctest: +SKIP
    >>> p.start(); p.wait_ready(30); p.health()["status"]  # doctest: +SKIP
    'ok'
    >>> p.stop()                                          # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spark_research import metrics
from spark_research.config import settings

log = logging.getLogger("spark_research.platform")

#: Replay faults of the demo stream: a skipped message (a sequence gap, backfilled over REST), a
#: duplicate and a malformed frame now and then, so the stream monitor shows them handled.
DEMO_FAULTS = "skip_every=400,duplicate_every=900,malformed_every=1500"
#: How the replay exchange executes the live session's orders, per stream symbol
#: (``OrderConfig.parse`` form; ``SPARK_STREAM_ORDERS`` wins): the calm venue of the offline demo
#: desk, and a drifting one whose slippage (30 bps) breaches ``gates.demo.LIVE_THRESHOLDS``, so its
#: gate closes.
DEMO_ORDERS = {
    "BTCUSDT": "latency_ms=80,latency_jitter_ms=40,slippage_bps=3,slippage_std_bps=1.5,partial_fill_prob=0.2",
    "ETHUSDT": "latency_ms=80,latency_jitter_ms=40,slippage_bps=30,slippage_std_bps=10,partial_fill_prob=0.3,"
               "reject_prob=0.05",
}
#: Components in start order (``prometheus`` only with ``ServeConfig.prometheus``).
COMPONENTS = ("streams", "archive", "gates", "exports", "optimizer", "prometheus")


@dataclass(frozen=True)
class ServeConfig:
    """What ``spark serve`` runs and where. Every port but ``port`` is derived or picked free."""

    host: str = "127.0.0.1"  #: bind address of the web server (``SPARK_HOST``)
    port: int = 5006  #: the Panel/Tornado server: apps, /export, /metrics, /health (``SPARK_PORT``)
    prometheus: bool = False  #: also run the local Prometheus with the project's rules
    prometheus_port: int | None = None  #: default ``port + 84`` (5090 for 5006)
    dask_scheduler: str | None = None  #: ``tcp://host:8786``; None: a LocalCluster of ``n_workers``
    n_workers: int = 2
    #: the live stream's symbol (``SPARK_STREAM_SYMBOL``, default BTCUSDT)
    symbol: str = field(default_factory=lambda: os.environ.get("SPARK_STREAM_SYMBOL", "BTCUSDT").upper())
    rate: float | None = None  #: replay messages per second (None: ``SPARK_STREAM_RATE`` or 200)
    #: fault knobs of the replay exchange (``Faults.parse`` form; None: ``SPARK_STREAM_FAULTS`` or
    #: :data:`DEMO_FAULTS`, which show gaps being detected and resynced)
    faults: str | None = None
    #: ``venue:SYM1,SYM2`` specs of the multi-venue ingest beside the demo stream (None:
    #: ``SPARK_STREAM_VENUES``, ``;``-separated, ``""`` for none; else ``served_venues.DEFAULT_VENUES``)
    venues: tuple[str, ...] | None = None
    archive_every_s: float = 5.0
    #: bars of the seeded gate demo desk (``SPARK_GATE_DEMO_BARS`` wins): 60 close the drifting
    #: venue's gate and leave it in probation, in a quarter of the 240-bar default's time
    gate_demo_bars: int = 60
    exercise: bool = True  #: run one backtest, sweep and export at start
    var_dir: Path = field(default_factory=lambda: settings().var_dir)
    #: the live paper/gated session's strategy: any name the resolver takes ("pkg.mod:Class", "file.py:Class")
    strategy: str = "sma_cross"
    #: its parameters (None: the demo's fast 3 / slow 10 for sma_cross, else the strategy's defaults)
    strategy_params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")
        if self.prometheus_port is not None and not 0 < self.prometheus_port <= 65535:
            raise ValueError(f"prometheus_port must be in 1..65535, got {self.prometheus_port!r}")
        if self.n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {self.n_workers!r}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate!r}")

    def check_strategy(self) -> None:
        """Resolve the live strategy and its parameters (an error names what is wrong) before anything starts."""
        from spark_research.backtest.registry import resolve_strategy

        resolve_strategy(self.strategy).resolve(self.live_params)

    @property
    def live_params(self) -> dict[str, Any]:
        """Parameters of the live session's strategy."""
        if self.strategy_params is not None:
            return dict(self.strategy_params)
        return {"fast": 3, "slow": 10} if self.strategy == "sma_cross" else {}

    @property
    def prom_port(self) -> int:
        return self.prometheus_port or self.port + 84


@dataclass
class ComponentState:
    """Lifecycle of one component as ``/health`` shows it."""

    name: str
    state: str = "starting"  #: starting | up | down | failed | disabled
    error: str | None = None
    started_s: float | None = None  #: seconds from platform start to up
    detail: dict[str, Any] = field(default_factory=dict)


class Platform:
    """Every component of ``spark serve`` in one process (see the module docstring)."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.t0 = time.monotonic()
        self.states = {name: ComponentState(name) for name in COMPONENTS}
        if not config.prometheus:
            self.states["prometheus"].state = "disabled"
        self.pipeline = None
        self.ingest = None  #: the supervised ingest process (platform.supervisor.Supervised)
        self._worker_pids: dict[str, int] = {}  # Dask worker address -> pid, for /health (external scheduler)
        #: the Dask scheduler and workers spark serve supervises (none with an external scheduler)
        self.dask_procs: dict[str, Any] = {}
        self.book = None
        self.export_worker = None  #: the supervised export workers' process (export.service)
        self._export_port = 0
        self.gates_proc = None  #: the supervised paper/live session and demo desk (gates.service)
        self.gates_url: str | None = None
        self.exports = None
        self.optimizer = None
        self.prometheus = None
        self.bar_store = None
        self.exercise_report: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._archived_until = 0
        self._imports_done = threading.Event()
        #: set once the Dask cluster's processes are spawned (or that failed): see platform.main
        self.cluster_spawned = threading.Event()
        self._client = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Platform":
        """Start every component; returns once the heavy modules are imported (components keep
        starting on their own threads, ``/health`` shows them coming up)."""
        self.config.var_dir.mkdir(parents=True, exist_ok=True)
        _prime_metrics()
        if self.exports is None:
            self.start_exports_now()
        # The Dask workers are processes: start them first, they boot while this thread imports.
        self._spawn("optimizer", self._start_optimizer)
        # One thread imports the third-party stack: concurrent first imports of numba/narwhals
        # can deadlock. The gate desk (the slowest to build) starts as soon as its modules are in.
        preload(PRELOAD_CORE)
        self._spawn("streams", self._start_streams)
        self._spawn("gates", self._start_gates)
        preload(PRELOAD_REST)
        self._imports_done.set()
        log.info("modules imported after %.2fs", time.monotonic() - self.t0)
        if self.config.prometheus:
            self._spawn("prometheus", self._start_prometheus)
        threading.Thread(target=self._after_start, name="platform-after-start", daemon=True).start()
        return self

    def apps_ready(self) -> bool:
        """True once the heavy modules the apps need are imported (app pages wait for it)."""
        return self._imports_done.is_set()

    def start_exports_now(self) -> None:
        """Open the export client synchronously (the web server's export routes need it) and start the
        export worker process behind it on a thread (a job queued meanwhile runs once it is up)."""
        self.config.var_dir.mkdir(parents=True, exist_ok=True)
        st = self.states["exports"]
        st.detail = self._start_exports()
        self._spawn("exports", self._start_export_worker)

    def _spawn(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        def run() -> None:
            st = self.states[name]
            try:
                detail = fn() or {}
            except Exception as exc:  # a component that fails is reported, the others keep running
                st.state, st.error = "failed", f"{type(exc).__name__}: {exc}"
                log.error("component %s failed to start:\n%s", name, traceback.format_exc())
                return
            if self._stop.is_set():
                return
            st.state, st.started_s, st.detail = "up", round(time.monotonic() - self.t0, 2), detail
            log.info("component %s up after %.2fs", name, st.started_s)

        t = threading.Thread(target=run, name=f"start-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until no component is ``starting`` (True if all ended ``up``/``disabled``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.state != "starting" for s in self.states.values()):
                break
            time.sleep(0.05)
        return all(s.state in ("up", "disabled") for s in self.states.values())

    def stop(self) -> None:
        """Stop everything, newest first; safe to call twice and while components still start."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)  # a component still starting finishes starting, then is stopped
        steps = [("prometheus", self._stop_prometheus), ("archive", self._archive_once),
                 ("streams", self._stop_streams), ("optimizer", self._stop_optimizer),
                 ("exports", self._stop_exports), ("gates", self._stop_gates)]
        for name, fn in steps:
            try:
                fn()
            except Exception:
                log.exception("stopping %s failed", name)
            if self.states[name].state not in ("disabled", "failed"):
                self.states[name].state = "down"

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """Each component's state (live checks where possible) and an overall status."""
        out: dict[str, Any] = {}
        for name, st in self.states.items():
            state, detail = st.state, dict(st.detail)
            if state == "up":
                try:
                    alive, live = self._probe(name)
                except Exception as exc:
                    alive, live = False, {"probe_error": f"{type(exc).__name__}: {exc}"}
                detail.update(live)
                state = "up" if alive else "down"
            out[name] = {"state": state, "up": state == "up", "error": st.error,
                         "started_s": st.started_s, **({"detail": detail} if detail else {})}
        states = {c["state"] for c in out.values()} - {"disabled"}
        if states <= {"up"}:
            overall = "ok"
        elif states & {"down", "failed"}:
            overall = "degraded"
        else:
            overall = "starting"
        return {"status": overall, "pid": os.getpid(), "uptime_s": round(time.monotonic() - self.t0, 2),
                "components": out, "processes": self.processes(), "exercise": self.exercise_report}

    def processes(self) -> dict[str, Any]:
        """Every process of the platform: pid, state, restarts, uptime (``/health``'s ``processes``)."""
        procs: dict[str, Any] = {"web": {"pid": os.getpid(), "state": "up", "restarts": 0,
                                         "uptime_s": round(time.monotonic() - self.t0, 1),
                                         "runs": ["web server and apps", "dask client"]}}
        if self.ingest is not None:
            procs["ingest"] = {**self.ingest.info(), "runs": ["replay exchange", "ingest", "bar channel"]}
            venues = getattr(self.pipeline, "venues", None) or {}
            if venues:
                procs["ingest"]["runs"].append(f"multi-venue ingest ({', '.join(venues)})")
                procs["ingest"]["venues"] = venues
        if self.export_worker is not None:
            procs["exports"] = {**self.export_worker.info(), "runs": ["export workers"]}
        if self.gates_proc is not None:
            procs["gates"] = {**self.gates_proc.info(), "runs": ["paper/live session", "gates", "demo desk"]}
        for name, proc in sorted(self.dask_procs.items()):
            procs[name] = {**proc.info(), "address": proc.ready_info.get("address"),
                           "runs": ["dask scheduler"] if name == "dask-scheduler" else ["dask worker"]}
        if self.optimizer is not None and not self.dask_procs:  # an external cluster: its workers, as seen
            try:
                client = self.optimizer.client
                addrs = sorted(_cached_workers(client))
                new = [a for a in addrs if a not in self._worker_pids]
                if new:  # a worker's pid is asked once (a restarted worker comes back on a new address)
                    self._worker_pids.update(client.run(os.getpid, workers=new, nanny=False))
                for i, addr in enumerate(addrs):
                    procs[f"dask-worker-{i}"] = {"pid": self._worker_pids[addr], "state": "up", "address": addr}
            except Exception as exc:
                procs["dask-workers"] = {"state": "down", "error": f"{type(exc).__name__}: {exc}"}
        return procs

    def _probe(self, name: str) -> tuple[bool, dict[str, Any]]:
        if name == "streams":
            proc = self.ingest.info()
            if proc["state"] != "up":
                return False, {"process": proc}
            snap = self.pipeline.snapshot()
            ing = snap["ingest"]
            return ing["state"].get("trade") == "connected" or ing["state"].get("trade") == "resyncing", {
                "ws_url": self.pipeline.exchange.ws_url, "last_id": ing["last_id"],
                "last_price": ing["last_price"], "connection": ing["state"], "process": proc}
        if name == "archive":
            return not self._stop.is_set(), {"bars_archived_until": self._archived_until,
                                             "channel_reconnects": self.pipeline.channel_reconnects}
        if name == "gates":
            proc = self.gates_proc.info()
            self.book.sync()
            return proc["state"] == "up", {"gates": {g.name: g.snapshot()["state"] for g in self.book},
                                           "process": proc}
        if name == "exports":
            proc = self.export_worker.info() if self.export_worker is not None else {"state": "starting"}
            return proc["state"] == "up", {"root": str(self.exports.root), "process": proc}
        if name == "optimizer":
            client = self.optimizer.client
            workers = len(_cached_workers(client))
            return client.status == "running" and workers > 0, {"workers": workers,
                                                                "scheduler": client.scheduler.address}
        if name == "prometheus":
            return self.prometheus.running(), {"url": self.prometheus.url}
        return True, {}

    # ------------------------------------------------------------------ exports
    def _start_exports(self) -> dict[str, Any]:
        from spark_research.export.jobs import RemoteExportManager
        from spark_research.export.service import OWNED_METRICS as OWNED_BY_EXPORTS

        # fixed for the life of spark serve: a restarted worker answers on the same URLs
        self._export_port = _free_port()
        self.exports = RemoteExportManager(self.config.var_dir / "exports",
                                           wake_url=f"http://127.0.0.1:{self._export_port}/wake")
        metrics.relay(f"http://127.0.0.1:{self._export_port}/metrics", OWNED_BY_EXPORTS)
        return {"root": str(self.exports.root)}

    def _start_export_worker(self) -> dict[str, Any]:
        """The export workers' process (``export.service``): it runs every job the web server queues."""
        import sys

        from spark_research.platform.supervisor import Supervised

        var = self.config.var_dir
        (var / "log").mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "spark_research.export.service", "--root", str(var / "exports"),
                "--port", str(self._export_port), "--state-file", str(var / "run" / "exports.json")]
        self.export_worker = Supervised("exports", argv, state_file=var / "run" / "exports.json",
                                        env={"SPARK_VAR": str(var)}, log_file=var / "log" / "exports.log").start()
        return {"root": str(self.exports.root), "worker_url": f"http://127.0.0.1:{self._export_port}"}

    def _stop_exports(self) -> None:
        if self.exports is not None:
            self.exports.close(wait=False)
        if self.export_worker is not None:
            # SIGTERM: a running export stops between two batches, its partial file is removed and its
            # record says "queued" again, so the next start runs it; a finished file appeared by an
            # atomic rename, never half-written
            self.export_worker.stop()

    # ------------------------------------------------------------------ streams
    def _start_streams(self) -> dict[str, Any]:
        # The stream monitor app watches the process-wide pipeline of views.streams; configure
        # that one (its knobs are SPARK_STREAM_*) so the monitor and the paper engine see one stream.
        # Precedence: spark serve's flags, then SPARK_STREAM_*, then the demo defaults.
        for var, value, default in (("SPARK_STREAM_SYMBOL", self.config.symbol, None),
                                    ("SPARK_STREAM_RATE", self.config.rate, "200"),
                                    ("SPARK_STREAM_FAULTS", self.config.faults, DEMO_FAULTS),
                                    ("SPARK_STREAM_ORDERS", None, DEMO_ORDERS.get(self.config.symbol, ""))):
            if value is not None:
                os.environ[var] = str(value)
            elif default is not None:
                os.environ.setdefault(var, default)
        import sys

        from spark_research.platform.supervisor import Supervised
        from spark_research.streams.remote import RemoteStream
        from spark_research.streams.served_venues import DEFAULT_VENUES, venue_specs
        from spark_research.views.streams import use_pipeline

        # the multi-venue ingest: same precedence (--venue, then SPARK_STREAM_VENUES, then the demo's)
        if self.config.venues is not None:
            os.environ["SPARK_STREAM_VENUES"] = ";".join(self.config.venues)
        os.environ.setdefault("SPARK_STREAM_VENUES", ";".join(DEFAULT_VENUES))
        venues = venue_specs(os.environ["SPARK_STREAM_VENUES"])

        var = self.config.var_dir
        # Ports fixed for the life of spark serve: a restarted ingest answers on the same URLs
        # (the live session's order entry, the web server's relay of its metrics).
        port, exchange_port = _free_port(), _free_port()
        argv = [sys.executable, "-m", "spark_research.streams.service",
                "--symbol", os.environ["SPARK_STREAM_SYMBOL"], "--rate", os.environ["SPARK_STREAM_RATE"],
                "--faults", os.environ.get("SPARK_STREAM_FAULTS", ""), "--orders", os.environ["SPARK_STREAM_ORDERS"],
                "--tape", os.environ.get("SPARK_STREAM_TAPE", "500000"), "--root", str(var / "ingest"),
                "--port", str(port), "--exchange-port", str(exchange_port),
                "--state-file", str(var / "run" / "ingest.json"), *(a for v in venues for a in ("--venue", v))]
        (var / "log").mkdir(parents=True, exist_ok=True)
        self.ingest = Supervised("ingest", argv, state_file=var / "run" / "ingest.json",
                                 log_file=var / "log" / "ingest.log").start()
        self.pipeline = RemoteStream(f"http://127.0.0.1:{port}")
        metrics.relay(f"http://127.0.0.1:{port}/metrics", OWNED_BY_INGEST)
        use_pipeline(self.pipeline)  # the stream monitor app watches the ingest process
        self._spawn("archive", self._start_archive)
        return {"ws_url": self.pipeline.exchange.ws_url, "rest_url": self.pipeline.exchange.rest_url,
                "orders": os.environ["SPARK_STREAM_ORDERS"], "ingest_url": self.pipeline.base_url,
                "venues": self.pipeline.venues}

    def _stop_streams(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.ingest is not None:
            self.ingest.stop()  # SIGTERM: the ingest flushes its journal and archives its last bars

    # ------------------------------------------------------------------ archive
    def _start_archive(self) -> dict[str, Any]:
        from collections import deque

        from spark_research.data import BarStore

        self.bar_store = BarStore(self.config.var_dir / "live_store")
        self._bars_1s: deque = deque(maxlen=600)
        # fed by the ingest process's bar channel (it resumes after the last bar seen, so a restarted
        # ingest neither skips nor repeats a kept bar)
        self.pipeline.on_bar(lambda bar: bar.interval == "1s" and self._bars_1s.append(bar))
        threading.Thread(target=self._archive_loop, name="bar-archive", daemon=True).start()
        return {"store": str(self.bar_store.root)}

    def _archive_loop(self) -> None:
        while not self._stop.wait(self.config.archive_every_s):
            try:
                self._archive_once()
            except Exception:
                log.exception("archiving live bars failed")

    def _archive_once(self) -> int:
        """Write the live 1 s bars closed since the last call to the live Parquet store."""
        if self.pipeline is None or self.bar_store is None:
            return 0
        import pandas as pd

        with self._lock:
            bars = [b for b in list(self._bars_1s) if b.start_us > self._archived_until]
            if not bars:
                return 0
            df = pd.DataFrame([b.as_row() for b in bars])
            written = self.bar_store.write_bars(df, self.config.symbol)
            self._archived_until = max(b.start_us for b in bars)
        return written

    # ------------------------------------------------------------------ gates
    def _start_gates(self) -> dict[str, Any]:
        """The live session and the demo desk in a supervised process; this process keeps a book that
        follows the audit log (the gate control app's), where the two meet."""
        import json
        import sys

        from spark_research.gates.service import OWNED_METRICS as OWNED_BY_GATES
        from spark_research.gates.service import SHARED_METRICS as SHARED_WITH_GATES
        from spark_research.platform.supervisor import Supervised
        from spark_research.views.gates import shared_desk

        deadline = time.monotonic() + 60
        while self.pipeline is None:  # the session trades the ingest's stream
            if self.states["streams"].state == "failed" or time.monotonic() > deadline or self._stop.is_set():
                raise RuntimeError("the live session needs the streams component, which did not come up")
            time.sleep(0.05)
        var = self.config.var_dir
        demo_bars = int(os.environ.get("SPARK_GATE_DEMO_BARS", self.config.gate_demo_bars))
        os.environ["SPARK_GATE_DEMO_BARS"] = "0"  # this process's desk: the audit log and the drift files
        port = _free_port()
        argv = [sys.executable, "-m", "spark_research.gates.service", "--ingest-url", self.pipeline.base_url,
                "--symbol", self.config.symbol, "--strategy", str(self.config.strategy),
                "--params", json.dumps(self.config.live_params), "--var", str(var),
                "--run-id", f"{os.getpid()}-{int(time.time())}", "--demo-bars", str(demo_bars),
                "--port", str(port), "--state-file", str(var / "run" / "gates.json")]
        self.gates_proc = Supervised("gates", argv, state_file=var / "run" / "gates.json",
                                     env={"SPARK_VAR": str(var)}, log_file=var / "log" / "gates.log").start()
        # the live model's series (model:ID) come from the session's process, the model monitor app's from here
        metrics.relay(f"http://127.0.0.1:{port}/metrics", OWNED_BY_GATES, shared=SHARED_WITH_GATES)
        self.gates_url = f"http://127.0.0.1:{port}"
        self.book, _ = shared_desk()  # the gate control app's book
        self.book.sync()
        return {"gates": len(self.book), "live_session": self.gates_proc.ready_info.get("live_gate"),
                "strategy": str(self.config.strategy), "gates_url": self.gates_url}

    def _stop_gates(self) -> None:
        if self.gates_proc is not None:
            self.gates_proc.stop()
        audit = getattr(self.book, "audit", None)
        if audit is not None and hasattr(audit, "close"):
            audit.close()

    # ------------------------------------------------------------------ optimizer
    def _start_optimizer(self) -> dict[str, Any]:
        from distributed import Client

        try:
            address = self.config.dask_scheduler or settings().dask_scheduler or self._start_dask_processes()
            # a restarted scheduler is back within seconds: the client reconnects inside its timeout
            self._client = Client(address, timeout="30s")
        finally:
            self.cluster_spawned.set()
        self._imports_done.wait(120)
        from spark_research.optimizer import Optimizer

        self.optimizer = Optimizer(self._client)
        self._client.wait_for_workers(1, timeout=60)
        threading.Thread(target=self._worker_view_loop, name="dask-worker-view", daemon=True).start()
        return {"scheduler": self._client.scheduler.address, "dashboard": self._client.dashboard_link}

    def _worker_view_loop(self, every_s: float = 1.0) -> None:
        """Refresh the client's view of the workers off the web server's loop (``/health`` reads it)."""
        while not self._stop.wait(every_s):
            try:
                self._client.scheduler_info()
            except Exception:  # the scheduler is restarting: the client reconnects, try again next round
                pass

    def _start_dask_processes(self) -> str:
        """The Dask scheduler and each worker as supervised processes (``optimizer.service``); returns the address."""
        import sys

        from spark_research.optimizer.service import worker_memory_limit
        from spark_research.platform.supervisor import Supervised

        run, logs = self.config.var_dir / "run", self.config.var_dir / "log"
        logs.mkdir(parents=True, exist_ok=True)
        port = _free_port()  # fixed for the life of spark serve: a restarted scheduler is found where it was
        address = f"tcp://127.0.0.1:{port}"
        module = [sys.executable, "-m", "spark_research.optimizer.service"]
        self.dask_procs["dask-scheduler"] = Supervised(
            "dask-scheduler", module + ["scheduler", "--port", str(port), "--state-file", str(run / "dask-scheduler.json")],
            state_file=run / "dask-scheduler.json", log_file=logs / "dask-scheduler.log").start()
        memory = worker_memory_limit(self.config.n_workers)
        workers = [Supervised(f"dask-worker-{i}", module + [
            "worker", "--scheduler", address, "--name", f"w{i}", "--memory-limit", memory,
            "--state-file", str(run / f"dask-worker-{i}.json")],
            state_file=run / f"dask-worker-{i}.json", log_file=logs / f"dask-worker-{i}.log")
            for i in range(self.config.n_workers)]
        threads = [threading.Thread(target=w.start, daemon=True) for w in workers]  # they boot side by side
        for w, t in zip(workers, threads):
            self.dask_procs[w.name] = w
            t.start()
        for t in threads:
            t.join(90)
        return address

    def _stop_optimizer(self) -> None:
        if self.optimizer is not None:
            self.optimizer.close()  # the scheduler; the client is ours, closed below
        if self._client is not None:
            from spark_research.optimizer.cluster import close_client

            close_client(self._client)
        for name in sorted(self.dask_procs, reverse=True):  # workers first, then their scheduler
            self.dask_procs[name].stop()

    # ------------------------------------------------------------------ prometheus
    def _start_prometheus(self) -> dict[str, Any]:
        from spark_research.platform.prometheus import PrometheusProcess

        self.prometheus = PrometheusProcess(
            targets=[f"{_loopback(self.config.host)}:{self.config.port}"], port=self.config.prom_port,
            workdir=self.config.var_dir / "prometheus", rules=True, dask=True).start()
        threading.Thread(target=self._dask_targets_loop, name="prometheus-dask-targets", daemon=True).start()
        self.prometheus.wait_ready(30)
        return {"url": self.prometheus.url}

    def _dask_targets_loop(self, every_s: float = 2.0) -> None:
        """Keep the ``dask`` job's targets file equal to the scheduler's worker list (workers restart on new ports)."""
        from urllib.parse import urlparse

        from spark_research.platform.prometheus import dask_targets, write_sd_targets

        while not self._stop.wait(every_s if self._client is not None else 0.2):
            client, prom = self._client, self.prometheus
            if client is None or prom is None or prom.dask_sd_file is None:
                continue
            try:
                info = client.scheduler_info()
                host = urlparse(info.get("address", "")).hostname or "127.0.0.1"
                write_sd_targets(prom.dask_sd_file, dask_targets(info, host=_loopback(host)))
            except Exception as exc:  # the cluster is starting or stopping: try again next round
                log.debug("dask targets not refreshed: %s", exc)

    def _stop_prometheus(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()

    # ------------------------------------------------------------------ exercise
    def _after_start(self) -> None:
        while pending := [t for t in list(self._threads) if t.is_alive()]:  # the archive starts later
            for t in pending:
                t.join()
        if self.config.exercise and not self._stop.is_set():
            try:
                self.exercise()
            except Exception:
                log.exception("start-up exercise failed")

    def exercise(self, timeout: float = 120.0) -> dict[str, Any]:
        """One small backtest, sweep and CSV export, so every SPEC metric has data."""
        from spark_research.backtest import run_backtest
        from spark_research.data import load_bars
        from spark_research.optimizer import SweepSpec

        report: dict[str, Any] = {}
        bars = load_bars(self.config.symbol).tail(5_000)
        t = time.perf_counter()
        res = run_backtest("sma_cross", bars, {"fast": 10, "slow": 50})
        report["backtest"] = {"trades": int(res.stats["trades"]), "ms": round((time.perf_counter() - t) * 1e3, 1)}
        if self.optimizer is not None:
            spec = SweepSpec(strategy="sma_cross", symbols=[self.config.symbol],
                             values={"fast": [5, 10, 20], "slow": [50, 100]}, user="platform", name="start-up sweep")
            frame = bars.set_index("timestamp").drop(columns="symbol")
            handle = self.optimizer.submit(spec, {self.config.symbol: frame}, persist=False)
            handle.wait(timeout)
            report["sweep"] = {"id": handle.id, "status": str(handle.info().get("status"))}
        report["model"] = self._exercise_model()
        if self.exports is not None:
            job = self.exports.submit("platform", "synthetic_trades", "csv", {"rows": 2_000})
            job = self.exports.wait(job.id, "platform", timeout=timeout)
            report["export"] = {"id": job.id, "state": job.state, "rows": job.rows_done}
        self.exercise_report = report
        return report

    def _exercise_model(self, bars: int = 600) -> dict[str, Any]:
        """The model monitor app's demo model (trained once per process, LightGBM) on ``bars`` replayed bars:
        live features, predictions and drift, so the models' metrics, alerts and dashboard have data."""
        from spark_research.models.monitor import ModelMonitor
        from spark_research.views.model_monitor import demo_model

        model, history, replay = demo_model()
        monitor = ModelMonitor(model, history=history)
        t = time.perf_counter()
        for bar in replay.head(bars).to_dict("records"):
            monitor.update(bar)
        drift = monitor.drift()  # the KS statistics too (PSI is kept current on every bar)
        return {"model": model.model_id, "predictions": monitor.predictions, "ms": round((time.perf_counter() - t) * 1e3, 1),
                "max_psi": round(float(drift["psi"].max()), 4)}


#: Modules imported up front by :func:`preload`: everything third-party, and what streams and gates need...
PRELOAD_CORE = ("numpy", "pandas", "distributed", "panel", "holoviews", "holoviews.plotting.bokeh",
                "spark_research.backtest.engine", "spark_research.data.synthetic", "spark_research.streams.pipeline",
                "spark_research.views.streams", "spark_research.gates.session", "spark_research.gates.demo",
                "spark_research.gates.audit", "spark_research.views.gates")
#: ... then, while those start, the rest (project modules only).
PRELOAD_REST = ("spark_research.optimizer.sweep", "spark_research.optimizer.cluster", "spark_research.views.optimizer",
                "spark_research.views.backtest", "spark_research.export.handlers", "spark_research.export.sources",
                "spark_research.views.research", "spark_research.views.export_center")


def preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in this thread (a missing optional module is skipped)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.warning("preload: %s not found, skipped", name)


#: Metric families the ingest process owns: the web server's /metrics relays them from it.
OWNED_BY_INGEST = ("ws_", "ingest_latency_ms", "stream_channel_", "book_checksum_fail")


def _cached_workers(client) -> dict[str, Any]:
    """The workers as the client last heard of them, without asking the scheduler: ``scheduler_info()``
    is a blocking round trip, and ``/health`` must answer while the scheduler restarts. The
    optimizer's queue refreshes this view as it dispatches steps (and every few seconds)."""
    return dict((getattr(client, "_scheduler_identity", None) or {}).get("workers", {}))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _prime_metrics() -> None:
    """Create the zero-valued series of the failure counters, so a scrape shows them before the
    first failure (Prometheus practice: a counter that appears only on its first increment
    makes ``increase()`` miss that increment)."""
    # the stream's and the exports' failure counters are primed by their own processes, whose
    # families /metrics relays
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        metrics.OPTIMIZER_JOBS.labels(status=status)

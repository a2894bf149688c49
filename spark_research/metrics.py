"""Every Prometheus metric of the platform, defined once.

Names follow ``SPEC.md``. Capability code imports the metric objects from here and never
creates its own, so ``/metrics`` of any process shows one consistent vocabulary and the
dashboards/rules can be checked statically against :data:`ALL`.

Example::

    >>> from spark_research import metrics
    >>> metrics.SIM_FILLS.labels(strategy="SmaCross").inc(3)
    >>> "sim_fills" in metrics.ALL
    True
"""
from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Millisecond buckets: fine resolution under 10 ms (in-process targets are < 1-5 ms) and
# a long tail up to a minute (exports, cold compiles).
_MS_FAST = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
_MS_SLOW = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 10000, 20000, 30000, 60000, 120000)

# --- data -------------------------------------------------------------------------------
DATASET_BYTES = Counter(
    "dataset_bytes", "Bytes written to the Parquet dataset store.", ["kind"]
)

# --- backtest ---------------------------------------------------------------------------
BACKTEST_RUNTIME_MS = Histogram(
    "backtest_runtime_ms", "Wall time of one run_backtest call in milliseconds.", ["strategy"],
    buckets=_MS_SLOW,
)
SIM_FILLS = Counter("sim_fills", "Simulated fills produced by backtests.", ["strategy"])
BACKTEST_GOLDEN_DIFFS = Gauge(
    "backtest_golden_diffs", "Fields differing from the golden files at the last golden check (0 = pass)."
)
BACKTEST_DETERMINISM_DIFFS = Gauge(
    "backtest_determinism_diffs", "Fields differing between two identical seeded runs at the last determinism check."
)

# --- optimizer --------------------------------------------------------------------------
OPTIMIZER_JOBS = Counter("optimizer_jobs", "Sweep jobs by final or entered status.", ["status"])
OPTIMIZER_WORKERS_RUNNING = Gauge("optimizer_workers_running", "Dask workers available to the optimizer.")
OPTIMIZER_QUEUE_DEPTH = Gauge("optimizer_queue_depth", "Steps waiting in the optimizer's queue.")
OPTIMIZER_STEPS_INFLIGHT = Gauge("optimizer_steps_inflight", "Steps submitted to Dask and not yet finished.")
OPTIMIZER_STEP_LATENCY_MS = Histogram(
    "optimizer_step_latency_ms", "Execution time of one sweep step on a worker (ms).", buckets=_MS_SLOW
)
OPTIMIZER_QUEUE_WAIT_MS = Histogram(
    "optimizer_queue_wait_ms", "Time a step waited between enqueue and submission to Dask (ms).", buckets=_MS_FAST
)

# --- streams ----------------------------------------------------------------------------
WS_MSGS = Counter("ws_msgs", "WebSocket messages received.", ["exchange", "stream"])
WS_GAP_MS = Histogram(
    "ws_gap_ms", "Time between consecutive WebSocket messages on one stream (ms).", ["exchange"],
    buckets=_MS_FAST + (10000, 30000),
)
INGEST_LATENCY_MS = Histogram(
    "ingest_latency_ms", "Exchange event time to persisted, per message (ms).", ["exchange"], buckets=_MS_FAST
)
WS_CONN_STATE = Gauge(
    "ws_conn_state", "Connection state: 0 disconnected, 1 connecting, 2 connected, 3 resyncing.", ["exchange", "stream"]
)
WS_SEQ_GAPS = Counter("ws_seq_gaps", "Sequence gaps detected (trade id or depth update id).", ["exchange", "symbol", "kind"])
WS_SEQ_GAPS_OPEN = Gauge("ws_seq_gaps_open", "Sequence gaps detected and not yet resolved by a resync.", ["exchange", "symbol"])
WS_RESYNCS = Counter("ws_resyncs", "Resyncs performed (REST backfill or order book snapshot).", ["exchange", "symbol", "kind"])
WS_MALFORMED = Counter("ws_malformed", "Malformed or invalid messages dropped.", ["exchange", "reason"])
WS_DUPLICATES = Counter("ws_duplicates", "Duplicate messages dropped.", ["exchange", "symbol"])
WS_BUFFER_SHED = Counter("ws_buffer_shed", "Live trades not buffered because the reorder buffer was full "
                         "(REST backfill down); fetched over REST once it is back.", ["exchange", "symbol"])
WS_RECONNECTS = Counter("ws_reconnects", "Reconnect attempts after a dropped or refused connection.", ["exchange"])
BOOK_CHECKSUM_FAIL = Counter("book_checksum_fail", "Order book checksum mismatches: the local book differed from the "
                             "venue's checksum and was resynced.", ["exchange"])
WS_TIME_UNIT_FIXES = Counter("ws_time_unit_fixes", "Venue time fields whose unit (s, ms, us, ns) differed from the expected "
                             "one: detected by magnitude and corrected.", ["exchange", "field"])
# the ingest process's bar channel to the other processes (spark_research.streams.service)
STREAM_CHANNEL_BARS = Counter("stream_channel_bars", "Closed bars published on the ingest's bar channel.")
STREAM_CHANNEL_DROPPED = Counter("stream_channel_dropped", "Bars a slow channel subscriber lost (its bounded "
                                 "queue was full: back-pressure never blocks the ingest).", ["subscriber"])
STREAM_CHANNEL_QUEUE_DEPTH = Gauge("stream_channel_queue_depth", "Bars waiting in a channel subscriber's queue.",
                                   ["subscriber"])

# --- gates ------------------------------------------------------------------------------
DRIFT_PRICE_ABS = Gauge(
    "drift_price_abs", "Absolute paper-vs-live fill price drift of the last fill (price units).", ["strategy", "symbol"]
)
DRIFT_BPS = Gauge("drift_bps", "Rolling mean paper-vs-live fill price drift in basis points.", ["strategy", "symbol"])
PAPER_LIVE_DELTA_PNL = Gauge("paper_live_delta_pnl", "Live PnL minus paper PnL (quote currency).", ["strategy", "symbol"])
GATE_STATE = Gauge("gate_state", "Gate state: 0 OPEN, 1 HALF_OPEN, 2 CLOSED.", ["strategy", "symbol"])
GATE_CLOSE = Counter("gate_close", "Transitions into CLOSED.", ["strategy", "symbol", "reason"])
GATE_DECISION_LATENCY_MS = Histogram(
    "gate_decision_latency_ms", "Time to evaluate one gate decision, audit write included (ms).", buckets=_MS_FAST
)

# --- export -----------------------------------------------------------------------------
EXPORT_REQUESTS = Counter("export_requests", "Export requests by outcome.", ["format", "status", "user"])
EXPORT_LATENCY_MS = Histogram(
    "export_latency_ms", "End-to-end export time (ms).", ["format", "size"], buckets=_MS_SLOW
)
EXPORT_BYTES = Counter("export_bytes", "Bytes produced by exports.", ["format", "status"])
EXPORT_CONCURRENT_RUNNING = Gauge("export_concurrent_running", "Exports running right now.")
EXPORT_FAIL = Counter("export_fail", "Failed exports by reason.", ["reason", "format"])
EXPORT_SUCCESS_RATE = Gauge("export_success_rate", "Share of finished exports that succeeded (0..1).", ["format"])

# --- risk -------------------------------------------------------------------------------
# Microsecond buckets: the pre-trade check targets P99 < 20 us in-process.
_US = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000, 20000)
RISK_CHECK_LATENCY_US = Histogram(
    "risk_check_latency_us", "Time of one pre-trade risk check, all checks on (microseconds).", buckets=_US
)
RISK_DENIALS = Counter("risk_denials", "Orders denied by the pre-trade risk engine, by check.", ["check", "strategy"])
RISK_STATE = Gauge("risk_state", "Trading state: 0 ACTIVE, 1 REDUCING, 2 HALTED (scope: global, "
                   "strategy:<name>, instrument:<symbol>).", ["scope"])
RISK_UTILISATION = Gauge("risk_utilisation", "Share of a book-wide risk limit in use (1 = at the limit): "
                         "daily_loss, drawdown, gross_exposure, net_exposure, open_orders, submit_rate, cancel_rate.",
                         ["limit"])
PORTFOLIO_EQUITY = Gauge("portfolio_equity", "Equity of the risk engine's book (quote currency).")
PORTFOLIO_EXPOSURE = Gauge("portfolio_exposure", "Signed exposure (position x mark) per symbol, quote currency.",
                           ["symbol"])
PORTFOLIO_VAR = Gauge("portfolio_var", "One-bar value at risk as a positive fraction of equity.", ["level", "method"])
PORTFOLIO_ES = Gauge("portfolio_es", "One-bar expected shortfall as a positive fraction of equity.", ["level", "method"])
PORTFOLIO_DRAWDOWN = Gauge("portfolio_drawdown", "Drawdown of the book's equity from its peak (positive fraction).")

# --- models -----------------------------------------------------------------------------
FEATURE_DRIFT_PSI = Gauge("feature_drift_psi", "Population stability index of a live feature over the monitor's "
                          "window vs its training distribution (bins fixed at training; > 0.25 = shifted).",
                          ["model", "feature"])
FEATURE_DRIFT_KS = Gauge("feature_drift_ks", "Kolmogorov-Smirnov statistic of a live feature over the monitor's "
                         "window vs its training distribution.", ["model", "feature"])
MODEL_PREDICTION_DRIFT = Gauge("model_prediction_drift", "PSI of the live predictions over the monitor's window vs "
                               "the out-of-fold predictions at training.", ["model"])
MODEL_INFERENCE_LATENCY_MS = Histogram(
    "model_inference_latency_ms", "Bar in to prediction out: live features + model inference (ms).", ["model"],
    buckets=_MS_FAST,
)
MODEL_PREDICTIONS = Counter("model_predictions", "Predictions made by a live model monitor.", ["model"])

#: Every metric defined here, by its base name (``_total``/``_bucket`` suffixes excluded).
ALL: dict[str, Counter | Gauge | Histogram] = {
    m._name: m for m in list(globals().values()) if isinstance(m, (Counter, Gauge, Histogram))
}


def exposed_names() -> set[str]:
    """Every sample name a scrape can show (``x_total``, ``x_bucket``, ``x_sum``, ``x_count``...)."""
    names: set[str] = set()
    for name, metric in ALL.items():
        if isinstance(metric, Counter):
            names |= {f"{name}_total", f"{name}_created"}
        elif isinstance(metric, Histogram):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        else:
            names.add(name)
    return names


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Return ``(body, content_type)`` of the Prometheus text exposition for ``registry``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_metrics(port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Expose ``/metrics`` of this process on ``addr:port`` in a daemon thread.

    Example::

        >>> server, thread = serve_metrics(0)   # port 0: any free port
        >>> server.server_port > 0
        True
        >>> server.shutdown()
    """
    return start_http_server(port, addr=addr)


#: Other processes whose metrics this process's ``/metrics`` relays: (their /metrics URL, families they own).
_RELAYS: dict[str, tuple[str, ...]] = {}
#: Families both this process and a relayed one write (their /metrics URL, family prefixes): merged series by series.
_SHARED: dict[str, tuple[str, ...]] = {}


def relay(url: str, prefixes: tuple[str, ...], shared: tuple[str, ...] = ()) -> None:
    """Serve the metric families named by ``prefixes`` from the process at ``url`` in this process's ``/metrics``.

    ``spark serve`` runs the ingest in a process of its own; Prometheus scrapes one target,
    the web server, whose ``/metrics`` carries the ingest's families from the ingest (and
    not this process's idle copies of them), so every series reaches Prometheus exactly once.
    ``shared``: families both processes write (different series, e.g. one ``model`` label each):
    one block each, this process's series plus the other's, the other's winning a series both have.
    """
    _RELAYS[url] = tuple(prefixes)
    _SHARED[url] = tuple(shared)


def clear_relays() -> None:
    _RELAYS.clear()
    _SHARED.clear()


def families(text: str) -> list[tuple[str, str]]:
    """``[(family name, its block of the text exposition)]`` in order (a block starts at ``# HELP``)."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP ") or not out:
            name = line.split(" ", 3)[2] if line.startswith("# HELP ") else ""
            out.append((name, []))
        out[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in out]


def _series_key(line: str) -> str:
    return line.rstrip("\n").rsplit(" ", 1)[0]  # name{labels}: the value is the last field


def _with_samples(block: str, others: list[str]) -> str:
    """``block`` (HELP, TYPE, samples) with the sample lines of the blocks ``others`` of the same family added;
    a series in both is taken from ``others``."""
    lines = block.splitlines(keepends=True)
    extra = [line if line.endswith("\n") else line + "\n"
             for other in others for line in other.splitlines(keepends=True) if not line.startswith("#")]
    keys = {_series_key(line) for line in extra}
    kept = [line for line in lines if line.startswith("#") or _series_key(line) not in keys]
    return "".join(kept + extra)


def merge(own: str, relayed: dict[str, str | None]) -> str:
    """This process's exposition without the relayed families, plus those families from their owners
    (and the series of shared families merged into one block each)."""
    owned = tuple(p for url in relayed for p in _RELAYS.get(url, ()))
    parts = [(name, block) for name, block in families(own) if not (owned and name.startswith(owned))]
    relayed_parts: list[str] = []
    shared: dict[str, list[str]] = {}
    for url, text in relayed.items():
        if text is None:
            continue  # the owner is restarting: its series are absent from this scrape, never stale copies
        for name, block in families(text):
            if name.startswith(_RELAYS[url]):
                relayed_parts.append(block)
            elif _SHARED.get(url) and name.startswith(_SHARED[url]):
                shared.setdefault(name, []).append(block)
    merged = [(_with_samples(block, shared.pop(name)) if name in shared else block) for name, block in parts]
    merged += [_with_samples(blocks[0], blocks[1:]) for blocks in shared.values()]  # families this process lacks
    return "".join(merged + relayed_parts)


def tornado_handler():
    """A Tornado ``RequestHandler`` class serving ``/metrics`` (for ``panel serve`` extra patterns),
    with the families of :func:`relay`\ ed processes fetched from them (asynchronously, 1 s timeout)."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.web import RequestHandler

    class MetricsHandler(RequestHandler):
        async def get(self) -> None:
            body, ctype = render()
            if _RELAYS:
                client = AsyncHTTPClient()
                relayed: dict[str, str | None] = {}
                for url in list(_RELAYS):
                    try:
                        resp = await client.fetch(url, request_timeout=1.0, connect_timeout=0.5)
                        relayed[url] = resp.body.decode()
                    except Exception:
                        relayed[url] = None
                body = merge(body.decode(), relayed).encode()
            self.set_header("Content-Type", ctype)
            self.write(body)

    return MetricsHandler

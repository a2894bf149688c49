"""Grafana dashboards of every capability, built with Grafana's typed builders.

Each ``<capability>_dashboard()`` returns a ``grafana_foundation_sdk`` dashboard builder; the
committed files ``dashboards/<capability>.json`` are their :func:`render` output, written by
``spark dashboards build`` (or ``python -m spark_research.observability.dashboards``) and
checked byte for byte by ``spark dashboards build --check`` and the test suite.

Every panel queries the Prometheus data source picked in the ``datasource`` template variable,
and only names metrics defined in :mod:`spark_research.metrics`.

Example::

    >>> from spark_research.observability.dashboards import build_all
    >>> dashboards = build_all()
    >>> sorted(dashboards)
    ['backtest', 'export', 'gates', 'models', 'optimizer', 'risk', 'streams']
    >>> [p["title"] for p in dashboards["export"]["panels"]][:2]
    ['Export latency P95', 'Export success rate']
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

from spark_research.observability.catalog import (
    DASHBOARDS_DIR,
    DATASOURCE_REF,
    DATASOURCE_VARIABLE,
)

_DS = dash_m.DataSourceRef(type_val=DATASOURCE_REF["type"], uid=DATASOURCE_REF["uid"])
_RATE = "$__rate_interval"


# --- small helpers over the SDK builders ------------------------------------------------------
def _q(expr: str, legend: str = "", fmt: prom_m.PromQueryFormat | None = None) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(_DS).legend_format(legend or "__auto")
    return query.format(fmt) if fmt is not None else query


def _quantile(q: float, bucket: str, by: str = "") -> str:
    """``histogram_quantile`` over a ``*_bucket`` series, keeping the labels in ``by``."""
    keep = ", ".join(["le", *[label.strip() for label in by.split(",") if label.strip()]])
    return f"histogram_quantile({q}, sum by ({keep}) (rate({bucket}[{_RATE}])))"


def _legend() -> common_b.VizLegendOptions:
    return (common_b.VizLegendOptions().show_legend(True)
            .display_mode(common_m.LegendDisplayMode.LIST).placement(common_m.LegendPlacement.BOTTOM))


def _tooltip() -> common_b.VizTooltipOptions:
    return common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI).sort(common_m.SortOrder.DESCENDING)


def _thresholds(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return (dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps([dash_m.Threshold(value=v, color=c) for v, c in steps]))


def _states(names: dict[int, tuple[str, str]]) -> list[dash_m.ValueMapping]:
    """Value mappings ``{0: ("OPEN", "green"), ...}`` for a gauge that encodes a state."""
    return [dash_m.ValueMap(options={str(v): dash_m.ValueMappingResult(text=t, color=c, index=i)
                                     for i, (v, (t, c)) in enumerate(sorted(names.items()))})]


def _timeseries(title: str, description: str, unit: str, *targets: prometheus.Dataquery,
                w: int = 12, h: int = 8) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(_DS).unit(unit)
             .span(w).height(h).legend(_legend()).tooltip(_tooltip()))
    return panel.targets(list(targets))


def _stat(title: str, description: str, unit: str, *targets: prometheus.Dataquery,
          thresholds: dash_b.ThresholdsConfig | None = None, w: int = 6, h: int = 8) -> stat.Panel:
    panel = (stat.Panel().title(title).description(description).datasource(_DS).unit(unit).span(w).height(h)
             .graph_mode(common_m.BigValueGraphMode.AREA).color_mode(common_m.BigValueColorMode.VALUE)
             .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if thresholds is not None:
        panel = panel.thresholds(thresholds)
    return panel.targets(list(targets))


def _state_timeline(title: str, description: str, target: prometheus.Dataquery,
                    states: dict[int, tuple[str, str]], w: int = 12, h: int = 8) -> statetimeline.Panel:
    return (statetimeline.Panel().title(title).description(description).datasource(_DS).span(w).height(h)
            .mappings(_states(states)).legend(_legend()).show_value(common_m.VisibilityMode.AUTO)
            .with_target(target))


def _heatmap(title: str, description: str, bucket: str, unit: str, w: int = 12, h: int = 8) -> heatmap.Panel:
    target = _q(f"sum by (le) (increase({bucket}[{_RATE}]))", "{{le}}", prom_m.PromQueryFormat.HEATMAP)
    return (heatmap.Panel().title(title).description(description).datasource(_DS).span(w).height(h)
            .calculate(False).unit(unit).show_legend().show_tooltip().with_target(target))


def _dashboard(uid: str, title: str, description: str, panels: list[Builder[Any]]) -> dash_b.Dashboard:
    """A dashboard with the shared conventions: datasource variable, tags, time range, ids."""
    board = (dash_b.Dashboard(title).uid(uid).description(description)
             .tags(["spark_research", uid.removeprefix("spark-")]).editable().timezone("browser")
             .time("now-1h", "now").refresh("30s")
             .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
             .with_variable(dash_b.DatasourceVariable(DATASOURCE_VARIABLE).label("Prometheus").type("prometheus")))
    for panel_id, panel in enumerate(panels, start=1):
        refs = iter("ABCDEFGHIJ")
        built = panel.id(panel_id).build()
        for target in built.targets or []:  # stable refIds A, B, C... per panel
            target.ref_id = next(refs)
        board = board.with_panel(_Built(built))
    return board


class _Built(Builder[dash_m.Panel]):
    """Wraps an already built panel so ``Dashboard.with_panel`` can place it on the grid."""

    def __init__(self, panel: dash_m.Panel) -> None:
        self._panel = panel

    def build(self) -> dash_m.Panel:
        return self._panel


# --- one dashboard per capability ---------------------------------------------------------------
def streams_dashboard() -> dash_b.Dashboard:
    """Live market data: message rate, ingest latency, ws gaps, connections, sequence gaps, bad input."""
    return _dashboard("spark-streams", "spark_research / streams", "Live market data ingest (WebSocket streams).", [
        _timeseries("Message rate", "WebSocket messages received per second.", "suffix: msg/s",
                    _q(f"sum by (exchange, stream) (rate(ws_msgs_total[{_RATE}]))", "{{exchange}} {{stream}}")),
        _timeseries("Ingest latency P50 / P95", "Exchange event time to persisted. Target P95 < 5 ms, original SLO 300 ms.",
                    "ms",
                    _q(_quantile(0.5, "ingest_latency_ms_bucket", "exchange"), "P50 {{exchange}}"),
                    _q(_quantile(0.95, "ingest_latency_ms_bucket", "exchange"), "P95 {{exchange}}")),
        _timeseries("WebSocket gap P95", "Time between consecutive messages on a stream. SLO P95 < 1500 ms.", "ms",
                    _q(_quantile(0.95, "ws_gap_ms_bucket", "exchange"), "P95 {{exchange}}")),
        _heatmap("WebSocket gap histogram", "Distribution of the time between consecutive messages.",
                 "ws_gap_ms_bucket", "ms"),
        _state_timeline("Connection state", "Per exchange and stream.",
                        _q("ws_conn_state", "{{exchange}} {{stream}}"),
                        {0: ("disconnected", "red"), 1: ("connecting", "yellow"), 2: ("connected", "green"),
                         3: ("resyncing", "blue")}),
        _timeseries("Sequence gaps and resyncs", "Gaps detected and resyncs performed per interval; open gaps must "
                    "return to 0 after each resync.", "short",
                    _q(f"sum by (exchange, symbol) (increase(ws_seq_gaps_total[{_RATE}]))", "gaps {{exchange}} {{symbol}}"),
                    _q(f"sum by (exchange, symbol) (increase(ws_resyncs_total[{_RATE}]))", "resyncs {{exchange}} {{symbol}}"),
                    _q("sum by (exchange, symbol) (ws_seq_gaps_open)", "open {{exchange}} {{symbol}}")),
        _timeseries("Malformed, duplicate and reconnect", "Messages dropped and reconnect attempts per second.", "short",
                    _q(f"sum by (exchange, reason) (rate(ws_malformed_total[{_RATE}]))", "malformed {{exchange}} {{reason}}"),
                    _q(f"sum by (exchange) (rate(ws_duplicates_total[{_RATE}]))", "duplicates {{exchange}}"),
                    _q(f"sum by (exchange) (rate(ws_reconnects_total[{_RATE}]))", "reconnects {{exchange}}"),
                    w=24),
        _timeseries("Book checksum failures", "Local order books that failed the venue's checksum per interval "
                    "(each one is resynced); time fields corrected for a wrong unit.", "short",
                    _q(f"sum by (exchange) (increase(book_checksum_fail_total[{_RATE}]))", "checksum {{exchange}}"),
                    _q(f"sum by (exchange, field) (increase(ws_time_unit_fixes_total[{_RATE}]))",
                       "time unit {{exchange}} {{field}}"),
                    w=24),
    ])


def optimizer_dashboard() -> dash_b.Dashboard:
    """Sweeps on Dask: jobs by status, workers, queue depth, in-flight steps, step latency, queue wait."""
    return _dashboard("spark-optimizer", "spark_research / optimizer", "Parameter sweeps on Dask.", [
        _timeseries("Jobs by status", "Sweep jobs entering each status per interval.", "short",
                    _q(f"sum by (status) (increase(optimizer_jobs_total[{_RATE}]))", "{{status}}"), w=12),
        _stat("Workers running", "Dask workers available to the optimizer.", "short",
              _q("optimizer_workers_running", "workers"),
              thresholds=_thresholds((None, "red"), (1, "green"))),
        _stat("In-flight steps", "Steps submitted to Dask and not yet finished (bounded by backpressure).", "short",
              _q("optimizer_steps_inflight", "in flight")),
        _timeseries("Queue depth", "Steps waiting in the optimizer's queue.", "short",
                    _q("optimizer_queue_depth", "queued"),
                    _q("optimizer_steps_inflight", "in flight"), w=24),
        _timeseries("Step latency P50 / P95", "Execution time of one sweep step on a worker (a few hundred ms is normal).",
                    "ms",
                    _q(_quantile(0.5, "optimizer_step_latency_ms_bucket"), "P50"),
                    _q(_quantile(0.95, "optimizer_step_latency_ms_bucket"), "P95")),
        _timeseries("Queue wait P50 / P95", "Enqueue to submission. Target P95 < 100 ms at 2 workers, original SLO 1 s.",
                    "ms",
                    _q(_quantile(0.5, "optimizer_queue_wait_ms_bucket"), "P50"),
                    _q(_quantile(0.95, "optimizer_queue_wait_ms_bucket"), "P95")),
    ])


def gates_dashboard() -> dash_b.Dashboard:
    """Paper-vs-live drift gates: state per gate, drift, PnL delta, closes, decision latency."""
    return _dashboard("spark-gates", "spark_research / gates", "Paper-trading drift gates.", [
        _state_timeline("Gate state", "Per strategy and symbol: OPEN, HALF_OPEN (probation) or CLOSED.",
                        _q("gate_state", "{{strategy}} {{symbol}}"),
                        {0: ("OPEN", "green"), 1: ("HALF_OPEN", "yellow"), 2: ("CLOSED", "red")}, w=24),
        _timeseries("Price drift (abs)", "Absolute paper-vs-live fill price drift of the last fill.", "short",
                    _q("drift_price_abs", "{{strategy}} {{symbol}}")),
        _timeseries("Price drift (bps)", "Rolling mean paper-vs-live drift; alert beyond 25 bps.", "short",
                    _q("drift_bps", "{{strategy}} {{symbol}}")),
        _timeseries("Paper-live PnL delta", "Live PnL minus paper PnL (quote currency).", "short",
                    _q("paper_live_delta_pnl", "{{strategy}} {{symbol}}")),
        _timeseries("Gate closes", "Transitions into CLOSED per interval, by reason.", "short",
                    _q(f"sum by (strategy, symbol, reason) (increase(gate_close_total[{_RATE}]))",
                       "{{strategy}} {{symbol}} {{reason}}")),
        _timeseries("Decision latency P50 / P95", "Gate decision, audit write included. Target P95 < 1 ms, "
                    "original SLO 500 ms.", "ms",
                    _q(_quantile(0.5, "gate_decision_latency_ms_bucket"), "P50"),
                    _q(_quantile(0.95, "gate_decision_latency_ms_bucket"), "P95"), w=24),
    ])


def backtest_dashboard() -> dash_b.Dashboard:
    """Backtests: runtime P95, runs, fills rate, golden and determinism diffs."""
    return _dashboard("spark-backtest", "spark_research / backtest", "Historical backtests (vectorbt engine).", [
        _timeseries("Runtime P95", "Wall time of run_backtest per strategy. Original SLO P95 < 4 s.", "ms",
                    _q(_quantile(0.95, "backtest_runtime_ms_bucket", "strategy"), "{{strategy}}")),
        _timeseries("Backtest runs", "run_backtest calls per second.", "short",
                    _q(f"sum by (strategy) (rate(backtest_runtime_ms_count[{_RATE}]))", "{{strategy}}")),
        _timeseries("Fills rate", "Simulated fills per second.", "short",
                    _q(f"sum by (strategy) (rate(sim_fills_total[{_RATE}]))", "{{strategy}}")),
        _stat("Golden / determinism diffs", "Fields differing at the last golden and determinism checks; 0 = pass.",
              "short",
              _q("backtest_golden_diffs", "golden"),
              _q("backtest_determinism_diffs", "determinism"),
              thresholds=_thresholds((None, "green"), (1, "red")), w=12),
    ])


def export_dashboard() -> dash_b.Dashboard:
    """Export@Scale, exactly five panels: latency P95, success rate, bytes, concurrency, throughput."""
    return _dashboard("spark-export", "spark_research / export", "CSV and PDF exports (Export@Scale).", [
        _timeseries("Export latency P95", "End-to-end export time by format. SLO P95 < 10 s.", "ms",
                    _q(_quantile(0.95, "export_latency_ms_bucket", "format"), "{{format}}")),
        _timeseries("Export success rate", "Share of finished exports that succeeded; alert below 95%.", "percentunit",
                    _q("export_success_rate", "{{format}}")),
        _timeseries("Export bytes", "Bytes produced by exports per second.", "Bps",
                    _q(f"sum by (format, status) (rate(export_bytes_total[{_RATE}]))", "{{format}} {{status}}")),
        _timeseries("Export concurrency", "Exports running right now; alert above 10.", "short",
                    _q("export_concurrent_running", "running")),
        _timeseries("Export throughput", "Export requests per second by format and outcome.", "reqps",
                    _q(f"sum by (format, status) (rate(export_requests_total[{_RATE}]))", "{{format}} {{status}}"),
                    w=24),
    ])


def models_dashboard() -> dash_b.Dashboard:
    """Live models: feature drift (PSI, KS), prediction drift, inference latency, predictions vs bars."""
    return _dashboard("spark-models", "spark_research / models", "Live model monitors: drift and inference.", [
        _timeseries("Feature drift (PSI)", "PSI of each live feature over the monitor's window vs its training "
                    "distribution (bins fixed at training). Alert above 0.25 for 15m.", "short",
                    _q("feature_drift_psi", "{{model}} {{feature}}"), w=24),
        _timeseries("Feature drift (KS)", "Kolmogorov-Smirnov statistic of each live feature vs training "
                    "(updated when the monitor's drift table is computed).", "short",
                    _q("feature_drift_ks", "{{model}} {{feature}}")),
        _timeseries("Prediction drift (PSI)", "PSI of live predictions vs the out-of-fold predictions at training. "
                    "Alert above 0.25 for 15m.", "short",
                    _q("model_prediction_drift", "{{model}}")),
        _timeseries("Inference latency P50 / P95", "Bar in to prediction out (live features + model). "
                    "Target P95 < 2 ms.", "ms",
                    _q(_quantile(0.5, "model_inference_latency_ms_bucket", "model"), "P50 {{model}}"),
                    _q(_quantile(0.95, "model_inference_latency_ms_bucket", "model"), "P95 {{model}}")),
        _timeseries("Predictions vs bars", "Predictions per second by model, and closed bars published by the "
                    "ingest; a model at 0 while bars arrive is stalled.", "short",
                    _q(f"sum by (model) (rate(model_predictions_total[{_RATE}]))", "predictions {{model}}"),
                    _q(f"sum(rate(stream_channel_bars_total[{_RATE}]))", "bars")),
        _heatmap("Inference latency histogram", "Distribution of bar-to-prediction latency.",
                 "model_inference_latency_ms_bucket", "ms", w=24),
    ])


def risk_dashboard() -> dash_b.Dashboard:
    """Pre-trade risk and the live portfolio: states, denials, check latency, equity, drawdown, exposure, VaR/ES."""
    return _dashboard("spark-risk", "spark_research / risk", "Pre-trade risk engine and live portfolio.", [
        _state_timeline("Trading state", "Per scope (global, strategy, instrument): ACTIVE, REDUCING (only orders "
                        "that reduce exposure pass) or HALTED (nothing passes).",
                        _q("risk_state", "{{scope}}"),
                        {0: ("ACTIVE", "green"), 1: ("REDUCING", "yellow"), 2: ("HALTED", "red")}, w=24),
        _timeseries("Denials by check", "Orders the risk engine denied per interval, by check and strategy.", "short",
                    _q(f"sum by (check, strategy) (increase(risk_denials_total[{_RATE}]))", "{{check}} {{strategy}}")),
        _timeseries("Check latency P50 / P99", "One pre-trade check, all checks on. Target P99 < 20 µs.", "µs",
                    _q(_quantile(0.5, "risk_check_latency_us_bucket"), "P50"),
                    _q(_quantile(0.99, "risk_check_latency_us_bucket"), "P99")),
        _timeseries("Equity", "The book's equity (quote currency), marked to live prices or bar closes.", "short",
                    _q("portfolio_equity", "equity")),
        _timeseries("Drawdown", "Drawdown from the peak equity (fraction).", "percentunit",
                    _q("portfolio_drawdown", "drawdown")),
        _timeseries("Exposure by symbol", "Signed position x mark per symbol.", "short",
                    _q("portfolio_exposure", "{{symbol}}")),
        _timeseries("VaR and ES", "One-bar value at risk and expected shortfall (fraction of equity) at 95/99 %, "
                    "historical and Cornish-Fisher; alert above 3 % at 99 %.", "percentunit",
                    _q("portfolio_var", "VaR {{level}} {{method}}"),
                    _q("portfolio_es", "ES {{level}} {{method}}")),
        _timeseries("Limit utilisation", "Share of each book-wide limit in use (1 = at the limit).", "percentunit",
                    _q("risk_utilisation", "{{limit}}"), w=24),
    ])


#: Builder of each capability's dashboard, by capability name.
BUILDERS: dict[str, Callable[[], dash_b.Dashboard]] = {
    "streams": streams_dashboard,
    "optimizer": optimizer_dashboard,
    "gates": gates_dashboard,
    "backtest": backtest_dashboard,
    "export": export_dashboard,
    "models": models_dashboard,
    "risk": risk_dashboard,
}


# --- output -----------------------------------------------------------------------------------
def to_dict(board: dash_b.Dashboard) -> dict[str, Any]:
    """The dashboard model as plain JSON-compatible data (what Grafana imports)."""
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render(dashboard: dict[str, Any]) -> str:
    """Deterministic JSON text of a dashboard: sorted keys, two-space indent, trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all() -> dict[str, dict[str, Any]]:
    """Every capability's dashboard as a dict, keyed by capability."""
    return {name: to_dict(builder()) for name, builder in BUILDERS.items()}


def write_all(out_dir: Path = DASHBOARDS_DIR, check: bool = False) -> list[Path]:
    """Write ``<out_dir>/<capability>.json`` for every dashboard; return the files that changed.

    With ``check=True`` nothing is written: the returned files are those that are missing or
    differ from what the builders produce (an empty list means the committed files are current).

    Example::

        >>> write_all(check=True)
        []
    """
    changed = []
    for name, dashboard in build_all().items():
        path = out_dir / f"{name}.json"
        text = render(dashboard)
        if path.exists() and path.read_text() == text:
            continue
        changed.append(path)
        if not check:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m spark_research.observability.dashboards [--check] [--out DIR]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="spark dashboards build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a committed file is stale")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="output directory (default: dashboards/)")
    args = parser.parse_args(argv)
    return run(args.out, args.check)


def run(out_dir: Path, check: bool) -> int:
    """Build (or with ``check`` verify) the dashboards in ``out_dir``, report on stdout/stderr."""
    changed = write_all(out_dir, check=check)
    if check:
        for path in changed:
            print(f"stale: {path} (run `spark dashboards build`)", file=sys.stderr)
        if not changed:
            print(f"dashboards up to date in {out_dir}")
        return 1 if changed else 0
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(BUILDERS)} dashboards in {out_dir}, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

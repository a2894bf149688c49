"""A real Prometheus (``spark serve --prometheus``: Debian's /usr/bin/prometheus, 1 s scrapes, the
project's generated config and rules) scraping a running ``spark serve``.

Every metric name of SPEC.md must be scraped, and every PromQL query of ``dashboards/*.json`` and
``rules/*.yml`` must return data. Rule applied to alert expressions: an alert's full expression is
a comparison that is empty while nothing is wrong (``gate_state == 2`` with no gate closed, a P95
under its threshold); for those the comparison is stripped and its left-hand side — every selector,
rate and quantile in it — must return data. Dashboard queries carry no comparison and must return
data as they are.
"""
from __future__ import annotations

import json
import re
import signal
import time
import urllib.parse
import urllib.request

import pytest

from spark_research.observability.catalog import all_queries, expand_grafana_variables
from tests.observability.test_metrics_contract import SPEC_METRICS
from tests.serve.serve_helpers import start_serve, stop_serve, wait_until_apps_answer

COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[-+0-9.eE]+\s*$")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import free_port

    prom_port = free_port()
    s = start_serve(tmp_path_factory.mktemp("serve"), "--workers", "1", "--prometheus",
                    "--prometheus-port", str(prom_port))
    s.prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_until_apps_answer(s)
        yield s
    finally:
        if s.proc.poll() is None:
            code, survivors = stop_serve(s, signal.SIGTERM)
            s.shutdown = (code, survivors)
        print(s.log()[-3000:])


def query(s, expr: str) -> list[dict]:
    url = f"{s.prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def lhs(expr: str) -> str:
    """The expression without a trailing comparison against a number."""
    return COMPARISON.sub("", expr.strip())


def _generate_activity(s) -> None:
    """A few more exports and sweeps so counters change between scrapes (rates need two points)."""
    req = urllib.request.Request(s.url + "/export/run", data=json.dumps(
        {"what": "synthetic_trades", "format": "csv", "parameters": {"rows": 200}}).encode(),
        headers={"Authorization": "Bearer demo-token-bob"})
    urllib.request.urlopen(req, timeout=30).close()


def _wait_all(s, queries: list[tuple[str, str]], timeout: float = 150.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    missing: dict[str, str] = {}
    while time.monotonic() < deadline:
        missing = {src + " | " + q: q for src, q in queries if not query(s, q)}
        if not missing:
            return {}
        _generate_activity(s)
        time.sleep(3)
    return missing


def test_prometheus_runs_with_the_generated_config_and_rules(served):
    health = served.health()["components"]["prometheus"]
    assert health["up"] is True, health
    cfg = (served.var / "prometheus" / "prometheus.yml").read_text()
    assert "scrape_interval: 1s" in cfg and f"127.0.0.1:{served.port}" in cfg
    with urllib.request.urlopen(served.prom_url + "/api/v1/rules", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    loaded = {rule["name"] for g in groups for rule in g["rules"]}
    assert {"GateClosed", "ExportSuccessRateLow", "StreamsIngestLatencyP95High", "OptimizerJobsFailing",
            "BacktestRuntimeP95High"} <= loaded
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        targets = json.loads(urllib.request.urlopen(served.prom_url + "/api/v1/targets", timeout=10).read())
        active = targets["data"]["activeTargets"]
        if active and all(t["health"] == "up" for t in active):
            break
        time.sleep(0.5)
    assert active and all(t["health"] == "up" for t in active), active


def test_every_spec_metric_is_scraped(served):
    names = []
    for name, kind, _ in SPEC_METRICS:
        names.append(f"{name}_bucket" if kind.__name__ == "Histogram" else name)
    missing = _wait_all(served, [("SPEC.md", n) for n in names], timeout=90)
    assert not missing, f"not scraped: {sorted(missing)}"


def test_every_dashboard_and_rule_query_returns_data(served):
    queries = []
    for source, expr in all_queries():
        expr = expand_grafana_variables(expr)
        queries.append((source, lhs(expr) if source.startswith("rules/") else expr))
    assert len(queries) > 40
    missing = _wait_all(served, queries)
    assert not missing, "queries without data:\n" + "\n".join(sorted(missing))


def test_dask_scheduler_and_workers_are_scraped_without_doubling_the_platform_metrics(served):
    deadline = time.monotonic() + 60
    up = []
    while time.monotonic() < deadline:
        up = query(served, 'up{job="dask"} == 1')
        if sorted(r["metric"]["role"] for r in up) == ["scheduler", "worker"]:  # --workers 1
            break
        time.sleep(1)
    assert sorted(r["metric"]["role"] for r in up) == ["scheduler", "worker"], up
    worker_port = next(r["metric"]["instance"] for r in up if r["metric"]["role"] == "worker").rsplit(":", 1)[1]
    assert any(c.pid for c in served.children()
               if any(str(a.laddr.port) == worker_port for a in c.net_connections(kind="inet")))
    assert query(served, 'dask_worker_tasks{job="dask", role="worker"}')
    assert query(served, 'dask_scheduler_workers{job="dask", role="scheduler"}')
    assert query(served, 'process_resident_memory_bytes{job="dask", role="worker"}')
    # the platform's own metrics exist in every process but are scraped from the platform only
    assert {r["metric"]["job"] for r in query(served, "optimizer_workers_running")} == {"spark_research"}


def test_an_alert_expression_comparison_is_stripped_only_at_its_end():
    assert lhs("gate_state == 2") == "gate_state"
    assert lhs("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 1e3") == \
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))"
    assert lhs("sum(increase(export_fail_total[10m])) > 5") == "sum(increase(export_fail_total[10m]))"
    assert lhs("deriv(optimizer_queue_depth[10m]) * 60 > 0") == "deriv(optimizer_queue_depth[10m]) * 60"


def test_sigterm_stops_the_platform_and_its_prometheus(served):
    kids = served.children()
    prom = [k for k in kids if "prometheus" in k.name()]
    assert len(prom) == 1, [k.name() for k in kids]
    code, survivors = stop_serve(served, signal.SIGTERM)
    assert code == 0, served.log()[-3000:]
    assert survivors == [], f"orphans after SIGTERM: {survivors}"
    assert not prom[0].is_running()

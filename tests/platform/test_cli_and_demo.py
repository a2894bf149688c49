"""The spark command: data list, check verdicts, the demo run and its offline HTML chart."""
import os
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser

from spark_research import metrics


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        url = a.get("src") if tag in ("script", "img") else a.get("href") if tag == "link" else None
        if url and not url.startswith("data:"):
            self.found.append(url)


def external_resources(html: str) -> list[str]:
    """URLs of scripts, stylesheets and images an HTML page would fetch."""
    parser = _Resources()
    parser.feed(html)
    return parser.found


def spark(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "spark_research.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_data_list_shows_the_sample(sample_store):
    out = spark("data", "list")
    assert out.returncode == 0, out.stderr
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        assert f"bars {sym} 43200" in out.stdout


def test_data_import_rejects_a_bad_file_and_names_the_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume,symbol\n2024-01-01T00:00:00Z,10,11,9,10.5,1,XYZ\n"
                   "2024-01-01T00:01:00Z,10,9,11,10.5,1,XYZ\n")
    out = spark("data", "import", str(bad), "--store", str(tmp_path / "store"))
    assert out.returncode != 0
    assert "XYZ @ 2024-01-01 00:01:00+00:00: field 'high'" in out.stderr
    assert not (tmp_path / "store" / "bars").exists()


def test_check_passes_a_shipped_strategy(sample_store):
    out = spark("check", "donchian_breakout", "--last", "3000", "--cuts", "8")
    assert out.returncode == 0, out.stderr
    assert "verdict: PASS" in out.stdout and "warm-up" in out.stdout


def test_demo_prints_stats_and_writes_an_offline_chart(tmp_path, sample_store, page):
    html = tmp_path / "equity.html"
    out = spark("demo", "--out", str(html))
    assert out.returncode == 0, out.stderr
    assert "sharpe" in out.stdout and "max_drawdown" in out.stdout
    assert external_resources(html.read_text()) == []  # every script and stylesheet inline
    page.goto(html.as_uri())
    page.wait_for_selector("canvas", timeout=30_000)
    page.watch.screenshot("demo_equity")
    page.watch.assert_clean()


def test_metrics_endpoint_serves_every_metric():
    server, _ = metrics.serve_metrics(0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    for name in ("sim_fills_total", "backtest_runtime_ms_bucket", "gate_state", "export_success_rate",
                 "optimizer_queue_depth", "ws_conn_state"):
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_bucket')}" in body

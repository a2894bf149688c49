"""The served platform's figures where users see them: ingest latency with the apps open, start-up.

1. Start-up: ``spark serve`` from its process start to ``/`` answering and to every component
   up (``/health`` ok), ``--runs`` fresh starts; and ``spark warm`` with a valid numba cache.
2. Served ingest latency: one ``spark serve`` at the demo rate with all six apps open in
   Debian's chromium (logged in, live), ``--runs`` windows of ``--seconds`` each, read from the
   platform's own ``/metrics`` (``ingest_latency_ms`` histogram, the window's bucket deltas,
   percentiles interpolated inside a bucket). The peer, in the same run: the same ingest
   (replay exchange + ingest client, the demo's rate and faults) alone in a process of its own,
   no apps, no platform, over the same windows.

Prints median [min–max] and the served / alone ratio; records them in ``bench/results.json``.
Never asserts on wall time. ``python bench/serve.py [--runs 5] [--seconds 60]``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _results import record
from _timing import Spread

ROOT = Path(__file__).resolve().parent.parent
SPARK = [sys.executable, "-m", "spark_research.cli"]
APPS = ("stream_monitor", "gate_control", "risk", "research", "model_monitor", "export_center")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_serve(var: Path, port: int, *args: str) -> subprocess.Popen:
    log = open(var / "console.log", "w")
    return subprocess.Popen([*SPARK, "serve", "--port", str(port), *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "SPARK_VAR": str(var), "PYTHONUNBUFFERED": "1"})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def startup_once(tmp: Path) -> tuple[float, float]:
    """Seconds from process start to ``/`` answering and to ``/health`` ok."""
    var = Path(tempfile.mkdtemp(dir=tmp))
    port = free_port()
    t0 = time.monotonic()
    proc = start_serve(var, port, "--no-exercise")
    first = ok = None
    try:
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            if first is None and answers(f"http://127.0.0.1:{port}/login"):
                first = time.monotonic() - t0
            if first is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if json.loads(r.read())["status"] == "ok":
                            ok = time.monotonic() - t0
                            break
                except urllib.error.HTTPError:
                    pass
                except OSError:
                    pass
            time.sleep(0.05)
    finally:
        stop(proc)
    if first is None or ok is None:
        raise RuntimeError(f"spark serve did not come up: {(var / 'console.log').read_text()[-2000:]}")
    return first, ok


def histogram(text: str, name: str = "ingest_latency_ms") -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of ``name`` summed over its label sets."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            key = float("inf") if le == "+Inf" else float(le)
            out[key] = out.get(key, 0.0) + float(value)
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The ``q`` quantile of the observations between two scrapes (linear inside a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_b, prev_c = b, c
    return bounds[-2]


def scrape(url: str) -> dict[float, float]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return histogram(r.read().decode())


def windows(metrics_url: str, runs: int, seconds: float) -> list[tuple[float, float, float]]:
    """``runs`` consecutive windows of ``seconds``: (P50, P95, observations) of each."""
    out = []
    before = scrape(metrics_url)
    for _ in range(runs):
        time.sleep(seconds)
        after = scrape(metrics_url)
        n = after.get(float("inf"), 0) - before.get(float("inf"), 0)
        out.append((quantile(before, after, 0.5), quantile(before, after, 0.95), n))
        before = after
    return out


def open_apps(base: str):
    """Chromium with every app open in its own tab, logged in as the demo operator."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=os.environ.get("SPARK_CHROMIUM", "/usr/bin/chromium"),
                                 args=CHROMIUM_ARGS)
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{base}/{APPS[0]}", timeout=60_000)
    page.wait_for_url("**/login**", timeout=30_000)
    page.fill("#username", "operator")
    page.fill("#password", "operator-demo")
    page.click("#login-submit")
    page.wait_for_url(f"{base}/{APPS[0]}", timeout=60_000)
    pages = [page]
    for app in APPS[1:]:
        p = ctx.new_page()
        p.goto(f"{base}/{app}", timeout=60_000)
        pages.append(p)
    for p in pages:
        p.wait_for_load_state("networkidle", timeout=60_000)
    return pw, browser, pages


def served_latency(tmp: Path, runs: int, seconds: float) -> list[tuple[float, float, float]]:
    var = Path(tempfile.mkdtemp(dir=tmp))
    port = free_port()
    proc = start_serve(var, port)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except OSError:
                pass
            time.sleep(0.5)
        pw, browser, pages = open_apps(base)
        try:
            time.sleep(10)  # the apps settle, the start-up exercise ends
            return windows(base + "/metrics", runs, seconds)
        finally:
            browser.close()
            pw.stop()
    finally:
        stop(proc)


ALONE = """
import sys, time
from prometheus_client import start_http_server
from spark_research.streams.pipeline import StreamPipeline
from spark_research.streams.orders import OrderConfig
from spark_research.streams.replay import Faults
from spark_research.platform.components import DEMO_FAULTS, DEMO_ORDERS
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
p = StreamPipeline(rate=200.0, faults=Faults.parse(DEMO_FAULTS), orders=OrderConfig.parse(DEMO_ORDERS["BTCUSDT"]),
                   root=sys.argv[2]).start()
print("ready", flush=True)
time.sleep(10**6)
"""


def alone_latency(tmp: Path, runs: int, seconds: float) -> list[tuple[float, float, float]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ALONE, str(port), tempfile.mkdtemp(dir=tmp)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(10)
        return windows(f"http://127.0.0.1:{port}/metrics", runs, seconds)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each latency window (>= 60 for figures)")
    ap.add_argument("--skip-startup", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spark-bench-serve-"))
    if not args.skip_startup:
        print(f"1) spark serve start-up, {args.runs} fresh starts (--no-exercise)")
        starts = [startup_once(tmp) for _ in range(args.runs)]
        first, ok = Spread.of([s[0] for s in starts]), Spread.of([s[1] for s in starts])
        print(f"   first page answers  {first:.2f} s")
        print(f"   every component up  {ok:.2f} s")
        record("serve", "spark serve → first page answers", first, "s", target="< 3 s")
        record("serve", "spark serve → every component up", ok, "s", target="< 15 s")
        warm = []
        for _ in range(args.runs):  # the numba cache is valid here (make bench runs `make warm` first)
            t0 = time.perf_counter()
            subprocess.run([*SPARK, "warm"], cwd=ROOT, check=True, capture_output=True, timeout=600)
            warm.append(time.perf_counter() - t0)
        print(f"   spark warm (valid numba cache, whole command)  {Spread.of(warm):.2f} s")
        record("serve", "spark warm with a valid numba cache (whole command)", Spread.of(warm), "s", target="< 10 s")

    print(f"2) ingest latency (exchange time → persisted), {args.runs} windows of {args.seconds:.0f} s, demo rate")
    served = served_latency(tmp, args.runs, args.seconds)
    alone = alone_latency(tmp, args.runs, args.seconds)
    for label, rows in ((f"served, {len(APPS)} apps open in chromium", served), ("same ingest alone (peer)", alone)):
        p50, p95 = Spread.of([r[0] for r in rows]), Spread.of([r[1] for r in rows])
        n = Spread.of([r[2] for r in rows])
        print(f"   {label:34s} P50 {p50:.3f} ms  P95 {p95:.3f} ms  ({n:.0f} messages per window)")
    s95, a95 = [r[1] for r in served], [r[1] for r in alone]
    ratio = Spread.of([s / a for s, a in zip(s95, a95)])
    print(f"   served / alone P95: {ratio:.2f}x")
    record("serve", f"ingest latency P95 inside spark serve, {len(APPS)} apps open", Spread.of(s95), "ms",
           peer="the same ingest alone", ratio=ratio, target="< 5 ms",
           note=f"{args.seconds:.0f} s windows, from the platform's /metrics")
    record("serve", "ingest latency P95, the same ingest alone", Spread.of(a95), "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

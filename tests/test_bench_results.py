"""bench/results.json and the README table made from it: recording, merging, rendering, checking.

No benchmark runs here: figures are recorded by hand into temporary files.
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@pytest.fixture
def bench(monkeypatch):
    """The bench helpers, imported as the benches import them (``bench/`` on ``sys.path``)."""
    monkeypatch.syspath_prepend(str(BENCH))
    mods = {name: importlib.import_module(name) for name in ("_timing", "_results", "report")}
    monkeypatch.setattr(mods["_results"], "RUN_ID", "run-1")
    return type("Bench", (), mods)


def new_run(bench, monkeypatch, run_id: str) -> None:
    """What a second ``python bench/<name>.py`` process looks like to ``record``."""
    monkeypatch.setattr(bench._results, "RUN_ID", run_id)


# ---------------------------------------------------------------------------- record
def test_record_stores_a_spread_with_its_min_max_runs_and_ratio(bench, tmp_path):
    path = tmp_path / "results.json"
    bench._results.record("backtest", "run_backtest", bench._timing.Spread(0.15, 0.14, 0.17, 5), "s",
                          peer="plain vectorbt", ratio=bench._timing.Spread(0.76, 0.7, 0.8, 5), target="≤ 1.25×",
                          path=path)
    fig = json.loads(path.read_text())["benches"]["backtest"]["figures"]["run_backtest"]
    assert fig == {"value": 0.15, "unit": "s", "min": 0.14, "max": 0.17, "runs": 5, "peer": "plain vectorbt",
                   "ratio": 0.76, "ratio_min": 0.7, "ratio_max": 0.8, "target": "≤ 1.25×"}


def test_record_leaves_out_what_was_not_given(bench, tmp_path):
    fig = bench._results.record("gates", "P95", 10.6, "µs", path=tmp_path / "r.json")
    assert fig == {"value": 10.6, "unit": "µs"}


def test_record_refuses_an_empty_name(bench, tmp_path):
    with pytest.raises(ValueError, match="name=''"):
        bench._results.record("gates", "", 1.0, "µs", path=tmp_path / "r.json")


def test_figures_of_one_run_accumulate_and_a_repeated_name_replaces_its_figure(bench, tmp_path):
    path = tmp_path / "r.json"
    for name, value in (("a", 1.0), ("b", 2.0), ("a", 3.0)):
        bench._results.record("gates", name, value, "µs", path=path)
    figs = bench._results.load(path)["benches"]["gates"]["figures"]
    assert {k: f["value"] for k, f in figs.items()} == {"a": 3.0, "b": 2.0}


def test_rerunning_a_bench_replaces_only_its_own_figures(bench, tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    bench._results.record("backtest", "old name", 1.0, "s", path=path)
    bench._results.record("streams", "throughput", 9e4, "msg/s", path=path)
    new_run(bench, monkeypatch, "run-2")
    bench._results.record("backtest", "new name", 2.0, "s", path=path)
    benches = bench._results.load(path)["benches"]
    assert list(benches["backtest"]["figures"]) == ["new name"]  # a renamed figure does not linger
    assert benches["streams"]["figures"] == {"throughput": {"value": 9e4, "unit": "msg/s"}}
    assert benches["streams"]["run"] == "run-1" and benches["backtest"]["run"] == "run-2"


def test_benches_are_kept_in_name_order_whichever_ran_first(bench, tmp_path):
    path = tmp_path / "r.json"
    for name in ("streams", "backtest", "gates"):
        bench._results.record(name, "figure", 1.0, "s", path=path)
    assert list(bench._results.load(path)["benches"]) == ["backtest", "gates", "streams"]


def test_each_bench_keeps_the_metadata_of_its_own_run(bench, tmp_path):
    path = tmp_path / "r.json"
    bench._results.record("gates", "P95", 10.6, "µs", path=path)
    meta = bench._results.load(path)["benches"]["gates"]
    assert dt.datetime.fromisoformat(meta["date"]).tzinfo is not None
    assert meta["cpu_count"] == os.cpu_count()
    assert meta["python"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["versions"]["numpy"] == importlib.import_module("numpy").__version__
    assert len(meta["load_avg"]) == 3 and isinstance(meta["argv"], list) and meta["platform"]
    assert meta["commit"] is None or meta["commit"].isalnum()


def test_metadata_tolerates_a_missing_git(bench, tmp_path, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(bench._results.subprocess, "run", no_git)
    bench._results._static_environment.cache_clear()
    try:
        bench._results.record("gates", "P95", 10.6, "µs", path=tmp_path / "r.json")
        meta = bench._results.load(tmp_path / "r.json")["benches"]["gates"]
    finally:
        bench._results._static_environment.cache_clear()
    assert meta["commit"] is None and meta["dirty"] is None


def test_a_write_that_fails_leaves_the_previous_file_and_no_temporary(bench, tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    bench._results.record("gates", "P95", 10.6, "µs", path=path)
    before = path.read_bytes()

    def broken_dump(obj, fh, **kwargs):
        fh.write('{"schema": 1, "ben')  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(bench._results.json, "dump", broken_dump)
    with pytest.raises(OSError, match="No space"):
        bench._results.record("gates", "P99", 20.0, "µs", path=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_names_the_file_that_is_not_a_results_file(bench, tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"figures": []}')
    with pytest.raises(ValueError, match=r"r\.json: not a results file"):
        bench._results.load(path)


def test_load_of_a_missing_file_is_empty(bench, tmp_path):
    assert bench._results.load(tmp_path / "none.json") == {"schema": 1, "benches": {}}


# ---------------------------------------------------------------------------- timing
def test_timed_returns_median_min_max_of_every_run_and_the_last_result(bench):
    calls = iter(range(5))
    t = bench._timing.timed(lambda: next(calls), repeat=5)
    assert (t.runs, len(t.samples), t.result) == (5, 5, 4)
    assert t.min <= t.median <= t.max


def test_a_rate_takes_its_min_from_the_slowest_run(bench):
    t = bench._timing.Timing(2.0, 1.0, 4.0, 3, samples=(2.0, 1.0, 4.0))
    assert t.rate(8) == bench._timing.Spread(4.0, 2.0, 8.0, 3)
    assert bench._timing.Spread(2.0, 1.0, 4.0, 3).rate(8) == bench._timing.Spread(4.0, 2.0, 8.0, 3)


def test_ratios_pair_runs_measured_together(bench):
    r = bench._timing.ratios([2.0, 4.0, 9.0], [1.0, 2.0, 3.0])
    assert (r.median, r.min, r.max, r.runs) == (2.0, 2.0, 3.0, 3)
    with pytest.raises(ValueError, match="3 runs against 2"):
        bench._timing.ratios([1.0, 2.0, 3.0], [1.0, 2.0])


# ---------------------------------------------------------------------------- README table
META = {"date": "2026-01-05T10:00:00+00:00", "argv": [], "load_avg": [0.4, 0.3, 0.2], "commit": "abc1234",
        "dirty": False, "cpu_count": 2, "platform": "Linux-x86_64", "machine": "x86_64", "python": "3.11.7",
        "versions": {"numpy": "2.4.6", "vectorbt": "1.2.0"}}
FIXTURE = {"schema": 1, "benches": {
    "backtest": {"run": "r1", **META, "figures": {
        "`run_backtest`, 1M bars": {"value": 0.149, "unit": "s", "min": 0.145, "max": 0.16, "runs": 5,
                                    "peer": "plain vectorbt", "ratio": 0.76, "ratio_min": 0.7, "ratio_max": 0.82,
                                    "target": "≤ 1.25×"},
        "plain vectorbt": {"value": 0.196, "unit": "s", "min": 0.19, "max": 0.2, "runs": 5}}},
    "optimizer": {"run": "r2", **META, "date": "2026-01-05T10:05:00+00:00", "dirty": True, "figures": {
        "2 workers | scaling": {"value": 1.64, "unit": "×", "min": 1.35, "max": 1.85, "runs": 7,
                                "peer": "two bare processes", "ratio": 0.95, "target": "≥ 1.6×"},
        "queue wait P95": {"value": 3.0, "unit": "ms", "note": "14.6 ms saturated"}}},
}}
EXPECTED = """\
<!-- generated by `make bench-table` (bench/report.py) from bench/results.json: do not edit by hand -->

| bench | benchmark | result | target |
|---|---|---|---|
| `backtest` | `run_backtest`, 1M bars | 0.149 s [0.145–0.160] = 0.76× [0.70–0.82] plain vectorbt | ≤ 1.25× |
|  | plain vectorbt | 0.196 s [0.190–0.200] | — |
| `optimizer` | 2 workers \\| scaling | 1.64× [1.35–1.85] (7 runs) = 0.95× two bare processes | ≥ 1.6× |
|  | queue wait P95 | 3.00 ms; 14.6 ms saturated | — |

Each result is the median [min–max] over 5 runs; a ratio with a range is the median [min–max] of the \
per-run ratios to a peer measured in the same run of its bench. Quoted from `bench/results.json`, which holds \
every figure with its metadata: measured `backtest` 2026-01-05 10:00 UTC (load 0.4), `optimizer` 2026-01-05 \
10:05 UTC (load 0.4); commit abc1234 (`backtest`); abc1234 with uncommitted changes (`optimizer`); 2 CPUs, \
Linux-x86_64, Python 3.11.7; numpy 2.4.6, vectorbt 1.2.0."""
README = "# Project\n\n## Benchmarks\n\nIntro.\n\n<!-- bench:begin -->\nstale\n<!-- bench:end -->\n\n## Next\n"


def test_the_table_is_rendered_from_results_json(bench):
    assert bench.report.render(FIXTURE) == EXPECTED


def test_an_empty_results_file_renders_a_hint_to_run_the_benches(bench):
    assert bench.report.render({"schema": 1, "benches": {}}).endswith("No figures recorded yet: run `make bench`.")


def test_the_readme_block_between_the_markers_is_replaced_and_nothing_else(bench):
    out = bench.report.replace_block(README, "TABLE")
    assert out == README.replace("stale", "TABLE")


def test_a_readme_without_markers_is_refused(bench):
    with pytest.raises(bench.report.MarkerError, match="bench:end"):
        bench.report.replace_block("<!-- bench:begin -->\n", "TABLE")


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "report.py"), *args], capture_output=True, text=True,
                          timeout=30)


def test_check_passes_after_a_rewrite_and_detects_a_hand_edited_table(tmp_path):
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps(FIXTURE))
    readme.write_text(README)
    assert run_report("--results", str(results), "--readme", str(readme), "--check").returncode == 1  # stale
    assert run_report("--results", str(results), "--readme", str(readme)).returncode == 0
    assert "## Next" in readme.read_text() and EXPECTED in readme.read_text()
    assert run_report("--results", str(results), "--readme", str(readme), "--check").returncode == 0
    readme.write_text(readme.read_text().replace("0.149 s", "0.120 s"))  # a figure typed by hand
    out = run_report("--results", str(results), "--readme", str(readme), "--check")
    assert out.returncode == 1
    assert "-| `backtest` | `run_backtest`, 1M bars | 0.120 s" in out.stderr and "make bench-table" in out.stderr


def test_the_readme_table_matches_bench_results_json():
    out = run_report("--readme", str(ROOT / "README.md"), "--check")
    assert out.returncode == 0, out.stderr

"""Gate decision latency: P50/P95/P99 over N decisions, with and without the durable audit write.

Two workloads, each run against several audit sinks measured in the same run:

* ``typical``: a stream of fills whose drift rarely breaches (a transition every ~1000 fills):
  what a live gate sees; most decisions write nothing.
* ``every-decision-audited``: thresholds chosen so that *every* decision is a state change
  (bad fill -> CLOSED, tick -> HALF_OPEN, clean fill -> OPEN, ...): every decision waits for
  its audit entry to be durable before it takes effect.

Sinks: ``memory`` (same hash chain, no I/O: the no-durable-write baseline), ``sqlite-normal``
(WAL, survives a killed process), ``sqlite-full`` (WAL + fsync per entry, survives power loss:
the default) and, as a peer for the choice of store, ``jsonl-fsync`` (an append-only JSON-lines
file, hash-chained, flush + fsync per line).

Each sink and workload runs ``--runs`` times (default 5, a fresh gate and store each run, sinks
round-robin): a percentile is taken within a run, then printed as the median [min–max] over the
runs, and ratios against ``memory`` are per-run ratios. Never asserts on wall time. Exits 1 if the
sinks disagree (different transitions or entry counts) or a chain does not verify. Figures of a
run with ``--n 20000`` (what ``make bench`` runs, about 1 minute) go to ``bench/results.json``.

    .venv/bin/python bench/gates.py            # 100k decisions per run, sink and workload
    .venv/bin/python bench/gates.py --n 20000  # quicker
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from _results import RESULTS, record
from _timing import MIN_RUNS, Spread, ratios

from spark_research.gates.audit import GENESIS, AuditEntry, AuditLog, MemoryAudit, entry_hash
from spark_research.gates.drift import FillDrift
from spark_research.gates.gate import Gate, GateThresholds

NS = 1_000_000_000


class JsonlFsyncAudit:
    """Peer store: hash-chained JSON lines, ``write + flush + fsync`` per entry."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "ab", buffering=0)
        self._prev, self._seq = GENESIS, 0

    def append(self, *, actor, gate, old_state, new_state, reason, values=None, kind="transition", ts_ns=None):
        ts_ns = time.time_ns() if ts_ns is None else ts_ns
        vals = orjson.dumps(values or {}, option=orjson.OPT_SORT_KEYS).decode()
        self._seq += 1
        h = entry_hash(self._seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, self._prev)
        self._f.write(orjson.dumps([self._seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals,
                                    self._prev, h]) + b"\n")
        os.fsync(self._f.fileno())
        self._prev = h
        return AuditEntry(self._seq, ts_ns, actor, kind, gate, old_state, new_state, reason, {}, self._prev, h)

    def count(self) -> int:
        with open(self.path, "rb") as f:
            return sum(1 for _ in f)

    def close(self) -> None:
        self._f.close()


def _drift(bps: float, ts: int) -> FillDrift:
    a = 100.0 * bps / 1e4
    return FillDrift("bench", "BTCUSDT", "o", ts, "buy", 1.0, 100.0, 100.0 + a, a, a, bps, -a)


def typical(gate: Gate, n: int, seed: int) -> np.ndarray:
    """Fills with lognormal drift; an occasional outlier closes the gate, cooldown reopens it."""
    rng = np.random.default_rng(seed)
    bps = rng.lognormal(0.5, 0.6, n)
    bps[rng.random(n) < 0.001] = 500.0
    lat = np.empty(n)
    pc = time.perf_counter_ns
    for i in range(n):
        ts = i * NS
        gate.heartbeat(ts)
        t0 = pc()
        if i % 10 == 9:
            gate.tick(ts)
        else:
            gate.observe_fill(_drift(float(bps[i]), ts), now_ns=ts)
        lat[i] = pc() - t0
    return lat


def every_decision_audited(gate: Gate, n: int, seed: int) -> np.ndarray:
    """Bad fill -> CLOSED, tick -> HALF_OPEN, clean fill -> OPEN, repeated: each decision writes."""
    lat = np.empty(n)
    pc = time.perf_counter_ns
    for i in range(n):
        ts = i * NS
        gate.heartbeat(ts)
        step = i % 3
        t0 = pc()
        if step == 0:
            d = gate.observe_fill(_drift(500.0, ts), now_ns=ts)
        elif step == 1:
            d = gate.tick(ts)
        else:
            d = gate.observe_fill(_drift(0.5, ts), now_ns=ts)
        lat[i] = pc() - t0
        if not d.changed:
            raise SystemExit(f"decision {i} did not change the state: workload broken")
    return lat


WORKLOADS = {
    "typical": (typical, GateThresholds(max_fill_drift_bps=100, max_drift_bps=None, max_pnl_delta=None,
                                        cooldown_s=30, probation_fills=5)),
    "every-decision-audited": (every_decision_audited, GateThresholds(max_fill_drift_bps=100, max_drift_bps=None,
                                                                      max_pnl_delta=None, cooldown_s=0,
                                                                      probation_fills=1)),
}


SINKS = ("memory", "sqlite-normal", "sqlite-full", "jsonl-fsync")
RECORDED_N = 20_000  # make bench's size: the README's figures


def run_once(wname: str, sink_name: str, n: int, seed: int, tmp: Path, run: int) -> tuple[np.ndarray, int, bool]:
    """One run of a workload against a fresh gate and sink: (latencies in µs, audit entries, chain verifies)."""
    fn, th = WORKLOADS[wname]
    folder = tmp / f"run{run}"
    folder.mkdir(exist_ok=True)
    if sink_name == "memory":
        sink = MemoryAudit()
    elif sink_name.startswith("sqlite"):
        sink = AuditLog(folder / f"{wname}-{sink_name}.db", synchronous=sink_name.split("-")[1].upper())
    else:
        sink = JsonlFsyncAudit(folder / f"{wname}.jsonl")
    gate = Gate("bench", "BTCUSDT", th, sink, created_ns=0)
    lat_us = fn(gate, n, seed) / 1e3
    if sink_name == "jsonl-fsync":
        entries, verified = sink.count(), True
    else:
        report = sink.verify()
        entries, verified = report.entries, report.ok
        if not report.ok:
            print(f"  {sink_name}: audit chain does not verify: {report}")
    sink.close()
    return lat_us, entries, verified


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="decisions per run, sink and workload")
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help="runs per sink and workload (default 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args(argv)
    recording = not args.no_record and args.n == RECORDED_N and args.runs >= MIN_RUNS
    tmp = Path(tempfile.mkdtemp(prefix="bench-gates-"))
    ok = True
    print(f"gate decision latency, {args.n:,} decisions per run (µs): each run's percentile, median [min–max] "
          f"of {args.runs} runs; ratio = P50 / P50 of memory, run by run")
    print(f"{'workload':<24}{'sink':<15}{'P50':>24}{'P95':>24}{'P99':>26}{'max':>9}{'entries':>9}{'P50 ratio':>11}"
          f"{'P95<1ms':>9}")
    figures: dict[tuple[str, str], dict] = {}
    for wname in WORKLOADS:
        lat: dict[str, list[np.ndarray]] = {sink: [] for sink in SINKS}
        entries: dict[str, set[int]] = {sink: set() for sink in SINKS}
        for run in range(args.runs):
            for sink_name in SINKS:  # round-robin: a slow minute of the machine hits every sink
                lat_us, n_entries, verified = run_once(wname, sink_name, args.n, args.seed, tmp, run)
                lat[sink_name].append(lat_us)
                entries[sink_name].add(n_entries)
                ok &= verified
            if run < args.runs - 1:
                shutil.rmtree(tmp / f"run{run}")  # keep the last run's files only: 100k fsync'd entries are large
        base = [np.percentile(x, 50) for x in lat["memory"]]
        for sink_name in SINKS:
            if entries[sink_name] != entries["memory"] or len(entries["memory"]) != 1:
                print(f"  {sink_name}: {sorted(entries[sink_name])} entries, memory wrote {sorted(entries['memory'])}: "
                      "sinks disagree")
                ok = False
            runs = lat[sink_name]
            p = {q: Spread.of(np.percentile(x, q) for x in runs) for q in (50, 95, 99)}
            ratio = ratios([np.percentile(x, 50) for x in runs], base)
            figures[wname, sink_name] = {"p": p, "ratio": ratio}
            print(f"{wname:<24}{sink_name:<15}{format(p[50], '.1f'):>24}{format(p[95], '.1f'):>24}"
                  f"{format(p[99], '.1f'):>26}{max(x.max() for x in runs):9.0f}{max(entries[sink_name]):9d}"
                  f"{ratio.median:10.1f}x{'yes' if p[95].median < 1000 else 'no':>9}")
    print(f"(audit files of the last run in {tmp / f'run{args.runs - 1}'})")
    if recording and ok:
        for wname, label in (("typical", "typical stream"), ("every-decision-audited", "every decision audited")):
            full, mem = figures[wname, "sqlite-full"], figures[wname, "memory"]
            peer = f"decision, {label}, in memory (no durable write), P50"
            record("gates", f"decision, {label}, fsync'd SQLite audit, P50", full["p"][50], "µs", peer=peer,
                   ratio=full["ratio"])
            record("gates", f"decision, {label}, fsync'd SQLite audit, P95", full["p"][95], "µs", target="< 1 ms")
            record("gates", peer, mem["p"][50], "µs")
        jsonl = figures["every-decision-audited", "jsonl-fsync"]
        record("gates", "decision, every decision audited, fsync'd JSON lines (peer store), P50", jsonl["p"][50], "µs",
               peer="decision, every decision audited, in memory (no durable write), P50", ratio=jsonl["ratio"])
        print(f"figures recorded in {RESULTS}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())

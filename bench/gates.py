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

Prints medians/percentiles and ratios against ``memory``; never asserts on wall time. Exits 1
if the sinks disagree (different transitions or entry counts) or a chain does not verify.

    .venv/bin/python bench/gates.py            # 100k decisions per sink and workload
    .venv/bin/python bench/gates.py --n 20000  # quicker
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="decisions per sink and workload")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-gates-"))
    ok = True
    print(f"gate decision latency, {args.n:,} decisions per row (µs); ratio = P50 / P50 of memory")
    print(f"{'workload':<24}{'sink':<15}{'P50':>9}{'P95':>9}{'P99':>9}{'max':>10}{'entries':>9}{'P50 ratio':>11}"
          f"{'P95<1ms':>9}")
    for wname, (fn, th) in WORKLOADS.items():
        base, ref_entries = None, None
        for sink_name in ("memory", "sqlite-normal", "sqlite-full", "jsonl-fsync"):
            if sink_name == "memory":
                sink = MemoryAudit()
            elif sink_name.startswith("sqlite"):
                sink = AuditLog(tmp / f"{wname}-{sink_name}.db", synchronous=sink_name.split("-")[1].upper())
            else:
                sink = JsonlFsyncAudit(tmp / f"{wname}.jsonl")
            gate = Gate("bench", "BTCUSDT", th, sink, created_ns=0)
            lat_us = fn(gate, args.n, args.seed) / 1e3
            if sink_name == "jsonl-fsync":
                entries = sink.count()
            else:
                report = sink.verify()
                entries = report.entries
                if not report.ok:
                    print(f"  {sink_name}: audit chain does not verify: {report}")
                    ok = False
            sink.close()
            ref_entries = entries if ref_entries is None else ref_entries
            if entries != ref_entries:
                print(f"  {sink_name}: {entries} entries, memory wrote {ref_entries}: sinks disagree")
                ok = False
            p50, p95, p99 = np.percentile(lat_us, [50, 95, 99])
            base = p50 if base is None else base
            print(f"{wname:<24}{sink_name:<15}{p50:9.1f}{p95:9.1f}{p99:9.1f}{lat_us.max():10.0f}{entries:9d}"
                  f"{p50 / base:10.1f}x{'yes' if p95 < 1000 else 'no':>9}")
    print(f"(audit files in {tmp})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

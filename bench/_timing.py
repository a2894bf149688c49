"""Timing helpers shared by the benchmarks (run as ``python bench/<name>.py``: this folder is on ``sys.path``).

Every figure a benchmark reports is a :class:`Spread`: the median over at least :data:`MIN_RUNS`
runs with its min and max, so a reader sees how much the machine moved it.

>>> t = timed(lambda: sum(range(1000)), repeat=5)
>>> t.runs, t.result
(5, 499500)
>>> f"{Spread.of([3.0, 1.0, 2.0]):.1f}"
'2.0 [1.0–3.0]'
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

#: The fewest runs a recorded figure may be the median of.
MIN_RUNS = 5


@dataclass(frozen=True)
class Spread:
    """Median, min and max of one figure over ``runs`` repeated runs."""

    median: float
    min: float
    max: float
    runs: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The spread of per-run values (a time, a rate, a percentile of each run)."""
        vals = [float(v) for v in values]
        if not vals:
            raise ValueError("Spread.of: no values (a figure needs at least one run)")
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))

    def scaled(self, factor: float) -> Spread:
        """The same spread in another unit, e.g. ``t.scaled(1e3)`` for seconds -> ms."""
        return Spread(self.median * factor, self.min * factor, self.max * factor, self.runs)

    def rate(self, count: float) -> Spread:
        """``count`` per unit of this spread, e.g. combos/s from seconds: the slowest run gives the min."""
        return Spread(count / self.median, count / self.max, count / self.min, self.runs)

    def __format__(self, spec: str) -> str:
        return f"{self.median:{spec}} [{self.min:{spec}}–{self.max:{spec}}]"


@dataclass(frozen=True)
class Timing(Spread):
    """Wall-time spread in seconds, every sample, and the last call's result."""

    samples: tuple[float, ...] = ()
    result: Any = None

    def rate(self, count: float) -> Spread:
        """``count`` per second, run by run (``t.rate(n_combos)``: combos/s)."""
        return Spread.of(count / t for t in self.samples) if self.samples else super().rate(count)


def timed(fn: Callable[[], Any], repeat: int = MIN_RUNS) -> Timing:
    """Wall time of ``repeat`` calls of ``fn`` (seconds)."""
    return timed_interleaved({"fn": fn}, repeat)["fn"]


def timed_interleaved(fns: Mapping[str, Callable[[], Any]], repeat: int = MIN_RUNS) -> dict[str, Timing]:
    """Time contenders round-robin (a, b, a, b, ...) so that each sees the same machine state.

    On a shared machine a slow minute then hits every contender instead of one, and the
    per-run ratios (:func:`ratios`) stay meaningful.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    last: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: Timing(*_stats(ts), samples=tuple(ts), result=last[name]) for name, ts in times.items()}


def ratios(a: Iterable[float] | Timing, b: Iterable[float] | Timing) -> Spread:
    """Spread of the per-run ratios a[i] / b[i] of two contenders measured in the same runs."""
    xs = a.samples if isinstance(a, Timing) else list(a)
    ys = b.samples if isinstance(b, Timing) else list(b)
    if len(xs) != len(ys):
        raise ValueError(f"ratios: {len(xs)} runs against {len(ys)}; pair runs measured together")
    return Spread.of(x / y for x, y in zip(xs, ys))


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls of ``fn`` (seconds) and the last call's result."""
    t = timed(fn, repeat)
    return t.median, t.result


def _stats(values: list[float]) -> tuple[float, float, float, int]:
    s = Spread.of(values)
    return s.median, s.min, s.max, s.runs

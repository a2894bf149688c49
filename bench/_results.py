"""Record benchmark figures in ``bench/results.json``, the file the README's table is made from.

Each bench records its figures by name; a bench's first :func:`record` in a process starts a
fresh set for that bench (its old figures go, so a renamed figure does not linger), and leaves
every other bench's figures alone. Each bench keeps the metadata of its own run: date, git
commit, command line, CPU count, load average, platform, Python and library versions.

Example, in ``bench/<name>.py`` (``bench/`` is on ``sys.path`` when it runs)::

    from _results import record
    from _timing import ratios, timed_interleaved

    t = timed_interleaved({"spark": lambda: spark_run(bars), "vbt": lambda: vbt_run(bars)}, 5)
    record("backtest", "run_backtest, 1M bars", t["spark"], "s", peer="plain vectorbt",
           ratio=ratios(t["spark"], t["vbt"]), target="≤ 1.25×")
    record("backtest", "plain vectorbt", t["vbt"], "s")

Stdlib only: ``bench/report.py`` reads the file without importing ``spark_research``.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from _timing import Spread

#: ``SPARK_BENCH_RESULTS`` points the benches elsewhere, e.g. to try one without touching the committed file.
RESULTS = Path(os.environ.get("SPARK_BENCH_RESULTS") or Path(__file__).resolve().with_name("results.json"))
SCHEMA = 1
#: Libraries whose versions move the figures (the platform's stack and the peers).
VERSIONS = ("numpy", "pandas", "numba", "vectorbt", "dask", "distributed", "duckdb", "pyarrow", "panel",
            "backtesting", "websockets", "orjson")
_NUMBERS = {"value", "min", "max", "ratio", "ratio_min", "ratio_max"}
#: Identifies this process's run: a bench entry written by another run is replaced, not merged into.
RUN_ID = f"{os.getpid()}-{time.time_ns()}"


def record(bench: str, name: str, value: float | Spread, unit: str, *, min: float | None = None,
           max: float | None = None, runs: int | None = None, peer: str | None = None,
           ratio: float | Spread | None = None, target: str | None = None, note: str | None = None,
           path: Path | str | None = None) -> dict[str, Any]:
    """Add figure ``name`` of ``bench`` to the results file and return the stored figure.

    ``value`` is a median (then pass ``min``, ``max``, ``runs``) or a :class:`Spread`, which
    brings its own. ``peer`` names what the figure is compared with (another figure of the same
    bench, or a phrase) and ``ratio`` is value / peer (a number or a per-run :class:`Spread`).
    ``target`` is the goal as the README shows it (``"≤ 1.25×"``); ``note`` a short remark.
    """
    if not bench or not name:
        raise ValueError(f"record: bench and name must be non-empty, got bench={bench!r} name={name!r}")
    if isinstance(value, Spread):
        value, min, max, runs = value.median, value.min, value.max, value.runs
    if isinstance(ratio, Spread):
        ratio_min, ratio_max, ratio = ratio.min, ratio.max, ratio.median
    else:
        ratio_min = ratio_max = None
    fields = {"value": value, "unit": unit, "min": min, "max": max, "runs": runs, "peer": peer, "ratio": ratio,
              "ratio_min": ratio_min, "ratio_max": ratio_max, "target": target, "note": note}
    figure = {key: _round(v) if key in _NUMBERS else int(v) if key == "runs" else v
              for key, v in fields.items() if v is not None}
    path = Path(path) if path is not None else RESULTS
    with _locked(path.parent):
        data = load(path)
        entry = data["benches"].get(bench)
        if entry is None or entry.get("run") != RUN_ID:
            entry = {"run": RUN_ID, **environment(), "figures": {}}
        entry["figures"][name] = figure
        # benches in name order: the table does not depend on which bench ran first
        data["benches"] = dict(sorted({**data["benches"], bench: entry}.items()))
        _write_atomic(path, data)
    return figure


def load(path: Path | str | None = None) -> dict[str, Any]:
    """The results file as a dict (an empty one if the file does not exist yet)."""
    path = Path(path) if path is not None else RESULTS
    if not path.exists():
        return {"schema": SCHEMA, "benches": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON results file ({e})") from e
    if data.get("schema") != SCHEMA or not isinstance(data.get("benches"), dict):
        raise ValueError(f"{path}: not a results file of schema {SCHEMA} (schema={data.get('schema')!r})")
    return data


def environment() -> dict[str, Any]:
    """Where and when the figures were measured (the date and load average are taken now)."""
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "load_avg": [round(x, 2) for x in os.getloadavg()], **_static_environment()}


@functools.cache
def _static_environment() -> dict[str, Any]:
    versions = {}
    for lib in VERSIONS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return {"commit": _git("rev-parse", "--short", "HEAD"),
            # uncommitted changes to tracked files when the bench ran (None if git is unavailable)
            "dirty": None if (st := _git("status", "--porcelain", "--untracked-files=no")) is None else bool(st),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "versions": versions}


def _round(x: float) -> float:
    """Six significant digits: the runs' spread is far wider, and results.json diffs stay readable."""
    return float(f"{float(x):.6g}")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class _locked:
    """An exclusive ``flock`` on a directory: benches run side by side must not lose each other's figures.

    The directory, not the file: the file is replaced by a rename, so a lock on it would not hold.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def __enter__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, fsync, rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

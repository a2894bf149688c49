"""spark_research — a notebook-first research platform for systematic traders.

Import the capability you need, e.g. ``from spark_research.backtest import run_backtest``;
this top-level module deliberately imports nothing heavy.
"""
from __future__ import annotations

import os as _os
from pathlib import Path as _Path

__version__ = "0.1.0"

# numba compiles vectorbt's kernels on first use (~40 s cold). Keep its on-disk cache in a
# stable per-user location so only the very first run on a machine pays for it.
_os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(_Path(_os.environ.get("XDG_CACHE_HOME", _Path.home() / ".cache")) / "spark_research" / "numba")
)

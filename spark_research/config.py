"""Settings of the platform: environment variables ``SPARK_*`` over embedded-mode defaults.

Example::

    >>> from spark_research.config import settings
    >>> settings().data_dir.name
    'data'
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(var: str, default: Path) -> Path:
    return Path(os.environ[var]).expanduser().resolve() if os.environ.get(var) else default


@dataclass(frozen=True)
class Settings:
    """Where things live and which services to reach. Build with :func:`settings`."""

    data_dir: Path  #: ``data/``: sample datasets and the default store
    store_dir: Path  #: Parquet store root (``SPARK_STORE``)
    var_dir: Path  #: runtime state: sweeps, ingest, audit log, exports (``SPARK_VAR``)
    golden_dir: Path  #: golden files (``SPARK_GOLDEN``)
    dask_scheduler: str | None  #: ``SPARK_DASK_SCHEDULER=tcp://host:8786``; None = LocalCluster
    host: str  #: bind address of every server (``SPARK_HOST``, loopback by default)


def settings() -> Settings:
    """Read the current settings (cheap; re-reads the environment on each call)."""
    data_dir = _path("SPARK_DATA", PROJECT_ROOT / "data")
    return Settings(
        data_dir=data_dir,
        store_dir=_path("SPARK_STORE", data_dir / "store"),
        var_dir=_path("SPARK_VAR", PROJECT_ROOT / "var"),
        golden_dir=_path("SPARK_GOLDEN", PROJECT_ROOT / "golden"),
        dask_scheduler=os.environ.get("SPARK_DASK_SCHEDULER") or None,
        host=os.environ.get("SPARK_HOST", "127.0.0.1"),
    )

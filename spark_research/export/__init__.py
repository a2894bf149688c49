"""Export@Scale: streaming CSV, PDF reports from notebooks, export jobs and HTTP endpoints.

Public surface::

    from spark_research.export import open_source, write_csv, render_report, ExportManager, SOURCES

The HTTP handlers live in :mod:`spark_research.export.handlers` (imported on demand: they
need Tornado), the companion server in :mod:`spark_research.export.server`.

Example::

    >>> import tempfile, pathlib
    >>> from spark_research.export import open_source, write_csv
    >>> write_csv(open_source("synthetic_trades", {"rows": 100}), pathlib.Path(tempfile.mkdtemp()) / "f.csv").rows
    100
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

# Names resolve lazily (PEP 562): ``spark --help`` imports ``export.cli`` and must not pay for
# pandas/pyarrow, and this file is no barrel importing everything up front.
_WHERE = {
    "AuthError": "errors", "ConcurrencyLimitError": "errors", "ExportCancelledError": "errors",
    "ExportError": "errors", "ExportFinishedError": "errors", "ExportNotReadyError": "errors",
    "ExportParamError": "errors", "ExportSourceError": "errors", "UnknownExportError": "errors",
    "ReportRenderError": "errors", "FORMATS": "jobs", "ExportJob": "jobs", "ExportManager": "jobs",
    "RENDERERS": "report", "ReportResult": "report", "render_report": "report", "SOURCES": "sources",
    "Source": "sources", "from_parquet": "sources", "from_table": "sources", "open_source": "sources",
    "register_source": "sources", "CsvResult": "streaming", "write_csv": "streaming",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports("spark_research.export", _WHERE)

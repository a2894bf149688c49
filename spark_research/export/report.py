"""PDF reports: a parameterised notebook executed by papermill, printed by chromium.

The pipeline for a backtest report (``render_report("backtest", params, "out.pdf")``):

1. run the backtest (source ``backtest_trades``) and stream **all** its trades to a CSV;
2. write the artifacts (meta and stats, equity/drawdown, trades) to a work directory;
3. execute ``notebooks/reports/backtest_report.ipynb`` with papermill (``artifacts`` parameter);
4. convert it with :class:`~spark_research.export.pdf.ChromiumPDFExporter` (static PNG charts,
   no remote resource) and embed the trades CSV in the PDF as a file attachment.

So the PDF holds the stats table, the equity and drawdown charts, monthly returns, a trade
summary with the totals and the best/worst trades, and every trade in ``trades.csv``
attached: a table of 50,000 rows is a thousand pages nobody reads, while the attachment
opens in a spreadsheet and its totals match the summary's.

Example::

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.pdf"
    >>> res = render_report("backtest", {"synthetic_bars": 3_000}, out)   # doctest: +SKIP
    >>> res.rows == res.meta["stats"]["trades"]                           # doctest: +SKIP
    True
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from spark_research.config import PROJECT_ROOT
from spark_research.export.errors import ExportParamError
from spark_research.export.sources import open_source
from spark_research.export.streaming import ProgressFn, write_csv

REPORTS_DIR = Path(os.environ.get("SPARK_REPORTS", PROJECT_ROOT / "notebooks" / "reports"))
#: Report kind -> (notebook under ``notebooks/reports``, source of its records).
REPORTS: dict[str, tuple[str, str]] = {"backtest": ("backtest_report.ipynb", "backtest_trades")}
ATTACHMENT_NAME = "trades.csv"


@dataclass(frozen=True)
class ReportResult:
    """A rendered report: PDF path, records (trades), PDF bytes, timings per stage (s), meta."""

    path: Path
    rows: int
    bytes: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def prepare_backtest_artifacts(params: Mapping[str, Any], directory: str | Path,
                               progress: ProgressFn | None = None) -> Path:
    """Run the backtest of ``params`` and write its artifacts (and full trades CSV) to ``directory``.

    Example::

        >>> import tempfile
        >>> d = prepare_backtest_artifacts({"synthetic_bars": 2_000}, tempfile.mkdtemp())  # doctest: +SKIP
        >>> sorted(p.name for p in d.iterdir())                                            # doctest: +SKIP
        ['equity.parquet', 'meta.json', 'trades.csv', 'trades.parquet']
    """
    import pyarrow as pa

    from spark_research.export.report_data import write_backtest_artifacts

    directory = Path(directory)
    src = open_source("backtest_trades", params)
    batches = list(src.batches)  # the trades of one backtest: already in memory
    table = pa.Table.from_batches(batches, schema=src.schema)
    src.batches = iter(batches)
    write_csv(src, directory / ATTACHMENT_NAME, progress=progress)
    res = src.context["result"]
    meta = {"strategy": res.strategy, "params": res.params, "symbols": res.symbols, "bars": src.context["bars"],
            "stats": res.stats, "request": dict(params)}
    return write_backtest_artifacts(directory, meta, res.equity, res.drawdown, table.to_pandas(), ATTACHMENT_NAME)


def render_report(kind: str, params: Mapping[str, Any] | None, out: str | os.PathLike[str], *,
                  title: str | None = None, progress: ProgressFn | None = None,
                  stage: Callable[[str], None] | None = None, timeout: float = 300.0) -> ReportResult:
    """Render report ``kind`` for ``params`` to the PDF ``out``; see the module docstring.

    ``progress(rows_done, rows_total, bytes)`` follows the records; ``stage(name)`` is called
    as the pipeline enters ``data``, ``execute``, ``print`` and ``attach``.

    Example::

        >>> render_report("nope", {}, "x.pdf")
        Traceback (most recent call last):
        ...
        spark_research.export.errors.ExportParamError: field 'what' = 'nope': reports available: ['backtest']
    """
    import nbformat
    import papermill
    from pypdf import PdfReader, PdfWriter

    from spark_research.export.pdf import ChromiumPDFExporter

    if kind not in REPORTS:
        raise ExportParamError("what", kind, f"reports available: {sorted(REPORTS)}")
    notebook, _source = REPORTS[kind]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = stage or (lambda name: None)
    timings: dict[str, float] = {}
    t_start = t = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"spark-report-{kind}-"))
    try:
        stage("data")
        prepare_backtest_artifacts(params or {}, work, progress=progress)
        timings["data"] = time.perf_counter() - t
        stage("execute")
        t = time.perf_counter()
        executed = papermill.execute_notebook(
            str(REPORTS_DIR / notebook), str(work / "report.ipynb"),
            parameters={"artifacts": str(work), "title": title or f"{kind.capitalize()} report"},
            kernel_name="python3", progress_bar=False, log_output=False, cwd=str(work),
            execution_timeout=int(timeout),
        )
        timings["execute"] = time.perf_counter() - t
        stage("print")
        t = time.perf_counter()
        exporter = ChromiumPDFExporter()
        exporter.exclude_input = True
        pdf, _ = exporter.from_notebook_node(nbformat.from_dict(executed))
        timings["print"] = time.perf_counter() - t
        stage("attach")
        t = time.perf_counter()
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
        writer.add_attachment(ATTACHMENT_NAME, (work / ATTACHMENT_NAME).read_bytes())
        tmp = out.with_name(f".tmp-{uuid.uuid4().hex}-{out.name}")
        try:
            with open(tmp, "wb") as fh:
                writer.write(fh)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        timings["attach"] = time.perf_counter() - t
        meta = json.loads((work / "meta.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = int(meta["stats"]["trades"])
    return ReportResult(out, rows, out.stat().st_size, time.perf_counter() - t_start, timings, meta)

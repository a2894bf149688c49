"""PDF reports: a parameterised notebook executed by papermill, printed by chromium or LaTeX.

The pipeline for a backtest report (``render_report("backtest", params, "out.pdf")``):

1. run the backtest (source ``backtest_trades``) and stream **all** its trades to a CSV;
2. write the artifacts (meta and stats, equity/drawdown, trades) to a work directory;
3. execute ``notebooks/reports/backtest_report.ipynb`` with papermill (``artifacts`` parameter);
4. print it with :func:`~spark_research.export.pdf.print_notebook`: Debian's chromium, or
   nbconvert's LaTeX route (xelatex) as the fallback (``renderer="auto"``, the default) or on
   request (``renderer="latex"``); static PNG charts, no remote resource either way;
5. embed the trades CSV in the PDF as a file attachment and record the renderer in the PDF's
   metadata (``/SparkRenderer``).

Steps 3 and 4 run in a worker process (:mod:`spark_research.export._report_worker`), started
before step 1 so that its imports overlap the backtest; for the chromium route it launches the
browser as step 3 begins, beside the kernel. A ``cancel`` kills it with the kernel, chromium or
xelatex it started. The backtest itself is not interruptible; a cancel during
step 1 takes effect at the next CSV batch.

So the PDF holds the stats table, the equity and drawdown charts, monthly returns, a trade
summary with the totals and the best/worst trades, and every trade in ``trades.csv``
attached: a table of 50,000 rows is a thousand pages nobody reads, while the attachment
opens in a spreadsheet and its totals match the summary's.

A model strategy's report (``{"strategy": "model:ID"}``) adds a "Model" section: the card from the
registry (id, kind, features and their code hashes, training window, CV scores) and, computed in
step 2 on the report's bars (:func:`write_model_section`: a seeded sample, bounded), the
permutation importance (MDA) and SHAP summary charts. Other strategies' reports have no such section.

Example::

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.pdf"
    >>> res = render_report("backtest", {"synthetic_bars": 3_000}, out)   # doctest: +SKIP
    >>> res.rows == res.meta["stats"]["trades"], res.renderer             # doctest: +SKIP
    (True, 'chromium')
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from spark_research.config import PROJECT_ROOT
from spark_research.export._process import kill_tree
from spark_research.export.errors import ExportCancelledError, ExportParamError, ReportRenderError

if TYPE_CHECKING:  # the report worker imports this module for check_renderer: no pandas there
    from spark_research.export.streaming import ProgressFn

REPORTS_DIR = Path(os.environ.get("SPARK_REPORTS", PROJECT_ROOT / "notebooks" / "reports"))
#: Report kind -> (notebook under ``notebooks/reports``, source of its records).
REPORTS: dict[str, tuple[str, str]] = {"backtest": ("backtest_report.ipynb", "backtest_trades")}
ATTACHMENT_NAME = "trades.csv"
#: A model strategy's report explains the model on a seeded sample of its bars' labelled rows (MDA on
#: this many, SHAP on the second number of them): seconds, whatever the bars.
MODEL_SAMPLE_ROWS, MODEL_SHAP_ROWS, MODEL_SEED = 2_000, 400, 0
#: ``renderer`` of a report: chromium with the LaTeX fallback, or one route only.
RENDERERS = ("auto", "chromium", "latex")


def check_renderer(renderer: object, field: str = "renderer") -> str:
    """Return ``renderer`` if it is one of :data:`RENDERERS`, else raise :class:`ExportParamError`.

    Example::

        >>> check_renderer("latex")
        'latex'
        >>> check_renderer("pdfkit")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        spark_research.export.errors.ExportParamError: field 'renderer' = 'pdfkit': must be one of ('auto', ...)
    """
    if renderer not in RENDERERS:
        raise ExportParamError(field, renderer, f"must be one of {RENDERERS}")
    return str(renderer)


@dataclass(frozen=True)
class ReportResult:
    """A rendered report: PDF path, records (trades), PDF bytes, timings per stage (s), meta,
    the renderer that printed it and, if that is LaTeX under ``auto``, why chromium did not."""

    path: Path
    rows: int
    bytes: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    renderer: str = "chromium"
    renderer_fallback: str | None = None


def prepare_backtest_artifacts(params: Mapping[str, Any], directory: str | Path,
                               progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> Path:
    """Run the backtest of ``params`` and write its artifacts (and full trades CSV) to ``directory``.

    Example::

        >>> import tempfile
        >>> d = prepare_backtest_artifacts({"synthetic_bars": 2_000}, tempfile.mkdtemp())  # doctest: +SKIP
        >>> sorted(p.name for p in d.iterdir())                                            # doctest: +SKIP
        ['equity.parquet', 'meta.json', 'trades.csv', 'trades.parquet']
    """
    import pyarrow as pa

    from spark_research.backtest.registry import identify
    from spark_research.export.report_data import write_backtest_artifacts
    from spark_research.export.sources import open_source
    from spark_research.export.streaming import write_csv

    directory = Path(directory)
    src = open_source("backtest_trades", params)
    batches = list(src.batches)  # the trades of one backtest: already in memory
    table = pa.Table.from_batches(batches, schema=src.schema)
    src.batches = iter(batches)
    write_csv(src, directory / ATTACHMENT_NAME, progress=progress, cancel=cancel)
    res = src.context["result"]
    meta = {"strategy": res.strategy, "params": res.params, "symbols": res.symbols, "bars": src.context["bars"],
            "stats": res.stats, "request": {k: (v if k != "strategy" or isinstance(v, str) else identify(v).ref)
                                            for k, v in params.items()}}
    if cancel is not None and cancel.is_set():
        raise ExportCancelledError("report cancelled")
    model = _model_of(params.get("strategy", "sma_cross"))
    if model is not None:  # a model strategy: its card and why it predicts what it does, on these bars
        meta["model"] = write_model_section(directory, model, src.context["frame"])
    return write_backtest_artifacts(directory, meta, res.equity, res.drawdown, table, ATTACHMENT_NAME)


def _model_of(strategy: Any) -> Any:
    """The model (``LoadedModel``) behind ``strategy`` if it is a model strategy, else None."""
    from spark_research.backtest import get_strategy
    from spark_research.models.strategy import ModelStrategy

    cls = get_strategy(strategy)
    if isinstance(cls, type) and issubclass(cls, ModelStrategy) and cls.model_id:
        return cls.model()
    return None


def write_model_section(directory: str | Path, model: Any, bars: Any, *, max_rows: int = MODEL_SAMPLE_ROWS,
                        shap_rows: int = MODEL_SHAP_ROWS, seed: int = MODEL_SEED) -> dict[str, Any]:
    """Write what the report's "Model" section shows for ``model`` (a ``LoadedModel``) to ``directory``: its
    card and :func:`~spark_research.models.explain.explain_model` on ``bars`` (``max_rows`` labelled rows
    sampled with ``seed``, SHAP on ``shap_rows`` of them). Bars too few to label give the card and the reason.
    Returns the summary kept in the report's meta (``ReportResult.meta["model"]``).
    """
    from spark_research.export.report_data import write_model_artifacts
    from spark_research.models.errors import ModelError
    from spark_research.models.explain import explain_model

    sampling = {"max_rows": max_rows, "shap_rows": shap_rows, "seed": seed}
    try:
        explanation = explain_model(model, bars, max_rows=max_rows, shap_rows=shap_rows, seed=seed)
    except ModelError as exc:
        return write_model_artifacts(Path(directory), model.card.to_dict(), None, sampling=sampling,
                                     error=f"no explanation on these bars: {exc}")
    return write_model_artifacts(Path(directory), model.card.to_dict(), explanation, sampling=sampling)


def render_report(kind: str, params: Mapping[str, Any] | None, out: str | os.PathLike[str], *,
                  title: str | None = None, renderer: str = "auto", progress: ProgressFn | None = None,
                  stage: Callable[[str], None] | None = None, cancel: threading.Event | None = None,
                  timeout: float = 300.0) -> ReportResult:
    """Render report ``kind`` for ``params`` to the PDF ``out``; see the module docstring.

    ``renderer`` is ``auto`` (chromium, LaTeX if chromium is missing or fails), ``chromium`` or
    ``latex``. ``progress(rows_done, rows_total, bytes)`` follows the records; ``stage(name)`` is
    called as the pipeline enters ``data``, ``execute``, ``print`` and ``attach``. Setting
    ``cancel`` stops the report (:class:`ExportCancelledError`), its worker and subprocesses
    killed. Executing and printing together may take ``timeout`` seconds.

    Example::

        >>> render_report("nope", {}, "x.pdf")
        Traceback (most recent call last):
        ...
        spark_research.export.errors.ExportParamError: field 'what' = 'nope': reports available: ['backtest']
    """
    from pypdf import PdfReader, PdfWriter

    if kind not in REPORTS:
        raise ExportParamError("what", kind, f"reports available: {sorted(REPORTS)}")
    check_renderer(renderer)
    notebook, _source = REPORTS[kind]
    title = title or f"{kind.capitalize()} report"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = stage or (lambda name: None)
    timings: dict[str, float] = {}
    t_start = t = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"spark-report-{kind}-"))
    worker = _Worker(work)
    try:
        stage("data")
        prepare_backtest_artifacts(params or {}, work, progress=progress, cancel=cancel)
        timings["data"] = time.perf_counter() - t
        stage("execute")
        answer = worker.run({"notebook": str(REPORTS_DIR / notebook), "work": str(work), "title": title,
                             "renderer": renderer, "timeout": timeout}, stage, cancel, timeout)
        timings.update(answer["timings"])
        stage("attach")
        t = time.perf_counter()
        writer = PdfWriter(clone_from=PdfReader(work / "printed.pdf"))
        writer.add_attachment(ATTACHMENT_NAME, (work / ATTACHMENT_NAME).read_bytes())
        writer.add_metadata({"/Title": title, "/Creator": f"spark_research {kind} report ({answer['renderer']})",
                             "/SparkRenderer": answer["renderer"]})
        if answer["fallback"]:
            writer.add_metadata({"/SparkRendererFallback": answer["fallback"][:500]})
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
        worker.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = int(meta["stats"]["trades"])
    return ReportResult(out, rows, out.stat().st_size, time.perf_counter() - t_start, timings, meta,
                        answer["renderer"], answer["fallback"])


class _Worker:
    """The execute-and-print process of one report (see :mod:`spark_research.export._report_worker`)."""

    def __init__(self, work: Path):
        self._log_path = work / "worker.log"
        with open(self._log_path, "wb") as log:
            # A session of its own: Ctrl-C in a terminal reaches the parent, which cancels cleanly.
            self.proc = subprocess.Popen([sys.executable, "-m", "spark_research.export._report_worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=work,
                                         text=True, encoding="utf-8", start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._answered = False
        threading.Thread(target=self._read, name="report-worker-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def run(self, request: dict[str, Any], stage: Callable[[str], None], cancel: threading.Event | None,
            timeout: float) -> dict[str, Any]:
        """Send ``request``; relay stages; return the worker's successful answer or raise its error."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died while importing; the reader reports it below
        deadline = time.monotonic() + timeout
        while True:
            if cancel is not None and cancel.is_set():
                self.stop()
                raise ExportCancelledError("report cancelled while executing or printing")
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise ReportRenderError(f"executing and printing the report took more than {timeout:g} s "
                                        "(worker, kernel and browser/xelatex killed)")
            try:
                line = self._lines.get(timeout=min(0.05, left))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise ReportRenderError(f"report worker exited with {code} without an answer: {self._log_tail()}")
            answer = json.loads(line)
            if "stage" in answer:
                stage(answer["stage"])
            elif answer["ok"]:
                self._answered = True
                return answer
            elif answer["kind"] == "render":
                raise ReportRenderError(answer["error"])
            else:
                raise RuntimeError(f"report worker: {answer['error']}")

    def stop(self) -> None:
        """Reap the worker: let it exit if it answered, else kill it and everything it started."""
        if self._answered:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def _log_tail(self) -> str:
        try:
            text = self._log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return text[-800:] or "(empty log)"

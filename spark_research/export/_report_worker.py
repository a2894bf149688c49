"""The execute and print stages of a report, in a process of their own so that a cancel can stop them.

:func:`spark_research.export.report.render_report` starts ``python -m
spark_research.export._report_worker`` before its data stage (the slow imports overlap the
backtest), then writes one JSON request line to its stdin::

    {"notebook": ".../backtest_report.ipynb", "work": "<dir>", "title": "...", "renderer": "auto",
     "timeout": 300}

The worker executes the notebook with papermill (a kernel), prints it with
:func:`~spark_research.export.pdf.print_notebook` (chromium or xelatex) to ``<work>/printed.pdf``
and answers with JSON lines on stdout: ``{"stage": "print"}`` when printing starts, then one
last line, ``{"ok": true, "renderer": ..., "fallback": ..., "timings": {...}}`` or
``{"ok": false, "kind": "render"|"internal", "error": ...}``. Its file descriptor 1 is pointed at
stderr first, so nothing a kernel, chromium or xelatex prints can mix with those lines.

For the chromium route the browser is launched (:class:`~spark_research.export.pdf.LaunchedChromium`)
as the notebook starts executing, and closed after the answer; the kernel is shut down
immediately once the notebook has run.

A cancel kills the worker with everything it started
(:func:`spark_research.export._process.kill_tree`); if the server dies, the kernel notices
its parent is gone and chromium its driver's pipe, and the worker gets SIGKILL (``PR_SET_PDEATHSIG``).

Example (what ``render_report`` does)::

    >>> import subprocess, sys
    >>> p = subprocess.Popen([sys.executable, "-m", "spark_research.export._report_worker"],
    ...                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)   # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from typing import Any, TextIO


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a dead server leaves the worker to finish its report and exit


def _send(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def _kind(exc: BaseException) -> str:
    from spark_research.export.errors import ReportRenderError

    if isinstance(exc, ReportRenderError) or type(exc).__module__.startswith(("papermill", "nbclient", "nbconvert")):
        return "render"
    return "internal"


def run(request: dict[str, Any], channel: TextIO) -> None:
    """Execute and print the report of ``request``; report on ``channel`` (see the module docstring)."""
    from spark_research.export.pdf import LaunchedChromium

    # Chromium starts beside the kernel; it opens no page (the print stage's renderer process) yet.
    chromium = LaunchedChromium() if request["renderer"] in ("auto", "chromium") else None
    try:
        _execute_and_print(request, channel, chromium)
    finally:
        if chromium is not None:
            chromium.close()  # after the answer: it overlaps the parent's attach stage


def _execute_and_print(request: dict[str, Any], channel: TextIO, chromium) -> None:
    import logging

    import nbformat
    import papermill

    from spark_research.export.errors import ReportRenderError
    from spark_research.export.pdf import print_notebook

    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        executed = papermill.execute_notebook(
            request["notebook"], os.path.join(request["work"], "report.ipynb"),
            parameters={"artifacts": request["work"], "title": request["title"]},
            kernel_name="python3", progress_bar=False, log_output=False, cwd=request["work"],
            execution_timeout=int(request["timeout"]),
            shutdown_kernel="immediate",  # the notebook has run: a graceful shutdown would only cost 0.3 s
        )
        timings["execute"] = time.perf_counter() - t
        _send(channel, {"stage": "print"})
        printed = print_notebook(nbformat.from_dict(executed), request["renderer"],
                                 log=logging.getLogger("spark_research.export"), chromium=chromium)
        timings["print"] = printed.seconds
        with open(os.path.join(request["work"], "printed.pdf"), "wb") as fh:
            fh.write(printed.pdf)
    except Exception as exc:  # the parent turns it into the job's error
        kind = _kind(exc)
        message = str(exc) if isinstance(exc, ReportRenderError) else f"{type(exc).__name__}: {exc}"
        _send(channel, {"ok": False, "kind": kind, "error": message})
        return
    _send(channel, {"ok": True, "renderer": printed.renderer, "fallback": printed.fallback, "timings": timings})


def main() -> int:
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the dup is not inherited (O_CLOEXEC)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _die_with_parent()
    # jsonschema (under nbformat) builds an RFC 3987 grammar at import when rfc3987_syntax is
    # installed: 0.7 s of this worker's start, for "iri" format checks that nothing here runs
    # (nbformat validates without a format checker).
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import nbformat  # noqa: F401  (the slow imports happen now, while the parent runs the backtest)
    import papermill  # noqa: F401

    import spark_research.export.pdf  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the parent gave up (data stage failed or was cancelled)
    run(json.loads(line), channel)
    channel.close()
    sys.stderr.flush()
    # The PDF is written and the answer sent: skip the interpreter's teardown (zmq contexts,
    # thousands of modules), half a second the parent would otherwise wait for.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

"""Printing an executed report notebook to PDF: chromium first, LaTeX (xelatex) as the fallback.

**chromium** (:class:`ChromiumPDFExporter`): nbconvert's web-PDF route on Debian's chromium,
HTML with nothing remote. nbconvert's own :class:`~nbconvert.exporters.webpdf.WebPDFExporter`
launches Playwright's downloaded browser, which a machine without internet cannot install.
This subclass keeps its HTML side and replaces only the printing: Debian's ``/usr/bin/chromium``
(``SPARK_CHROMIUM``) through Playwright (``executable_path``), every request that is not
``file:``/``data:`` aborted and reported as an error (a remote script or stylesheet would mean
blank charts offline). If Playwright cannot start, chromium's own ``--headless --print-to-pdf``
is the fallback.

**latex** (:class:`LatexPDFExporter`): nbconvert's own :class:`~nbconvert.exporters.pdf.PDFExporter`
(pandoc for the markdown, one xelatex run). Charts are the same static PNGs, tables come from
the ``text/latex`` representation the report's tables carry.

:func:`print_notebook` picks the route: ``renderer="auto"`` tries chromium and falls back to
LaTeX when chromium is missing or fails to print, saying why.

Example::

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
    >>> pdf, _ = ChromiumPDFExporter().from_notebook_node(nb)
    >>> pdf[:5]
    b'%PDF-'
    >>> printed = print_notebook(nb, "latex")
    >>> printed.renderer, printed.pdf[:5]
    ('latex', b'%PDF-')
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nbconvert.exporters.pdf import LatexFailed, PDFExporter
from nbconvert.exporters.webpdf import WebPDFExporter
from traitlets import Integer, List, Unicode, default

from spark_research.export.errors import ReportRenderError
from spark_research.export.report import check_renderer

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: chromium binary when ``SPARK_CHROMIUM`` is not set (see :func:`chromium_path`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")


#: Debian packages of the LaTeX route (pandoc converts the markdown, xelatex typesets).
LATEX_PACKAGES = ("pandoc", "texlive-xetex", "texlive-fonts-recommended", "texlive-plain-generic")


def chromium_path() -> str:
    """The chromium binary: ``SPARK_CHROMIUM`` (read at each call), else ``/usr/bin/chromium``."""
    return os.environ.get("SPARK_CHROMIUM") or CHROMIUM


class _LaunchFailed(Exception):
    """Playwright or its browser did not start (the CLI printer may still work)."""


class ChromiumPDFExporter(WebPDFExporter):
    """``WebPDFExporter`` printing with Debian's chromium and refusing remote resources."""

    executable_path = Unicode(help="chromium binary (default: SPARK_CHROMIUM or /usr/bin/chromium)").tag(config=True)
    chromium_args = List(Unicode(), default_value=list(CHROMIUM_ARGS)).tag(config=True)
    print_timeout_ms = 60_000

    @default("executable_path")
    def _executable_path_default(self) -> str:
        return chromium_path()

    @default("template_name")
    def _template_name_default(self) -> str:
        return "spark_report"

    @default("extra_template_basedirs")
    def _extra_template_basedirs_default(self) -> list[str]:
        return [str(TEMPLATES)]

    @default("exclude_input_prompt")
    def _exclude_input_prompt_default(self) -> bool:
        return True

    @default("exclude_output_prompt")
    def _exclude_output_prompt_default(self) -> bool:
        return True

    #: a :class:`LaunchedChromium` to print on instead of launching one per print (set by the report worker)
    launched: LaunchedChromium | None = None

    def run_playwright(self, html: str) -> bytes:
        """Print ``html`` to PDF bytes (Playwright on ``executable_path``; CLI fallback)."""
        with tempfile.TemporaryDirectory(prefix="spark-report-") as tmp:
            page = Path(tmp) / "report.html"
            page.write_text(html, encoding="utf-8")
            try:
                launched = self.launched
                if launched is not None and (launched.executable_path, launched.args) == \
                        (self.executable_path, list(self.chromium_args)):
                    return launched.print_page(page, self.print_timeout_ms)
                with concurrent.futures.ThreadPoolExecutor(1) as pool:  # asyncio.run needs a thread without a loop
                    return pool.submit(asyncio.run, self._print_playwright(page)).result()
            except _LaunchFailed as exc:  # Playwright driver missing or broken: chromium can print alone
                self.log.warning("Playwright printing failed (%s); falling back to chromium --print-to-pdf", exc)
                return print_pdf_cli(page, Path(tmp) / "report.pdf", self.executable_path, self.chromium_args)
            except ReportRenderError:
                raise
            except Exception as exc:  # navigation or printing failed inside a running browser
                raise ReportRenderError(f"chromium could not print the report: {type(exc).__name__}: {exc}") from exc

    async def _print_playwright(self, page_path: Path) -> bytes:
        pw_cm, browser = await _launch(self.executable_path, list(self.chromium_args))
        try:
            return await _print_page(browser, page_path, self.print_timeout_ms)
        finally:
            await _close(pw_cm, browser)


async def _launch(executable_path: str, args: list[str]):
    """Playwright's driver and a headless chromium on ``executable_path``; :class:`_LaunchFailed` if either fails."""
    from playwright.async_api import async_playwright

    try:
        pw_cm = async_playwright()
        pw = await pw_cm.__aenter__()
    except Exception as exc:
        raise _LaunchFailed(f"Playwright driver did not start: {exc}") from exc
    try:
        browser = await pw.chromium.launch(executable_path=executable_path, args=args, headless=True,
                                           handle_sigint=False, handle_sigterm=False, handle_sighup=False)
    except Exception as exc:
        await pw_cm.__aexit__(None, None, None)
        raise _LaunchFailed(f"chromium did not launch through Playwright: {exc}") from exc
    return pw_cm, browser


async def _close(pw_cm, browser) -> None:
    try:
        await browser.close()
    finally:
        await pw_cm.__aexit__(None, None, None)


async def _print_page(browser, page_path: Path, timeout_ms: int) -> bytes:
    """Print the local page ``page_path`` in a new page of ``browser``; every remote request is refused."""
    remote: list[str] = []

    async def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "about:")):
            await r.continue_()
        else:
            remote.append(url)
            await r.abort()

    page = await browser.new_page()
    try:
        await page.route("**/*", route)
        await page.emulate_media(media="print")
        await page.goto(page_path.as_uri(), wait_until="load", timeout=timeout_ms)
        pdf = await page.pdf(print_background=True, format="A4")
    finally:
        await page.close()
    if remote:
        raise ReportRenderError(f"report HTML requested remote resources (blocked): {remote[:5]}")
    return pdf


class LaunchedChromium:
    """Chromium launched through Playwright ahead of printing, on an event loop in a thread of its own.

    The report worker launches one as the notebook starts executing, so Playwright's driver and
    the browser (about 0.5 s) start beside the kernel instead of in front of the print. No page is
    opened before :meth:`print_page`: a page is a renderer process, and that belongs to the print
    stage. A launch that failed raises from :meth:`print_page`, where the exporter falls back to
    ``chromium --print-to-pdf`` as it does when it launches itself.

    Example::

        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
        >>> chromium = LaunchedChromium()
        >>> print_notebook(nb, "chromium", chromium=chromium).pdf[:5]
        b'%PDF-'
        >>> chromium.close()
    """

    def __init__(self, executable_path: str | None = None, args: list[str] | tuple[str, ...] = CHROMIUM_ARGS):
        self.executable_path = executable_path or chromium_path()
        self.args = list(args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chromium-launch", daemon=True)
        self._thread.start()
        self._launched = asyncio.run_coroutine_threadsafe(_launch(self.executable_path, self.args), self._loop)

    def print_page(self, page_path: Path, timeout_ms: int) -> bytes:
        """PDF bytes of the local page ``page_path`` (waits for the launch to finish)."""
        _, browser = self._launched.result()
        return asyncio.run_coroutine_threadsafe(_print_page(browser, page_path, timeout_ms), self._loop).result()

    def close(self, timeout: float = 10.0) -> None:
        """Close the browser and Playwright's driver, then stop the thread."""
        try:
            pw_cm, browser = self._launched.result(timeout)
            asyncio.run_coroutine_threadsafe(_close(pw_cm, browser), self._loop).result(timeout)
        except Exception:  # a failed launch has nothing to close; a hung one dies with the process
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()


def print_pdf_cli(html_path: Path, pdf_path: Path, chromium: str | None = None,
                  args: list[str] | tuple[str, ...] = CHROMIUM_ARGS, timeout: float = 120.0) -> bytes:
    """Print a local HTML file with ``chromium --headless --print-to-pdf``; return the PDF bytes.

    Example: ``print_pdf_cli(Path("r.html"), Path("r.pdf"))[:5] == b"%PDF-"``.
    """
    chromium = chromium or chromium_path()
    exe = shutil.which(chromium) or chromium
    if not Path(exe).exists():
        raise ReportRenderError(f"chromium not found at {chromium!r} (install Debian's chromium package)")
    cmd = [exe, "--headless", *args, "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}", html_path.as_uri()]
    with tempfile.TemporaryDirectory(prefix="spark-chromium-") as profile:
        proc = subprocess.run([*cmd, f"--user-data-dir={profile}"], capture_output=True, timeout=timeout)
    if proc.returncode != 0 or not pdf_path.exists():
        raise ReportRenderError(f"chromium --print-to-pdf exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return pdf_path.read_bytes()


def first_latex_error(log: str) -> str:
    """The first error of a TeX log: its ``! ...`` line and the input line it points at (``l.<n> ...``).

    Example::

        >>> first_latex_error("(./notebook.tex\\n! Undefined control sequence.\\nl.42 \\\\sparkoops\\n")
        '! Undefined control sequence. (l.42 \\\\sparkoops)'
    """
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!"):
            where = next((w.strip() for w in lines[i + 1:i + 20] if w.startswith("l.")), None)
            return f"{line.strip()} ({where})" if where else line.strip()
    tail = " | ".join(line.strip() for line in lines[-3:] if line.strip())
    return f"no '!' error line in the log; it ends with: {tail or '(empty log)'}"


class LatexPDFExporter(PDFExporter):
    """nbconvert's ``PDFExporter`` (xelatex) with the report template: the fallback of the chromium route.

    One xelatex run (the report has no references or table of contents to settle), no bibtex,
    ``-halt-on-error``: a failure raises :class:`ReportRenderError` naming the LaTeX log's first
    error line instead of nbconvert's whole captured output.
    """

    latex_command = List(["xelatex", "-interaction=nonstopmode", "-halt-on-error", "{filename}"]).tag(config=True)
    latex_count = Integer(1).tag(config=True)

    @default("template_name")
    def _template_name_default(self) -> str:
        return "spark_report_latex"

    @default("extra_template_basedirs")
    def _extra_template_basedirs_default(self) -> list[str]:
        return [str(TEMPLATES)]

    @default("exclude_input_prompt")
    def _exclude_input_prompt_default(self) -> bool:
        return True

    @default("exclude_output_prompt")
    def _exclude_output_prompt_default(self) -> bool:
        return True

    def from_notebook_node(self, nb, resources=None, **kw):
        from nbconvert.utils.pandoc import PandocMissing

        try:
            return super().from_notebook_node(nb, resources=resources, **kw)
        except PandocMissing as exc:
            raise ReportRenderError(f"latex: pandoc not found, it converts the markdown ({exc}); "
                                    f"install the Debian packages {' '.join(LATEX_PACKAGES)}") from exc

    def run_bib(self, filename, raise_on_failure=False) -> bool:
        return False  # a report cites nothing; bibtex would only add a failing run

    def run_latex(self, filename, raise_on_failure=LatexFailed) -> bool:
        # nbconvert runs xelatex in a temporary directory that is the working directory here
        try:
            return super().run_latex(filename, raise_on_failure)
        except LatexFailed as exc:  # before OSError: LatexFailed is an IOError
            log_path = Path(filename).with_suffix(".log")
            log = log_path.read_text(errors="replace") if log_path.is_file() else exc.output
            raise ReportRenderError(f"latex (xelatex) could not print the report: {first_latex_error(log)}") from exc
        except OSError as exc:
            raise ReportRenderError(f"latex: {exc} (install the Debian packages {' '.join(LATEX_PACKAGES)})") from exc


@dataclass(frozen=True)
class PrintedReport:
    """PDF bytes, the renderer that printed them, why chromium was passed over (None if it was not)."""

    pdf: bytes
    renderer: str
    fallback: str | None = None
    seconds: float = 0.0


def print_notebook(nb, renderer: str = "auto", log=None, chromium: LaunchedChromium | None = None) -> PrintedReport:
    """Print executed notebook ``nb`` (code cells hidden) with ``renderer``, one of
    :data:`~spark_research.export.report.RENDERERS`.

    ``auto`` tries chromium and falls back to LaTeX when chromium is missing or fails to print
    (:class:`ReportRenderError`); the result's ``fallback`` says what chromium said. If both fail,
    the error names both. ``chromium``: a :class:`LaunchedChromium` to print on (else one is
    launched for this print).

    Example::

        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
        >>> print_notebook(nb, "chromium").renderer
        'chromium'
    """
    check_renderer(renderer)
    t0 = time.perf_counter()
    fallback = None
    if renderer in ("auto", "chromium"):
        exporter = ChromiumPDFExporter()
        exporter.exclude_input = True
        exporter.launched = chromium
        try:
            pdf, _ = exporter.from_notebook_node(nb)
            return PrintedReport(pdf, "chromium", None, time.perf_counter() - t0)
        except ReportRenderError as exc:
            if renderer == "chromium":
                raise
            fallback = str(exc)
            if log is not None:
                log.warning("chromium did not print the report (%s); printing it with LaTeX", exc)
    exporter = LatexPDFExporter()
    exporter.exclude_input = True
    try:
        pdf, _ = exporter.from_notebook_node(nb)
    except ReportRenderError as exc:
        if fallback is None:
            raise
        raise ReportRenderError(f"{exc}; chromium had failed first: {fallback}") from exc
    return PrintedReport(pdf, "latex", fallback, time.perf_counter() - t0)

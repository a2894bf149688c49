"""nbconvert's web-PDF route on Debian's chromium: HTML with nothing remote, printed to PDF.

nbconvert's own :class:`~nbconvert.exporters.webpdf.WebPDFExporter` launches Playwright's
downloaded browser, which a machine without internet cannot install. This subclass keeps
its HTML side and replaces only the printing: Debian's ``/usr/bin/chromium`` through
Playwright (``executable_path``), every request that is not ``file:``/``data:`` aborted and
reported as an error (a remote script or stylesheet would mean blank charts offline).
If Playwright cannot start, chromium's own ``--headless --print-to-pdf`` is the fallback.

Example::

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
    >>> pdf, _ = ChromiumPDFExporter().from_notebook_node(nb)
    >>> pdf[:5]
    b'%PDF-'
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from nbconvert.exporters.webpdf import WebPDFExporter
from traitlets import List, Unicode, default

from spark_research.export.errors import ReportRenderError

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHROMIUM = os.environ.get("SPARK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")


class _LaunchFailed(Exception):
    """Playwright or its browser did not start (the CLI printer may still work)."""


class ChromiumPDFExporter(WebPDFExporter):
    """``WebPDFExporter`` printing with Debian's chromium and refusing remote resources."""

    executable_path = Unicode(CHROMIUM, help="chromium binary").tag(config=True)
    chromium_args = List(Unicode(), default_value=list(CHROMIUM_ARGS)).tag(config=True)
    print_timeout_ms = 60_000

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

    def run_playwright(self, html: str) -> bytes:
        """Print ``html`` to PDF bytes (Playwright on ``executable_path``; CLI fallback)."""
        with tempfile.TemporaryDirectory(prefix="spark-report-") as tmp:
            page = Path(tmp) / "report.html"
            page.write_text(html, encoding="utf-8")
            try:
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
        from playwright.async_api import async_playwright

        remote: list[str] = []

        async def route(r):
            url = r.request.url
            if url.startswith(("file:", "data:", "about:")):
                await r.continue_()
            else:
                remote.append(url)
                await r.abort()

        try:
            pw_cm = async_playwright()
            pw = await pw_cm.__aenter__()
        except Exception as exc:
            raise _LaunchFailed(f"Playwright driver did not start: {exc}") from exc
        try:
            try:
                browser = await pw.chromium.launch(executable_path=self.executable_path, args=self.chromium_args,
                                                   headless=True, handle_sigint=False, handle_sigterm=False,
                                                   handle_sighup=False)
            except Exception as exc:
                raise _LaunchFailed(f"chromium did not launch through Playwright: {exc}") from exc
            try:
                page = await browser.new_page()
                await page.route("**/*", route)
                await page.emulate_media(media="print")
                await page.goto(page_path.as_uri(), wait_until="load", timeout=self.print_timeout_ms)
                pdf = await page.pdf(print_background=True, format="A4")
            finally:
                await browser.close()
        finally:
            await pw_cm.__aexit__(None, None, None)
        if remote:
            raise ReportRenderError(f"report HTML requested remote resources (blocked): {remote[:5]}")
        return pdf


def print_pdf_cli(html_path: Path, pdf_path: Path, chromium: str = CHROMIUM,
                  args: list[str] | tuple[str, ...] = CHROMIUM_ARGS, timeout: float = 120.0) -> bytes:
    """Print a local HTML file with ``chromium --headless --print-to-pdf``; return the PDF bytes.

    Example: ``print_pdf_cli(Path("r.html"), Path("r.pdf"))[:5] == b"%PDF-"``.
    """
    exe = shutil.which(chromium) or chromium
    if not Path(exe).exists():
        raise ReportRenderError(f"chromium not found at {chromium!r} (install Debian's chromium package)")
    cmd = [exe, "--headless", *args, "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}", html_path.as_uri()]
    with tempfile.TemporaryDirectory(prefix="spark-chromium-") as profile:
        proc = subprocess.run([*cmd, f"--user-data-dir={profile}"], capture_output=True, timeout=timeout)
    if proc.returncode != 0 or not pdf_path.exists():
        raise ReportRenderError(f"chromium --print-to-pdf exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return pdf_path.read_bytes()

"""PDF reports: papermill + nbconvert + Debian chromium; totals in the text, every trade attached."""
from __future__ import annotations

import io
import re
import time

import nbformat
import numpy as np
import pyarrow.csv as pcsv
import pytest
from pypdf import PdfReader

from spark_research.export.pdf import ChromiumPDFExporter, ReportRenderError, print_pdf_cli
from spark_research.export.report import ATTACHMENT_NAME, render_report

pytestmark = pytest.mark.browser


def pdf_facts(path):
    reader = PdfReader(path)
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())  # lines wrap anywhere
    attachment = reader.attachments[ATTACHMENT_NAME][0]
    trades = pcsv.read_csv(io.BytesIO(attachment))
    images = sum(len(page.images) for page in reader.pages)
    return text, trades, images, len(reader.pages)


@pytest.mark.slow
@pytest.mark.parametrize(("bars", "at_least"), [(50_000, 10_000), (240_000, 50_000)])
def test_backtest_report_states_totals_that_match_its_attached_trades(tmp_path, bars, at_least):
    params = {"synthetic_bars": bars, "seed": 7, "params": {"fast": 2, "slow": 5}, "fees": 0.0,
              "slippage": 0.0, "direction": "both"}
    t0 = time.perf_counter()
    res = render_report("backtest", params, tmp_path / "report.pdf")
    print(f"{res.rows} trades, {bars} bars: {time.perf_counter() - t0:.1f} s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in res.timings.items())}), {res.bytes / 1e6:.1f} MB")
    text, trades, images, pages = pdf_facts(res.path)
    assert trades.num_rows == res.rows >= at_least
    assert f"Trades in this report: {trades.num_rows}" in text
    assert f"All {trades.num_rows} trades are in the attached" in text
    assert f"total PnL: {np.sum(trades['pnl'].to_numpy()):.2f}" in text
    assert re.search(rf"trades {trades.num_rows}\b", text)  # the stats table agrees
    for heading in ("Statistics", "Monthly returns", "Best 10 trades", "Worst 10 trades"):
        assert heading in text
    assert images >= 1  # equity/drawdown chart as a static PNG
    assert pages <= 8  # a summary, not a thousand-page table


def test_report_html_loads_nothing_remote():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n\n$x^2$")])
    html, _ = _html(nb)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "remote resource in report HTML"
    assert "cdn" not in html.lower()


def _html(nb):
    from nbconvert.exporters.html import HTMLExporter

    exporter = ChromiumPDFExporter()
    return HTMLExporter.from_notebook_node(exporter, nb)


def test_remote_resource_in_a_report_fails_the_render():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x", outputs=[nbformat.v4.new_output("display_data", data={
            "text/html": '<img src="http://198.51.100.7/chart.png">'})])])
    with pytest.raises(ReportRenderError, match="198.51.100.7"):
        ChromiumPDFExporter().from_notebook_node(nb)


def test_chromium_print_to_pdf_fallback_prints_text(tmp_path):
    page = tmp_path / "r.html"
    page.write_text("<html><body><h1>Fallback report 4242</h1></body></html>")
    pdf = print_pdf_cli(page, tmp_path / "r.pdf")
    assert pdf.startswith(b"%PDF-")
    assert "Fallback report 4242" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def test_unknown_report_kind_names_the_field(tmp_path):
    from spark_research.export import ExportParamError

    with pytest.raises(ExportParamError, match="'what' = 'sweep'"):
        render_report("sweep", {}, tmp_path / "x.pdf")

"""PDF reports printed by LaTeX: nbconvert's PDFExporter (pandoc + xelatex), the chromium route's fallback."""
from __future__ import annotations

import io
import re
import time

import nbformat
import numpy as np
import pyarrow.csv as pcsv
import pytest
from pypdf import PdfReader

from spark_research import metrics
from spark_research.export import ExportManager, ExportParamError, open_source, report, write_csv
from spark_research.export.pdf import LatexPDFExporter, ReportRenderError
from spark_research.export.report import ATTACHMENT_NAME, render_report

BACKTEST_10K = {"synthetic_bars": 50_000, "seed": 7, "params": {"fast": 2, "slow": 5}, "fees": 0.0,
                "slippage": 0.0, "direction": "both"}  # 11,103 trades


def read_report(path):
    """Text (whitespace collapsed), attachment bytes, images, pages and metadata of a report PDF."""
    reader = PdfReader(path)
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    images = [img for page in reader.pages for img in page.images]
    return text, reader.attachments[ATTACHMENT_NAME][0], images, len(reader.pages), reader.metadata


@pytest.fixture
def mgr(tmp_path):
    m = ExportManager(tmp_path / "exports", max_per_user=4)
    yield m
    m.close()


def report_notebook(directory, *cells: str):
    """A report notebook (parameters cell + ``cells``) as ``directory/backtest_report.ipynb``."""
    directory.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('artifacts = ""\ntitle = ""', metadata={"tags": ["parameters"]}),
        *(nbformat.v4.new_code_cell(src) for src in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, directory / "backtest_report.ipynb")
    return directory


def test_latex_report_states_the_totals_shows_the_chart_and_attaches_every_trade(tmp_path):
    res = render_report("backtest", BACKTEST_10K, tmp_path / "report.pdf", renderer="latex")
    assert res.renderer == "latex" and res.renderer_fallback is None
    text, attached, images, pages, meta = read_report(res.path)
    trades = pcsv.read_csv(io.BytesIO(attached))
    assert trades.num_rows == res.rows >= 10_000
    assert f"Trades in this report: {res.rows}" in text
    assert f"All {res.rows} trades are in the attached" in text
    assert f"total PnL: {np.sum(trades['pnl'].to_numpy()):.2f}" in text
    assert re.search(rf"trades {res.rows}\b", text)  # the stats table (a LaTeX tabular) agrees
    for heading in ("Statistics", "Monthly returns", "Best 10 trades", "Worst 10 trades"):
        assert heading in text
    assert "Warning" not in text and "Traceback" not in text
    # the equity/drawdown chart is the notebook's PNG, placed as an image by xelatex
    assert len(images) >= 1 and max(img.image.width for img in images) >= 500
    assert pages <= 8
    assert meta["/SparkRenderer"] == "latex" and meta["/Producer"].startswith("xdvipdfmx")
    # complete: byte for byte the CSV export of the same backtest
    expected = write_csv(open_source("backtest_trades", BACKTEST_10K), tmp_path / "expected.csv")
    assert attached == expected.path.read_bytes()


@pytest.mark.slow
@pytest.mark.browser
def test_a_50k_trade_report_states_the_same_totals_on_both_routes(tmp_path):
    params = {**BACKTEST_10K, "synthetic_bars": 240_000}
    totals = {}
    for renderer in ("chromium", "latex"):
        t0 = time.perf_counter()
        res = render_report("backtest", params, tmp_path / f"{renderer}.pdf", renderer=renderer)
        print(f"{renderer}: {res.rows} trades in {time.perf_counter() - t0:.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in res.timings.items())}), {res.bytes / 1e6:.1f} MB")
        text, attached, _, _, meta = read_report(res.path)
        assert meta["/SparkRenderer"] == res.renderer == renderer
        assert res.rows >= 50_000 and pcsv.read_csv(io.BytesIO(attached)).num_rows == res.rows
        totals[renderer] = re.search(r"Trades in this report: \d+; total PnL: -?[\d.]+; fees: [\d.]+", text).group()
    assert totals["chromium"] == totals["latex"]


def test_auto_prints_with_latex_when_chromium_is_missing_and_says_so(mgr, tmp_path, monkeypatch):
    missing = tmp_path / "no-chromium-here"
    monkeypatch.setenv("SPARK_CHROMIUM", str(missing))
    job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 3_000})
    final = mgr.wait(job.id, "alice", timeout=240)
    assert final.state == "succeeded", final.error
    status = final.to_dict()
    assert status["params"]["renderer"] == "auto"
    assert status["renderer"] == "latex"
    assert "chromium not found" in status["renderer_fallback"] and str(missing) in status["renderer_fallback"]
    text, attached, _, _, meta = read_report(mgr.file_path(job.id, "alice"))
    assert meta["/SparkRenderer"] == "latex" and str(missing) in meta["/SparkRendererFallback"]
    assert f"Trades in this report: {final.rows_done}" in text
    assert pcsv.read_csv(io.BytesIO(attached)).num_rows == final.rows_done


def test_chromium_asked_for_by_name_does_not_fall_back(mgr, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CHROMIUM", str(tmp_path / "no-chromium-here"))
    job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 1_000, "renderer": "chromium"})
    final = mgr.wait(job.id, "alice", timeout=240)
    assert final.state == "failed" and final.reason == "render_error"
    assert "chromium not found" in final.error and final.renderer is None
    assert not any(p.suffix == ".pdf" for p in (mgr.root / job.id).iterdir())


def test_a_latex_failure_fails_the_job_naming_the_renderer_and_the_first_error_line(mgr, tmp_path, monkeypatch):
    broken = report_notebook(tmp_path / "reports", "from IPython.display import Latex, Markdown, display\n"
                             "display(Markdown('# Fine so far'))\n"
                             "display(Latex(r'\\sparkundefinedmacro{}'))")
    monkeypatch.setattr(report, "REPORTS_DIR", broken)
    before = metrics.EXPORT_FAIL.labels(reason="render_error", format="pdf")._value.get()
    job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 1_000, "renderer": "latex"})
    final = mgr.wait(job.id, "alice", timeout=240)
    assert final.state == "failed" and final.reason == "render_error"
    assert "latex (xelatex) could not print the report: ! Undefined control sequence." in final.error
    assert "\\sparkundefinedmacro" in final.error  # the log's l.<n> line: where it failed
    assert "captured latex output" not in final.error  # one line, not nbconvert's whole transcript
    assert metrics.EXPORT_FAIL.labels(reason="render_error", format="pdf")._value.get() == before + 1
    assert not any(p.suffix == ".pdf" for p in (mgr.root / job.id).iterdir())


def test_when_both_routes_fail_the_error_names_both(mgr, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CHROMIUM", str(tmp_path / "no-chromium-here"))
    monkeypatch.setattr(report, "REPORTS_DIR", report_notebook(
        tmp_path / "reports", "from IPython.display import Latex, display\ndisplay(Latex(r'\\sparkoops{}'))"))
    job = mgr.submit("alice", "backtest_trades", "pdf", {"synthetic_bars": 1_000})
    final = mgr.wait(job.id, "alice", timeout=240)
    assert final.state == "failed"
    assert "latex (xelatex)" in final.error and "chromium had failed first: chromium not found" in final.error


def test_missing_xelatex_names_the_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no xelatex (nor anything else) on it
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/plain": "1"}, execution_count=1)])])
    with pytest.raises(ReportRenderError, match=r"xelatex not found.*texlive-xetex"):
        LatexPDFExporter().from_notebook_node(nb)


@pytest.mark.parametrize(("fmt", "params", "reason"), [
    ("pdf", {"synthetic_bars": 1_000, "renderer": "wkhtmltopdf"}, "must be one of"),
    ("pdf", {"synthetic_bars": 1_000, "renderer": None}, "must be one of"),
    ("csv", {"renderer": "latex"}, "applies to format 'pdf' only"),
])
def test_renderer_is_checked_when_the_job_is_submitted(mgr, fmt, params, reason):
    what = "backtest_trades" if fmt == "pdf" else "synthetic_trades"
    with pytest.raises(ExportParamError, match=reason) as err:
        mgr.submit("alice", what, fmt, params)
    assert err.value.field == "parameters.renderer"
    assert mgr.list("alice") == []


def test_render_report_names_a_bad_renderer(tmp_path):
    with pytest.raises(ExportParamError, match="'renderer' = 'pdflatex'"):
        render_report("backtest", {"synthetic_bars": 1_000}, tmp_path / "r.pdf", renderer="pdflatex")

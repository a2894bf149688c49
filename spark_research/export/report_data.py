"""What a report notebook shows, computed here so the notebook stays thin.

The report pipeline (:mod:`spark_research.export.report`) writes a backtest's artifacts to a
directory; a report notebook loads them with :func:`load_backtest_artifacts` and renders
tables (:class:`Table`: HTML for chromium, LaTeX for xelatex) and matplotlib charts (static
PNGs: no browser, JavaScript or CDN needed).
This module imports neither vectorbt nor Panel, so the report kernel starts fast.

Example::

    >>> import pandas as pd
    >>> eq = pd.Series([100.0, 110.0, 99.0], index=pd.date_range("2024-01-30", periods=3, freq="D", tz="UTC"))
    >>> monthly_returns(eq).round(4).to_dict("records")
    [{'year': 2024, 'Jan': 0.1, 'Feb': -0.1}]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class BacktestArtifacts:
    """A backtest as the report sees it: meta (strategy, params, stats), equity, drawdown, trades."""

    meta: dict
    equity: pd.Series
    drawdown: pd.Series
    trades: pd.DataFrame
    trades_csv: str


def _latex_number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


class Table:
    """A DataFrame for a report: HTML for the chromium route, a LaTeX tabular for the LaTeX one.

    IPython keeps every representation an object has; nbconvert's HTML template shows
    ``text/html`` and its LaTeX template ``text/latex``. A bare DataFrame gives LaTeX only
    its plain text (a monospaced block that wraps wide tables), hence this wrapper. The
    tabular is scaled down to the text width when it is wider.

    Example::

        >>> t = Table(pd.DataFrame({"total_pnl": [1.5, -2.25]}, index=["long", "short"]))
        >>> print(t._repr_latex_().splitlines()[3])
         & total\\_pnl \\\\
    """

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def _repr_html_(self) -> str:
        return self.frame._repr_html_()

    def _repr_latex_(self) -> str:
        tabular = self.frame.to_latex(escape=True, na_rep="NaN", float_format=_latex_number)
        return ("\\begin{center}\\begin{adjustbox}{max width=\\linewidth}\n"
                f"{tabular}\\end{{adjustbox}}\\end{{center}}\n")

    def __repr__(self) -> str:
        return repr(self.frame)


def write_backtest_artifacts(directory: Path, meta: dict, equity: pd.Series, drawdown: pd.Series,
                             trades: pa.Table, trades_csv: str) -> Path:
    """Write what :func:`load_backtest_artifacts` reads (used by the report pipeline).

    ``trades``: the exported trades as the Arrow table the CSV was written from (with its
    pandas metadata), written as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").write_text(json.dumps({**meta, "trades_csv": trades_csv}, default=str, indent=1))
    pd.DataFrame({"equity": equity, "drawdown": drawdown}).rename_axis("timestamp").reset_index() \
        .to_parquet(directory / "equity.parquet", index=False)
    pq.write_table(trades, directory / "trades.parquet")
    return directory


def load_backtest_artifacts(directory: str | Path) -> BacktestArtifacts:
    """Load a backtest's artifacts written by the report pipeline."""
    d = Path(directory)
    meta = json.loads((d / "meta.json").read_text())
    eq = pq.read_table(d / "equity.parquet").to_pandas().set_index("timestamp")
    trades = pq.read_table(d / "trades.parquet").to_pandas()
    return BacktestArtifacts(meta, eq["equity"], eq["drawdown"], trades, meta["trades_csv"])


def stats_table(stats: dict) -> pd.DataFrame:
    """Stats formatted for reading: percentages as %, counts as integers."""
    pct = {"total_return", "cagr", "max_drawdown", "win_rate"}
    rows = []
    for k, v in stats.items():
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            text = "n/a"
        elif k in pct:
            text = f"{v * 100:.2f} %"
        elif k == "trades":
            text = f"{int(v)}"
        else:
            text = f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.2f}"
        rows.append({"stat": k, "value": text})
    return pd.DataFrame(rows).set_index("stat")


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Month-over-month returns of ``equity``: one row per year, one column per month."""
    month_end = equity.resample("ME").last().dropna()
    start = equity.iloc[:1]
    rets = pd.concat([start, month_end]).pct_change().dropna()
    rets = rets[~rets.index.duplicated(keep="last")]
    df = pd.DataFrame({"year": rets.index.year, "month": rets.index.month, "ret": rets.to_numpy()})
    table = df.pivot_table(index="year", columns="month", values="ret", aggfunc="sum")
    table.columns = [_MONTHS[m - 1] for m in table.columns]
    return table.reset_index()


def trade_summary(trades: pd.DataFrame) -> pd.DataFrame:
    """Counts, PnL and fees of the trades by side, plus an ``all`` row."""
    def one(g: pd.DataFrame) -> dict:
        return {"trades": len(g), "winners": int((g["pnl"] > 0).sum()), "losers": int((g["pnl"] < 0).sum()),
                "total_pnl": float(g["pnl"].sum()), "fees": float((g["entry_fees"] + g["exit_fees"]).sum()),
                "avg_return_pct": float(g["return"].mean() * 100) if len(g) else 0.0}

    rows = [{"side": side, **one(g)} for side, g in trades.groupby("side", sort=True)]
    rows.append({"side": "all", **one(trades)})
    return pd.DataFrame(rows).set_index("side")  # built row-wise so counts stay integers


def _plot_times(index: pd.Index) -> np.ndarray | pd.Index:
    """A zone-aware time index as ``datetime`` objects, which matplotlib plots as they are.

    Given the index itself, matplotlib first makes an array of pandas Timestamps of it, about a
    quarter of the chart's time for 4,000 points; the chart is the same (pixels and time zone).
    """
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        return index.to_pydatetime()
    return index


def equity_figure(equity: pd.Series, drawdown: pd.Series, max_points: int = 4_000):
    """A matplotlib figure: equity on top, drawdown (%) below; long series thinned for plotting."""
    import matplotlib.pyplot as plt

    step = max(1, len(equity) // max_points)
    eq, dd = equity.iloc[::step], drawdown.iloc[::step]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, height_ratios=(2, 1))
    ax1.plot(_plot_times(eq.index), eq.to_numpy(), lw=0.9, color="#1f5fa8")
    ax1.set_ylabel("equity")
    ax1.set_title("Equity and drawdown")
    ax2.fill_between(_plot_times(dd.index), dd.to_numpy() * 100, 0, color="#c0392b", alpha=0.5, lw=0)
    ax2.set_ylabel("drawdown %")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

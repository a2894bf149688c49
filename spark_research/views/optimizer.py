"""HoloViews views of sweep results for notebooks and Panel apps.

Example::

    >>> import pandas as pd
    >>> table = pd.DataFrame({"symbol": "X", "fast": [5, 5, 10], "slow": [20, 50, 50], "sharpe": [1.0, 2.0, 3.0]})
    >>> objective_grid(table, "fast", "slow", "sharpe").loc[10, 50]
    np.float64(3.0)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def objective_grid(table: pd.DataFrame, x: str, y: str, objective: str, *, symbol: str | None = None) -> pd.DataFrame:
    """Objective averaged over everything but ``x`` and ``y`` (and over symbols unless one is picked).

    Rows are ``x`` values, columns ``y`` values; non-finite objectives count as missing.
    """
    for col in (x, y, objective):
        if col not in table.columns:
            raise KeyError(f"column {col!r} not in the sweep table (columns: {list(table.columns)})")
    if symbol is not None:
        if symbol not in set(table["symbol"]):
            raise KeyError(f"symbol {symbol!r} not in the sweep table")
        table = table[table["symbol"] == symbol]
    obj = table[objective].astype(float)
    df = table.assign(_obj=obj.where(np.isfinite(obj)))
    return df.pivot_table(index=x, columns=y, values="_obj", aggfunc="mean", dropna=False)


def objective_heatmap(table: pd.DataFrame, x: str, y: str, objective: str, *, symbol: str | None = None,
                      **opts: Any):
    """A ``holoviews.HeatMap`` of :func:`objective_grid` (hover shows the values).

    Example: ``objective_heatmap(result.table, "fast", "slow", "sharpe")`` in a notebook cell.
    """
    import holoviews as hv

    if not hv.Store.renderers:  # outside a notebook: register the bokeh backend so options validate
        import holoviews.plotting.bokeh  # noqa: F401

    grid = objective_grid(table, x, y, objective, symbol=symbol)
    long = grid.stack(future_stack=True).rename(objective).reset_index()
    title = f"{objective} over {x} x {y}" + (f" ({symbol})" if symbol else "")
    style = dict(tools=["hover"], colorbar=True, cmap="RdYlGn", width=560, height=420, title=title,
                 xrotation=45)
    style.update(opts)
    return hv.HeatMap(long, kdims=[x, y], vdims=[objective]).opts(**style)


def top_table(ranked: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The first ``n`` rows of a ranked sweep table, for display."""
    return ranked.head(n).reset_index(drop=True)

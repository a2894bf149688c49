"""Seeded synthetic universes: N symbols x D days of 1-minute bars, streamed into a store.

:func:`generate_universe` writes symbol by symbol and month by month (one month of one symbol in
memory at a time, about 3 MB), so a 100-symbol x 1-year universe (~52M bars) fits in a laptop's
memory budget and lands in the store as it goes, with a tqdm bar. The same seed gives the same
bytes: each symbol has its own random stream (see :func:`~spark_research.data.synthetic.generate_bars_monthly`).

Example::

    >>> import tempfile
    >>> from spark_research.data import BarStore
    >>> store = BarStore(tempfile.mkdtemp())
    >>> report = generate_universe(3, days=2, seed=1, store=store, progress=False)
    >>> report.symbols, report.bars
    (['U000USDT', 'U001USDT', 'U002USDT'], 8640)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from spark_research.data.store import BarStore, default_store
from spark_research.data.synthetic import generate_bars_monthly


@dataclass(frozen=True)
class UniverseReport:
    """What :func:`generate_universe` wrote: symbols, bars, bytes, wall seconds."""

    symbols: list[str]
    bars: int
    bytes: int
    seconds: float
    start: pd.Timestamp = field(default=None)  # type: ignore[assignment]
    end: pd.Timestamp = field(default=None)  # type: ignore[assignment]

    @property
    def bars_per_s(self) -> float:
        """Generation rate, bars written per second of wall time."""
        return self.bars / self.seconds if self.seconds > 0 else float("inf")


def universe_symbols(n: int) -> list[str]:
    """The names of an ``n``-symbol synthetic universe: ``U000USDT``, ``U001USDT``, ...

    >>> universe_symbols(2)
    ['U000USDT', 'U001USDT']
    """
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"universe: n must be a positive int, got {n!r}")
    width = max(3, len(str(n - 1)))
    return [f"U{i:0{width}d}USDT" for i in range(n)]


def generate_universe(n_symbols: int | None = None, days: int = 365, seed: int = 42,
                      start: str | pd.Timestamp = "2024-01-01", store: BarStore | None = None,
                      symbols: list[str] | None = None, progress: bool = True, freq: str = "1min") -> UniverseReport:
    """Write ``days`` of seeded ``freq`` bars for each of ``n_symbols`` symbols (or ``symbols``) to ``store``.

    Streams one (symbol, month) at a time; partitions already present are upserted (same seed:
    same bytes). Returns a :class:`UniverseReport`.
    """
    if symbols is None:
        if n_symbols is None:
            raise ValueError("universe: give n_symbols or symbols")
        symbols = universe_symbols(n_symbols)
    elif not symbols:
        raise ValueError("universe: symbols is empty")
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        raise ValueError(f"universe: days must be a positive int, got {days!r}")
    store = store or default_store()
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t1 = t0 + pd.Timedelta(days=days)
    bars = written = 0
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        per_symbol = int(pd.Timedelta(days=days) / pd.Timedelta(freq))
        bar = tqdm(total=per_symbol * len(symbols), unit="bars", unit_scale=True, desc="generate universe")
    try:
        for sym in symbols:
            for month in generate_bars_monthly(sym, t0, t1, seed=seed, freq=freq):
                written += store.write_bars(month)
                bars += len(month)
                if bar is not None:
                    bar.update(len(month))
                    bar.set_postfix_str(sym, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return UniverseReport(list(symbols), bars, written, time.perf_counter() - started, t0, t1)


__all__ = ["UniverseReport", "generate_universe", "universe_symbols"]

"""A seeded demo desk for the risk app and notebooks: two strategies trading three symbols through the engine.

Orders of random side and size (a few oversized, a few far from the price) go through a
:class:`~spark_research.risk.venue.RiskGuardedVenue` in front of the seeded
:class:`~spark_research.gates.venue.SimulatedVenue`, on the bars' clock; every bar marks the
book. The engine persists under ``root`` like a live one, so the app and ``spark risk status``
read the same store.

Example::

    >>> import tempfile
    >>> eng = run_demo(tempfile.mkdtemp(), n_bars=60)
    >>> eng.approved > 0 and eng.denied > 0
    True
    >>> eng.close()
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spark_research.data import generate_bars
from spark_research.gates.errors import OrderRefusedError, OrderRejectedError
from spark_research.gates.model import Order
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
from spark_research.risk.engine import RiskEngine
from spark_research.risk.venue import RiskGuardedVenue

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
STRATEGIES = ("sma_cross", "rsi_reversion")


def run_demo(root: str | Path | None = None, *, n_bars: int = 240, seed: int = 7,
             config: str | Path | None = None) -> RiskEngine:
    """Trade ``n_bars`` seeded bars per symbol through an engine persisting under ``root``; returns the engine."""
    frames = {s: generate_bars(s, n=n_bars, seed=seed + i) for i, s in enumerate(SYMBOLS)}
    times = frames[SYMBOLS[0]]["timestamp"]
    now = [int(pd.Timestamp(times.iloc[0]).value)]
    engine = RiskEngine.from_config(config, root=root, clock=lambda: now[0])
    venue = RiskGuardedVenue(SimulatedVenue(SimulatorConfig(seed=seed, partial_fill_prob=0.3)), engine)
    rng = np.random.default_rng(seed)
    n = 0
    for i in range(n_bars):
        now[0] = int(pd.Timestamp(times.iloc[i]).value)
        for s in SYMBOLS:
            bar = frames[s].iloc[i]
            engine.on_price(s, float(bar["open"]))
            if rng.random() < 0.35:
                n += 1
                notional = rng.uniform(500, 12_000) * (8 if rng.random() < 0.05 else 1)
                price = float(bar["open"]) * (1.06 if rng.random() < 0.03 else 1.0)
                side = "buy" if rng.random() < 0.55 else "sell"
                order = Order(f"demo-{n}", STRATEGIES[int(rng.integers(0, 2))], s, now[0], side,
                              round(notional / price, 4), price)
                try:
                    venue.submit(order)
                except (OrderRefusedError, OrderRejectedError):
                    pass  # denied: counted, audited and listed by the engine
        engine.on_bars({s: float(frames[s]["close"].iloc[i]) for s in SYMBOLS}, now[0])
    engine.flush()
    return engine

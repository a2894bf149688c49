"""Paper beside live: one strategy/symbol, its paper engine, a gated live venue and the drift.

:class:`PaperLiveSession` takes closed bars through :meth:`~PaperLiveSession.on_bar` (wire it
to any bar source: a replayed frame, the streams package's bar callback). Each paper order
becomes a live order the moment its signal forms (the bar's close, as a live trader would
send it), checked by the gate first (refused while CLOSED, scaled in probation); when the paper
order fills at the next bar's open, each live fill's drift against it goes to the gate, whose
decisions can refuse the next order. Time is the bars' time, so a replay is deterministic.

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.gates.audit import MemoryAudit
    >>> from spark_research.gates.gate import GateBook
    >>> from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
    >>> book = GateBook(MemoryAudit())
    >>> s = PaperLiveSession.create("sma_cross", "BTCUSDT", book, SimulatedVenue(SimulatorConfig(seed=7)),
    ...                             params={"fast": 5, "slow": 20})
    >>> s.replay(generate_bars("BTCUSDT", n=200, seed=7))
    >>> len(s.paper_fills) > 0 and len(s.live_fills) > 0
    True
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from spark_research.config import settings
from spark_research.gates.drift import FillDrift, fill_drift
from spark_research.gates.errors import OrderRefusedError, OrderRejectedError
from spark_research.gates.gate import Gate, GateBook, GateThresholds
from spark_research.gates.model import Fill, Order, fills_frame
from spark_research.gates.paper import PaperEngine, bar_timestamp_ns
from spark_research.gates.venue import ExecutionVenue

log = logging.getLogger(__name__)


def session_risk_engine(config: Any = None, *, clock: Any = None):
    """The pre-trade risk engine a session built without one gets: the desk's limits (``risk.yml``,
    :func:`~spark_research.risk.config.default_config_path`; every limit off when there is no such
    file), states and counters in memory, denials in the session's own audit (and counted in
    ``risk_denials_total``), on ``clock``; it leaves the ``portfolio_*``/``risk_state`` gauges to the
    served engine. ``spark serve``'s session passes its durable engine instead
    (:meth:`~spark_research.risk.engine.RiskEngine.from_config`, which ``spark risk halt`` reaches).
    """
    from spark_research.risk.config import RiskConfig, default_config_path
    from spark_research.risk.engine import RiskEngine

    if config is None:
        config = RiskConfig.load() if default_config_path().exists() else RiskConfig.from_dict({})
    return RiskEngine(config, clock=clock, publish=False)


class PaperLiveSession:
    """Paper engine + gated live venue + drift for one strategy/symbol."""

    def __init__(self, engine: PaperEngine, venue: ExecutionVenue, gate: Gate, *, risk: Any = None):
        self.engine, self.gate = engine, gate
        #: the pre-trade risk engine this session marks on every bar: set when the session put the
        #: venue behind one itself; None when ``venue`` came already guarded (its owner marks it)
        self.risk = None
        self._now_ns = 0  #: the last bar's time: the clock of a risk engine the session made itself
        self.venue = self._guarded(venue, risk)
        self.paper_fills: list[Fill] = []
        self.live_fills: list[Fill] = []
        self.drifts: list[FillDrift] = []
        self.refused: list[Order] = []
        self.sent: list[tuple[Order, str]] = []  #: orders the gate let through (to risk, then the venue), with its state
        self.errors: list[tuple[int, str]] = []
        self.live_position = 0.0
        self.states: list[tuple[int, str]] = []
        #: live fills sent when a signal formed, until the paper fill (next bar's open) is known
        self._awaiting_paper: dict[str, list[Fill]] = {}
        #: where :meth:`save_fills` writes (set by :meth:`record_fills`); None = keep in memory only
        self.fills_path: Path | None = None
        self._saved = 0

    def _guarded(self, venue: ExecutionVenue, risk: Any) -> ExecutionVenue:
        """``venue`` reachable only through a pre-trade risk engine: as given when it already is one
        (``RiskGuardedVenue``), else behind ``risk`` or, without one, the desk's limits
        (:func:`session_risk_engine`, on this session's bar clock)."""
        # imported here: the risk package builds on gates' orders and fills, not the other way round
        from spark_research.risk.venue import RiskGuardedVenue

        if isinstance(venue, RiskGuardedVenue):
            if risk is not None and risk is not venue.engine:
                raise ValueError("risk: the venue is already behind another risk engine; pass one or the other")
            return venue
        self.risk = risk if risk is not None else session_risk_engine(clock=self._bar_clock)
        return RiskGuardedVenue(venue, self.risk)

    def _bar_clock(self) -> int:
        """The session's time: the last bar's (a replay is deterministic, throttles included)."""
        return self._now_ns

    @classmethod
    def create(cls, strategy: str, symbol: str, book: GateBook, venue: ExecutionVenue, *,
               params: Mapping[str, Any] | None = None, thresholds: GateThresholds | None = None,
               fees: float = 0.001, slippage: float = 0.0005, init_cash: float = 10_000.0,
               start_ns: int | None = None, risk: Any = None) -> "PaperLiveSession":
        """Build engine and gate (registered in ``book``) for ``strategy``/``symbol``. Its live orders
        reach ``venue`` only through a pre-trade risk engine: ``risk`` (a
        :class:`~spark_research.risk.engine.RiskEngine`), else the desk's limits from ``risk.yml``."""
        engine = PaperEngine(strategy, params, symbol=symbol, fees=fees, slippage=slippage, init_cash=init_cash)
        gate = book.add(engine.label, symbol, thresholds, now_ns=start_ns)
        return cls(engine, venue, gate, risk=risk)

    def on_bar(self, bar: Mapping[str, Any] | Any) -> list[Fill]:
        """Feed one closed bar: paper fills, live orders, drift and gate decisions. Returns live fills."""
        ts = bar_timestamp_ns(bar["timestamp"] if isinstance(bar, Mapping) else bar.timestamp)
        self._now_ns = ts
        if self.risk is not None:  # marks the book at the close: collar, exposure, VaR, the day's loss
            close = bar["close"] if isinstance(bar, Mapping) else bar.close
            self.risk.on_bar(self.engine.symbol, float(close), ts)
        if not self.states:
            self.states.append((ts, self.gate.state.name))
        self.gate.heartbeat(ts)
        self._note(self.gate.tick(ts), ts)
        for paper in self.engine.on_bar(bar):
            self.paper_fills.append(paper)
            self._measure(paper, self._awaiting_paper.pop(paper.order_id, []), ts)
        for order_id in list(self._awaiting_paper):  # its paper order did not fill (no cash): nothing to compare
            log.warning("live fills of %s have no paper fill to compare with", order_id)
            del self._awaiting_paper[order_id]
        live: list[Fill] = []
        intent = self.engine.pending_order
        if intent is not None:  # the signal formed on this bar: the live order goes now
            live = self._send(intent, ts)
        if self.fills_path is not None and len(self.paper_fills) + len(self.live_fills) != self._saved:
            self.save_fills()
        return live

    def record_fills(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Keep the fills on disk from now on: ``<root>/<strategy>_<symbol>.parquet``, rewritten
        atomically after every bar that fills (default root ``$SPARK_VAR/gates/fills``, where
        the export ``fills`` source reads them). Returns the file path."""
        base = Path(root) if root is not None else settings().var_dir / "gates" / "fills"
        self.fills_path = base / f"{self.engine.label}_{self.engine.symbol}.parquet"
        self.save_fills()
        return self.fills_path

    def save_fills(self) -> Path:
        """Write paper (``venue == "paper"``) and live fills to :attr:`fills_path`, atomically."""
        if self.fills_path is None:
            raise ValueError("fills_path is not set: call record_fills() first")
        frame = pd.concat([self.paper_frame(), self.live_frame()], ignore_index=True)
        frame = frame.sort_values(["timestamp", "venue"], kind="stable", ignore_index=True)
        self.fills_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.fills_path.with_name(f".{self.fills_path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.fills_path)
        self._saved = len(self.paper_fills) + len(self.live_fills)
        return self.fills_path

    def resume(self, frame: pd.DataFrame, orders_placed: int = 0) -> None:
        """Continue after a restart from the fills this session kept (:meth:`record_fills`' file, read
        back as ``frame``): its paper and live fills stay (none lost, none written twice), the
        engine's cash, position and order numbers and the live position carry on from them.
        Bars it already traded on are fed with ``session.engine.warm(bar)`` (history, no orders).
        """
        fills = [Fill(str(r.order_id), str(r.strategy), str(r.symbol), int(pd.Timestamp(r.timestamp).value),
                      str(r.side), float(r.size), float(r.price), float(r.fees), str(r.venue))
                 for r in frame.itertuples(index=False)]
        self.paper_fills = [f for f in fills if f.venue == "paper"]
        self.live_fills = [f for f in fills if f.venue != "paper"]
        self.live_position = sum(f.size if f.side == "buy" else -f.size for f in self.live_fills)
        if abs(self.live_position) < 1e-12:
            self.live_position = 0.0
        self.engine.restore(self.paper_fills, max(orders_placed, max(
            (int(f.order_id.rsplit("-", 1)[-1]) for f in self.live_fills if f.order_id.rsplit("-", 1)[-1].isdigit()),
            default=0)))
        self._saved = len(fills)

    def replay(self, bars: pd.DataFrame) -> None:
        """Feed every row of ``bars`` (one symbol, oldest first)."""
        for bar in bars.to_dict("records"):
            self.on_bar(bar)

    def _send(self, intent: Order, ts: int) -> list[Fill]:
        """Send the live order of the paper order ``intent`` (gate first); its fills wait for the
        paper fill (next bar's open) to have their drift measured."""
        ref = intent.ref_price
        size = self.live_position if intent.side == "sell" else intent.size
        order = Order(intent.order_id, intent.strategy, intent.symbol, ts, intent.side, size, ref)
        try:
            if intent.side == "sell":
                if size <= 0:  # the buy was refused: nothing to sell live
                    return []
                # closing a position is never scaled down, only refused while CLOSED
                self.gate.check_order(ts)
                self.sent.append((order, self.gate.state.name))
                fills = self.venue.submit(order)
            else:
                factor = self.gate.check_order(ts)
                order = Order(order.order_id, order.strategy, order.symbol, ts, "buy", order.size * factor, ref)
                self.sent.append((order, self.gate.state.name))
                fills = self.venue.submit(order)
        except OrderRefusedError:
            self.refused.append(order)
            self._note_state(ts)
            return []
        except OrderRejectedError as exc:
            self.errors.append((ts, str(exc)))
            self._note(self.gate.observe_error(str(exc), ts), ts)
            return []
        for f in fills:
            self.live_fills.append(f)
            self.live_position += f.size if f.side == "buy" else -f.size
        if abs(self.live_position) < 1e-12:
            self.live_position = 0.0
        if fills:
            self._awaiting_paper[order.order_id] = list(fills)
        return fills

    def _measure(self, paper: Fill, fills: list[Fill], ts: int) -> None:
        """Drift of each live fill of ``paper``'s order, each one a gate observation."""
        for f in fills:
            d = fill_drift(paper, f)
            self.drifts.append(d)
            self._note(self.gate.observe_fill(d, now_ns=ts), ts)

    def _note(self, decision, ts: int) -> None:
        if decision.changed:
            self.states.append((ts, decision.new.name))

    def _note_state(self, ts: int) -> None:
        if self.states[-1][1] != self.gate.state.name:
            self.states.append((ts, self.gate.state.name))

    @property
    def awaiting_fills(self) -> list[Fill]:
        """Live fills sent on the last signal whose paper fill (next bar's open) is not known yet."""
        return [f for fills in self._awaiting_paper.values() for f in fills]

    # ------------------------------------------------------------------ frames for analysis
    def paper_frame(self) -> pd.DataFrame:
        return fills_frame(self.paper_fills)

    def live_frame(self) -> pd.DataFrame:
        return fills_frame(self.live_fills)

    def drift_frame(self) -> pd.DataFrame:
        """One row per live fill with its drift (see :class:`~spark_research.gates.drift.FillDrift`)."""
        cols = list(FillDrift.__dataclass_fields__)
        df = pd.DataFrame([asdict(d) for d in self.drifts], columns=cols)
        df.insert(0, "timestamp", pd.to_datetime(df.pop("ts").astype("int64"), utc=True))
        return df

    def state_frame(self) -> pd.DataFrame:
        """Gate state changes seen by this session: ``timestamp, state``."""
        df = pd.DataFrame(self.states, columns=["ts", "state"])
        df.insert(0, "timestamp", pd.to_datetime(df.pop("ts").astype("int64"), utc=True))
        return df


def stream_bar_callback(session: PaperLiveSession, interval: str = "1m", *, background: bool = False):
    """A ``callback(bar)`` for the streams package's ``IngestClient.on_bar``: feeds closed bars of
    ``interval`` and the session's symbol to :meth:`PaperLiveSession.on_bar`.

    Duck-typed on the bar (``symbol``, ``interval``, ``as_row()``), so gates does not import streams.
    With ``background=True`` the bars are queued to a daemon thread that runs the session, so a
    venue answering over the network (:class:`~spark_research.gates.venue.ExchangeVenue`) never
    holds up the caller (the ingest's event loop); bars keep their order.

    Example::

        client.on_bar(stream_bar_callback(session, interval="1s", background=True))
    """
    symbol = session.engine.symbol

    def wanted(bar: Any) -> bool:
        return getattr(bar, "interval", interval) == interval and bar.symbol == symbol

    if not background:
        def on_bar(bar: Any) -> None:
            if wanted(bar):
                session.on_bar(bar.as_row())

        return on_bar

    rows: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while True:
            row = rows.get()
            try:
                session.on_bar(row)
            except Exception:  # one bad bar must not stop the session
                log.exception("session %s/%s: bar %s failed", session.engine.label, symbol, row.get("timestamp"))

    threading.Thread(target=work, name=f"session-{session.engine.label}-{symbol}", daemon=True).start()

    def enqueue(bar: Any) -> None:
        if wanted(bar):
            rows.put(bar.as_row())

    return enqueue

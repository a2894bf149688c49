"""Recorded fills land where the export's ``fills`` source reads them, paper and live both."""
import pyarrow as pa

from spark_research.export import open_source
from spark_research.gates.audit import MemoryAudit
from spark_research.gates.gate import GateBook
from spark_research.gates.session import PaperLiveSession
from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
from spark_research.data.synthetic import generate_bars


def test_recorded_fills_are_exported_by_the_fills_source(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path))
    session = PaperLiveSession.create("sma_cross", "BTCUSDT", GateBook(MemoryAudit()), SimulatedVenue(SimulatorConfig()),
                                      params={"fast": 3, "slow": 10})
    path = session.record_fills()
    assert path == tmp_path / "gates" / "fills" / f"{session.engine.label}_BTCUSDT.parquet"
    session.replay(generate_bars("BTCUSDT", n=400, seed=5))
    assert session.paper_fills and session.live_fills
    table = pa.Table.from_batches(list(open_source("fills", {"symbol": "BTCUSDT"}).batches))
    venues = table.column("venue").to_pylist()
    assert venues.count("paper") == len(session.paper_fills)
    assert len(venues) - venues.count("paper") == len(session.live_fills)
    assert not list(path.parent.glob(".*.tmp"))

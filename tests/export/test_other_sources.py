"""Sources over the files other capabilities write: sweep results, audit log, ingested trades, fills.

Each test writes the files with that capability's own public API, so a format change there
breaks here (the export package itself reads only the files).
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.csv as pcsv
import pytest

from spark_research.export import ExportParamError, ExportSourceError, open_source, write_csv


def export_table(what, params, tmp_path):
    res = write_csv(open_source(what, params), tmp_path / f"{what}.csv")
    return res, pcsv.read_csv(res.path)


def test_sweep_results_of_one_and_of_all_sweeps(var_dir, tmp_path):
    from spark_research.optimizer import SweepSpec, SweepStore

    store = SweepStore()
    a = pd.DataFrame({"symbol": "BTCUSDT", "fast": np.arange(30), "slow": 50, "sharpe": np.linspace(-1, 2, 30)})
    b = pd.DataFrame({"symbol": "ETHUSDT", "window": np.arange(12), "lower": 30, "upper": 70, "sharpe": 0.5})
    store.save_results("sma-1", SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"]), a)
    store.save_results("rsi-1", SweepSpec(strategy="rsi_reversion", symbols=["ETHUSDT"]), b)
    res, one = export_table("sweep_results", {"sweep_id": "sma-1"}, tmp_path)
    assert res.rows == one.num_rows == 30 and np.allclose(one["sharpe"].to_numpy(), a["sharpe"])
    res, both = export_table("sweep_results", {}, tmp_path)
    assert res.rows == both.num_rows == 42
    assert {"fast", "slow", "window", "lower", "upper", "sharpe"} <= set(both.column_names)


@pytest.mark.parametrize("bad", ["..", "../audit", "a/b", ".hidden", ""])
def test_sweep_ids_cannot_leave_the_sweeps_directory(var_dir, bad):
    with pytest.raises(ExportParamError) as err:
        open_source("sweep_results", {"sweep_id": bad})
    assert err.value.field == "parameters.sweep_id"


def test_audit_log_exports_every_entry_in_order_with_readable_time(var_dir, tmp_path):
    from spark_research.gates.audit import AuditLog, default_audit_path

    log = AuditLog(default_audit_path())
    t0 = 1_700_000_000_000_000_000
    for i in range(25):
        log.append(actor="alice" if i % 2 else "gatekeeper", gate=f"sma_cross/{'BTC' if i % 3 else 'ETH'}USDT",
                   old_state="OPEN", new_state="CLOSED", reason=f"drift breach #{i}", values={"drift_bps": i * 0.5},
                   ts_ns=t0 + i * 1_000_000_000)
    res, table = export_table("audit_log", {}, tmp_path)
    assert res.rows == table.num_rows == 25
    assert table["seq"].to_pylist() == list(range(1, 26))
    assert table.column_names[:3] == ["time", "seq", "ts_ns"]
    assert str(table["time"][0].as_py()).startswith("2023-11-14 22:13:20")
    res, eth = export_table("audit_log", {"gate": "sma_cross/ETHUSDT"}, tmp_path)
    assert res.rows == eth.num_rows == 9 and set(eth["gate"].to_pylist()) == {"sma_cross/ETHUSDT"}


def test_ingested_trades_come_out_in_id_order(var_dir, tmp_path):
    from spark_research.streams.adapters import Trade
    from spark_research.streams.journal import IngestJournal

    (var_dir / "ingest").mkdir()
    journal = IngestJournal(var_dir / "ingest" / "binance-BTCUSDT.sqlite", "binance", "BTCUSDT")
    us = 1_704_067_200_000_000
    journal.commit([Trade("BTCUSDT", i, 30_000.0 + i, 0.01, us + i * 1000, us + i * 1000, i % 2 == 0)
                    for i in range(1, 70_001)], [])
    journal.close()
    res, table = export_table("ingested_trades", {"symbol": "BTCUSDT"}, tmp_path)
    assert res.rows == table.num_rows == 70_000
    assert np.array_equal(table["id"].to_numpy(), np.arange(1, 70_001))


def test_fills_recorded_as_parquet_export_with_a_symbol_filter(var_dir, tmp_path):
    from spark_research.gates.model import Fill, fills_frame

    fills = [Fill(f"o{i}", "sma_cross", "BTCUSDT" if i % 4 else "SOLUSDT", 1_700_000_000_000_000_000 + i,
                  "buy" if i % 2 else "sell", 0.1, 30_000.0, 1.2, "paper") for i in range(400)]
    (var_dir / "gates" / "fills").mkdir(parents=True)
    fills_frame(fills).to_parquet(var_dir / "gates" / "fills" / "paper.parquet", index=False)
    res, table = export_table("fills", {"symbol": "SOLUSDT"}, tmp_path)
    assert res.rows == table.num_rows == 100 and set(table["symbol"].to_pylist()) == {"SOLUSDT"}


@pytest.mark.parametrize("what", ["sweep_results", "audit_log", "fills"])
def test_missing_files_are_a_source_error_naming_the_place(var_dir, what):
    with pytest.raises(ExportSourceError, match=str(var_dir)):
        open_source(what, {})

"""``spark export run|status|list|cleanup`` as a user types them."""
from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spark(*args: str, var: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spark_research.cli", "export", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "SPARK_VAR": str(var)})


def test_run_then_status_and_list_show_the_same_export(tmp_path):
    out = tmp_path / "fills.csv.gz"
    run = spark("run", "synthetic_trades", "--format", "csv.gz", "--param", "rows=30000", "--out", str(out),
                "--user", "quant", "--quiet", var=tmp_path)
    assert run.returncode == 0, run.stderr
    assert gzip.decompress(out.read_bytes()).count(b"\n") == 30_001
    export_id = re.search(r"id=([0-9a-f]{32})", run.stdout).group(1)
    status = spark("status", export_id, var=tmp_path)
    assert status.returncode == 0 and "state=succeeded" in status.stdout and "rows_done=30000" in status.stdout
    listed = spark("list", "--user", "quant", var=tmp_path)
    assert export_id in listed.stdout
    assert spark("list", "--user", "someone-else", var=tmp_path).stdout.strip() == "(no exports)"
    assert "removed 1 export(s)" in spark("cleanup", "--max-age", "-1", var=tmp_path).stdout


def test_bad_parameter_exits_2_naming_the_field(tmp_path):
    run = spark("run", "synthetic_trades", "--param", "rows=-3", "--quiet", var=tmp_path)
    assert run.returncode == 2 and "parameters.rows" in run.stderr and "-3" in run.stderr
    status = spark("status", "../../etc/passwd", var=tmp_path)
    assert status.returncode == 2 and "'id'" in status.stderr


def test_failed_export_exits_1_with_the_error(tmp_path):
    run = spark("run", "synthetic_trades", "--param", "rows=100000", "--param", "fail_after=10", "--quiet", var=tmp_path)
    assert run.returncode == 1 and "state=failed" in run.stdout and "injected failure" in run.stdout

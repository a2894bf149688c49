"""Alert rules: every capability ships rules and promtool unit tests, and both pass promtool."""
from __future__ import annotations

import shutil

import pytest
import yaml

from spark_research.observability.catalog import (
    CAPABILITIES,
    RULES_DIR,
    alert_names,
    alert_test_coverage,
    load_rules,
    rule_files,
    rule_test_file,
)
from spark_research.observability.promtool import PromtoolMissing, check_rules, promtool_path, test_rules

RULE_FILES = rule_files()
SEVERITIES = {"warning", "critical"}


@pytest.fixture(scope="module", autouse=True)
def promtool() -> str:
    """The real promtool; fails (never skips) when it is missing."""
    try:
        return promtool_path()
    except PromtoolMissing as exc:
        pytest.fail(str(exc))


def test_rule_files_are_exactly_one_per_capability():
    assert [p.stem for p in RULE_FILES] == sorted(CAPABILITIES)


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_capability_has_rules_and_rule_tests(capability):
    assert (RULES_DIR / f"{capability}.yml").is_file(), f"rules/{capability}.yml missing"
    assert (RULES_DIR / f"{capability}_test.yml").is_file(), f"rules/{capability}_test.yml missing"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_promtool_check_rules_passes(rule_file):
    result = check_rules(rule_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_promtool_unit_tests_pass(rule_file):
    result = test_rules(rule_test_file(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_every_alert_has_a_firing_and_a_quiet_case(rule_file):
    coverage = alert_test_coverage(rule_test_file(rule_file))
    names = alert_names(rule_file)
    assert names, f"{rule_file.name} defines no alert"
    missing = {name: (coverage[name].firing if name in coverage else 0, coverage[name].quiet if name in coverage else 0)
               for name in names
               if name not in coverage or not coverage[name].firing or not coverage[name].quiet}
    assert not missing, f"alerts lacking a firing or a quiet case (firing, quiet): {missing}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_rule_tests_only_name_alerts_that_exist(rule_file):
    # A quiet case for a misspelt alert name passes vacuously; catch it here.
    unknown = set(alert_test_coverage(rule_test_file(rule_file))) - alert_names(rule_file)
    assert not unknown, f"{rule_test_file(rule_file).name} tests alerts not in {rule_file.name}: {unknown}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_alerts_have_severity_for_and_annotations(rule_file):
    for rule in load_rules(rule_file):
        name = rule.get("alert")
        assert name, f"{rule_file.name}: recording rules are not expected here: {rule}"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["capability"] == rule_file.stem, name
        assert "for" in rule, f"{name}: state the for: duration explicitly"
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), name


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_rule_file_is_one_group(rule_file):
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    assert [g["name"] for g in groups] == [f"spark_{rule_file.stem}"]


def test_export_alerts_are_exactly_the_spec_ones():
    rules = load_rules(RULES_DIR / "export.yml")
    by_name: dict[str, set[str]] = {}
    for rule in rules:
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert by_name == {
        "ExportLatencyP95High": {"warning", "critical"},
        "ExportFailSpike": {"warning", "critical"},
        "ExportBytesAnomaly": {"warning"},
        "ExportConcurrentHigh": {"warning"},
        "ExportSuccessRateLow": {"warning"},
    }
    assert len(rules) == 7


@pytest.mark.parametrize(("capability", "expected"), [
    ("streams", {"StreamsIngestLatencyP95High", "StreamsWsGapP95High", "StreamsSeqGapUnresolved",
                 "StreamsConnectionDown", "StreamsBookChecksumFailing"}),
    ("optimizer", {"OptimizerQueueWaitP95High", "OptimizerStepLatencyP95High", "OptimizerQueueDepthGrowing",
                   "OptimizerJobsFailing"}),
    ("gates", {"GateClosed", "GateDriftHigh", "GateDecisionLatencyP95High", "GateFrequentCloses"}),
    ("backtest", {"BacktestRuntimeP95High", "BacktestGoldenCheckFailing", "BacktestDeterminismCheckFailing"}),
])
def test_capability_alerts_cover_the_spec(capability, expected):
    assert alert_names(RULES_DIR / f"{capability}.yml") == expected


def test_promtool_unit_tests_catch_a_loosened_threshold(tmp_path):
    # The unit tests must bite: raise the warning threshold of ExportLatencyP95High tenfold.
    for name in ("export.yml", "export_test.yml"):
        shutil.copy(RULES_DIR / name, tmp_path / name)
    rules = tmp_path / "export.yml"
    text = rules.read_text()
    assert text.count("> 10000\n") == 1
    rules.write_text(text.replace("> 10000\n", "> 100000\n"))
    assert check_rules(rules).returncode == 0
    result = test_rules(tmp_path / "export_test.yml")
    assert result.returncode != 0
    assert "ExportLatencyP95High" in result.stdout + result.stderr


def test_promtool_check_rejects_invalid_promql(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: rate(ws_msgs_total[5m) > 0\n")
    result = check_rules(bad)
    assert result.returncode != 0


def test_spark_rules_check_command_passes(capsys):
    from spark_research.cli import main

    assert main(["rules", "check"]) == 0
    assert "SUCCESS" in capsys.readouterr().out

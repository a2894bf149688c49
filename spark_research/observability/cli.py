"""``spark dashboards build [--check]`` and ``spark rules check``.

Handlers import their modules lazily so ``spark --help`` stays fast (the Grafana SDK is only
loaded when dashboards are built).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboards`` and ``rules`` commands to the ``spark`` parser."""
    dashboards = subparsers.add_parser("dashboards", help="Grafana dashboards in dashboards/")
    actions = dashboards.add_subparsers(dest="dashboards_action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write dashboards/<capability>.json from the Python builders")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a committed dashboard differs from its builder")
    build.add_argument("--out", type=Path, default=None, help="output directory (default: dashboards/)")
    build.set_defaults(func=_dashboards_build)

    rules = subparsers.add_parser("rules", help="Prometheus alert rules in rules/")
    rule_actions = rules.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    check = rule_actions.add_parser("check", help="promtool check rules + promtool test rules on every rule file")
    check.set_defaults(func=_rules_check)


def _dashboards_build(args: argparse.Namespace) -> int:
    from spark_research.observability.catalog import DASHBOARDS_DIR
    from spark_research.observability.dashboards import run

    return run(args.out or DASHBOARDS_DIR, args.check)


def _rules_check(args: argparse.Namespace) -> int:
    from spark_research.observability.catalog import rule_files, rule_test_file
    from spark_research.observability.promtool import check_rules, test_rules

    files = rule_files()
    results = [check_rules(*files), test_rules(*map(rule_test_file, files))]
    for result in results:
        print(result.stdout, end="")
        print(result.stderr, end="")
    return max(r.returncode for r in results)

"""The ``spark`` command: thin argument parsing in front of the library.

Each capability registers its own subcommands in ``spark_research/<capability>/cli.py``
with a ``register(subparsers)`` function; this module only wires them together, and the
handlers import their heavy dependencies lazily so ``spark --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules contributing subcommands, in help order. Each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "spark_research.data.cli",
    "spark_research.backtest.cli",
    "spark_research.optimizer.cli",
    "spark_research.streams.cli",
    "spark_research.gates.cli",
    "spark_research.export.cli",
    "spark_research.observability.cli",
    "spark_research.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark", description="spark_research command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that capability is not part of this checkout
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spark`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

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
    "spark_research.risk.cli",
    "spark_research.export.cli",
    "spark_research.observability.cli",
    "spark_research.features.cli",
    "spark_research.models.cli",
    "spark_research.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark", description="spark_research command line")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of its one-line message")
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


#: Errors a user's input or environment causes (bad parameters, files, names, data): one line, exit 1.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, OSError, TimeoutError, RuntimeError)


def _message(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spark`` console script; returns the process exit code.

    An expected error (bad input, a missing file, an unknown strategy, invalid data) is one
    line on stderr and exit code 1; anything else is one line naming it an internal error and
    exit code 70. ``spark --debug ...`` shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    command = " ".join(str(v) for k, v in vars(args).items() if k.endswith("command") and isinstance(v, str))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, EXPECTED_ERRORS):
            print(f"spark {command}: error: {_message(exc)}", file=sys.stderr)
            return 1
        print(f"spark {command}: internal error: {type(exc).__name__}: {_message(exc)} "
              f"(run `spark --debug {command} ...` for the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())

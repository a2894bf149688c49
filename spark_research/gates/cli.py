"""``spark audit verify|tail`` and ``spark gate status|close|open``.

The CLI works on the audit log (``--audit PATH``, default ``$SPARK_VAR/audit/gates.db``); gate
states are rebuilt from it, and a manual close/open is appended to it, where running sessions
and the gate control app pick it up. The actor is ``cli:<login name>`` unless ``--actor`` is
given: whoever can run this command can write the audit file, so the shell account is the
authority here (the app, reachable over the network, authenticates instead).
"""
from __future__ import annotations

import argparse
import getpass


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` and ``gate`` commands."""
    audit = subparsers.add_parser("audit", help="verify or show the gate audit log")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = asub.add_parser("verify", help="recompute the hash chain; exit 1 on any edited, deleted or reordered entry")
    v.add_argument("--audit", help="audit database (default: $SPARK_VAR/audit/gates.db)")
    v.set_defaults(func=_verify)
    t = asub.add_parser("tail", help="show the last entries")
    t.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    t.add_argument("--gate", help="only this gate (strategy/symbol)")
    t.add_argument("--audit", help="audit database")
    t.set_defaults(func=_tail)

    gate = subparsers.add_parser("gate", help="show, close or open trading gates")
    gsub = gate.add_subparsers(dest="gate_command", metavar="ACTION", required=True)
    s = gsub.add_parser("status", help="state of every gate (from the audit log)")
    s.add_argument("--audit", help="audit database")
    s.set_defaults(func=_status)
    for action in ("close", "open"):
        p = gsub.add_parser(action, help=f"{action} a gate by hand (reason required)")
        p.add_argument("strategy")
        p.add_argument("symbol")
        p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        p.add_argument("--actor", help="who (default cli:<login name>)")
        p.add_argument("--audit", help="audit database")
        p.set_defaults(func=_manual, action=action)


def _log(args):
    from spark_research.gates.audit import AuditLog

    return AuditLog(args.audit) if args.audit else AuditLog()


def _verify(args) -> int:
    with _log(args) as log:
        report = log.verify()
    print(report)
    return 0 if report.ok else 1


def _fmt(e) -> str:
    return (f"{e.seq:>6} {e.time.isoformat()} {e.actor:<12} {e.kind:<10} {e.gate:<28} "
            f"{e.old_state:>9} -> {e.new_state:<9} {e.reason}")


def _tail(args) -> int:
    with _log(args) as log:
        for e in log.tail(args.n, gate=args.gate):
            print(_fmt(e))
    return 0


def _status(args) -> int:
    from spark_research.gates.gate import GateBook

    with _log(args) as log:
        df = GateBook.from_audit(log).status()
    if df.empty:
        print("no gates")
        return 0
    print(df[["gate", "state", "manual_hold", "close_reason"]].to_string(index=False))
    return 0


def _manual(args) -> int:
    from spark_research.gates.errors import GateError
    from spark_research.gates.gate import GateBook

    actor = args.actor or f"cli:{getpass.getuser()}"
    with _log(args) as log:
        book = GateBook.from_audit(log)
        try:
            state = getattr(book, args.action)(args.strategy, args.symbol, actor=actor, reason=args.reason)
        except GateError as exc:
            print(f"error: {exc}")
            return 2
    print(f"{args.strategy}/{args.symbol}: {state.name}")
    return 0

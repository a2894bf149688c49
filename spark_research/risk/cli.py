"""``spark risk status|limits|halt|reduce|resume|reload``.

Reads and writes the risk state under ``--root`` (default ``$SPARK_VAR/risk``): the state
store and the hash-chained audit log a running :class:`~spark_research.risk.engine.RiskEngine`
uses; it adopts a change on its next bar. ``halt``, ``reduce``, ``resume`` and ``reload`` are
operator-authenticated like gate control: ``--user`` (or ``$SPARK_RISK_USER``) with the password
from ``$SPARK_RISK_PASSWORD`` or a prompt, checked against the gates' bcrypt user directory
(``$SPARK_GATE_USERS``); a refused attempt is audited. Scopes: ``global``,
``strategy:<name>``, ``instrument:<symbol>``.

    spark risk status
    spark risk halt global --reason "exchange incident" --user operator
    spark risk resume strategy:sma_cross --reason "reviewed" --user operator
    spark risk reload --user operator            # validates config/risk.yml first
"""
from __future__ import annotations

import argparse
import getpass
import json
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``risk`` command."""
    risk = subparsers.add_parser("risk", help="pre-trade risk: states, limits, kill switch")
    sub = risk.add_subparsers(dest="risk_command", metavar="ACTION", required=True)
    s = sub.add_parser("status", help="trading states and the day's counters")
    s.add_argument("--root", help="risk state directory (default $SPARK_VAR/risk)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_status)
    lim = sub.add_parser("limits", help="validate and show the limits of a risk.yml")
    lim.add_argument("--config", help="risk.yml (default $SPARK_RISK_CONFIG or config/risk.yml)")
    lim.set_defaults(func=_limits)
    for action, state in (("halt", "HALTED"), ("reduce", "REDUCING"), ("resume", "ACTIVE")):
        p = sub.add_parser(action, help=f"set a scope to {state} (operator; reason required)")
        p.add_argument("scope", help="global | strategy:<name> | instrument:<symbol>")
        p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        _auth_args(p)
        p.set_defaults(func=_set, state=state, action=action)
    r = sub.add_parser("reload", help="validate risk.yml, then make running engines reload it (operator)")
    r.add_argument("--config", help="risk.yml (default $SPARK_RISK_CONFIG or config/risk.yml)")
    _auth_args(r)
    r.set_defaults(func=_reload, action="reload")


def _auth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="operator user (default $SPARK_RISK_USER)")
    p.add_argument("--root", help="risk state directory (default $SPARK_VAR/risk)")


def _operator(args, ctl, scope: str) -> str | None:
    from spark_research.risk.control import authenticate_operator
    from spark_research.risk.errors import RiskPermissionError

    user = args.user or os.environ.get("SPARK_RISK_USER")
    password = os.environ.get("SPARK_RISK_PASSWORD")
    if password is None and user:
        password = getpass.getpass(f"password for {user}: ")
    try:
        return authenticate_operator(user, password)
    except RiskPermissionError as exc:
        ctl.refuse(scope, args.action, actor=f"cli:{user or getpass.getuser()}", reason=str(exc))
        print(f"error: {exc}")
        return None


def _status(args) -> int:
    from spark_research.risk.control import RiskControl

    ctl = RiskControl(args.root)
    try:
        st = ctl.status()
    finally:
        ctl.close()
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True, default=str))
        return 0
    for scope, state in st["states"].items():
        print(f"{scope:<28} {state}")
    if st["equity"] is not None:
        print(f"equity {st['equity']:.2f}  day PnL {st['day_pnl']:.2f}  realised {st['realised']:.2f}  "
              f"day peak {st['day_peak_equity']:.2f}")
    for sym, (qty, avg, _) in sorted(st["positions"].items()):
        print(f"  {sym:<12} {qty:>14.8g} @ {avg:.8g}")
    return 0


def _limits(args) -> int:
    import yaml

    from spark_research.risk.config import RiskConfig

    cfg = RiskConfig.load(args.config)
    print(f"# {cfg.source} (sha256 {cfg.digest[:16]})")
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def _set(args) -> int:
    from spark_research.risk.control import RiskControl

    ctl = RiskControl(args.root)
    try:
        user = _operator(args, ctl, args.scope)
        if user is None:
            return 2
        state = ctl.set_state(args.scope, args.state, actor=f"cli:{user}", reason=args.reason)
    finally:
        ctl.close()
    print(f"{args.scope}: {state}")
    return 0


def _reload(args) -> int:
    from spark_research.risk.control import RiskControl

    ctl = RiskControl(args.root)
    try:
        user = _operator(args, ctl, "global")
        if user is None:
            return 2
        cfg = ctl.request_reload(args.config, actor=f"cli:{user}")
    finally:
        ctl.close()
    print(f"reload requested: {cfg.source} (sha256 {cfg.digest[:16]})")
    return 0

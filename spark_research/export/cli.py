"""``spark export run|status|cancel|list|cleanup|serve``: export jobs from the command line.

Jobs made here are the same records the HTTP endpoints see (``<var>/exports``), owned by
``--user`` (default: the login name). ``cancel`` also stops an export a server runs on the
same directory; Ctrl-C during ``run`` cancels that run's export.

Example::

    spark export run synthetic_trades --format csv.gz --param rows=100000 --out fills.csv.gz
    spark export run backtest_trades --format pdf --param symbol=BTCUSDT --renderer latex --out report.pdf
    spark export cancel 5f0c...e1
    spark export list
"""
from __future__ import annotations

import argparse
import getpass
import json
import shutil
import sys


def _params(args: argparse.Namespace) -> dict:
    params = json.loads(args.params_json) if args.params_json else {}
    if getattr(args, "renderer", None):
        params["renderer"] = args.renderer
    for item in args.param or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--param {item!r}: expected key=value")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw  # plain strings need no quotes: symbol=BTCUSDT
    return params


def _print_job(job) -> None:
    d = job.to_dict()
    keys = ("id", "user", "what", "format", "state", "stage", "rows_done", "rows_total", "bytes", "renderer",
            "renderer_fallback", "error", "filename")
    print("  ".join(f"{k}={d[k]}" for k in keys if d.get(k) is not None))


def _run(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from spark_research.export.errors import ExportError
    from spark_research.export.jobs import ExportManager

    mgr = ExportManager(args.root, workers=1, resume=False)
    try:
        job = mgr.submit(args.user, args.what, args.format, _params(args))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        mgr.close()
        return 2
    bar = tqdm(unit="rows", desc=f"export {job.id[:8]}", disable=args.quiet)
    try:
        while (cur := mgr.get(job.id, None)).state in ("queued", "running"):
            bar.total = cur.rows_total
            bar.n = cur.rows_done
            bar.refresh()
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C: stop the export (and its kernel, browser or xelatex) cleanly
        cur = mgr.cancel(job.id, None, wait=10.0)
    bar.n = cur.rows_done
    bar.close()
    mgr.close()
    _print_job(cur)
    if cur.state != "succeeded":
        return 1
    path = mgr.file_path(cur.id, None)
    if args.out:
        shutil.copyfile(path, args.out)
        print(f"wrote {args.out}")
    else:
        print(f"file {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from spark_research.export.errors import ExportError
    from spark_research.export.jobs import ExportManager

    try:
        _print_job(ExportManager(args.root, resume=False).get(args.id, None))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from spark_research.export.errors import ExportError
    from spark_research.export.jobs import ExportManager

    mgr = ExportManager(args.root, resume=False)
    try:
        job = mgr.cancel(args.id, None, wait=args.wait)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        mgr.close()
    _print_job(job)
    if job.state != "cancelled":
        print(f"cancel requested; export {job.id} still {job.state} after {args.wait:g} s", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from spark_research.export.jobs import ExportManager

    jobs = ExportManager(args.root, resume=False).list(args.user)
    for job in jobs:
        _print_job(job)
    if not jobs:
        print("(no exports)")
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from spark_research.export.jobs import ExportManager

    removed = ExportManager(args.root, resume=False).cleanup(args.max_age)
    print(f"removed {len(removed)} export(s)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from spark_research.export.server import serve

    serve(port=args.port, host=args.host, root=args.root, max_per_user=args.max_per_user)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``spark export ...`` to the ``spark`` command."""
    exp = sub.add_parser("export", help="CSV and PDF exports: run, status, cancel, list, cleanup, serve")
    exp_sub = exp.add_subparsers(dest="export_command", required=True)
    root_help = "exports directory (default <var>/exports, SPARK_VAR)"

    run = exp_sub.add_parser("run", help="run one export now and wait for it")
    run.add_argument("what", help="source: bars, trades, backtest_trades, synthetic_trades, sweep_results, fills, audit_log, ingested_trades")
    run.add_argument("--format", default="csv", choices=["csv", "csv.gz", "pdf"])
    run.add_argument("--param", action="append", metavar="KEY=VALUE", help="source parameter (value parsed as JSON if it can be)")
    run.add_argument("--params-json", help="all parameters as one JSON object")
    run.add_argument("--renderer", choices=["auto", "chromium", "latex"],
                     help="PDF only: chromium, LaTeX (xelatex), or auto = chromium with LaTeX as the fallback")
    run.add_argument("--out", help="copy the finished file here")
    run.add_argument("--user", default=getpass.getuser())
    run.add_argument("--root", help=root_help)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    st = exp_sub.add_parser("status", help="state of one export")
    st.add_argument("id")
    st.add_argument("--root", help=root_help)
    st.set_defaults(func=_status)

    ca = exp_sub.add_parser("cancel", help="stop a queued or running export (also one a server runs)")
    ca.add_argument("id")
    ca.add_argument("--wait", type=float, default=10.0, help="seconds to wait for it to stop (default 10)")
    ca.add_argument("--root", help=root_help)
    ca.set_defaults(func=_cancel)

    ls = exp_sub.add_parser("list", help="exports, newest first")
    ls.add_argument("--user", help="only this user's")
    ls.add_argument("--root", help=root_help)
    ls.set_defaults(func=_list)

    cl = exp_sub.add_parser("cleanup", help="delete finished exports older than --max-age seconds")
    cl.add_argument("--max-age", type=float, default=None, help="seconds (default SPARK_EXPORT_MAX_AGE_S or 7 days)")
    cl.add_argument("--root", help=root_help)
    cl.set_defaults(func=_cleanup)

    sv = exp_sub.add_parser("serve", help="serve the export HTTP endpoints and /metrics (companion process)")
    sv.add_argument("--port", type=int, default=8790)
    sv.add_argument("--host", default=None, help="bind address (default SPARK_HOST or 127.0.0.1)")
    sv.add_argument("--max-per-user", type=int, default=None)
    sv.add_argument("--root", help=root_help)
    sv.set_defaults(func=_serve)

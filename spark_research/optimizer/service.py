"""The Dask scheduler and each Dask worker as a process of its own, for ``spark serve`` to supervise.

``spark serve`` (without ``--dask-scheduler``) starts one scheduler and ``n_workers`` workers
with ``python -m spark_research.optimizer.service scheduler|worker ...`` and watches each
(:class:`spark_research.platform.supervisor.Supervised`): a worker killed with ``kill -9`` is
started again and joins the same scheduler; a killed scheduler comes back on the same port,
its workers (which close when they lose it) are restarted by their own supervisors and
rejoin, and the web server's ``distributed.Client`` reconnects on its own (its ``timeout``
is longer than a restart). No Dask nanny: the supervisor is the nanny, so ``/health`` sees
the real pid of every process doing the work.

Each process writes ``--state-file`` (JSON: pid, address, dashboard) once it is listening, which
is how its supervisor knows it is ready; it exits when its supervisor is gone
(``SPARK_SUPERVISOR_PID``). Dask's INFO logs go to the process's stdout, which the supervisor
sends to ``var/log/dask-*.log``.

Example::

    python -m spark_research.optimizer.service scheduler --port 8786 --state-file var/run/dask-scheduler.json
    python -m spark_research.optimizer.service worker --scheduler tcp://127.0.0.1:8786 --name w0 \\
        --state-file var/run/dask-worker-0.json
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any


def _write_state(path: Path, info: dict[str, Any]) -> None:
    from spark_research._lifecycle import write_json_atomic

    write_json_atomic(path, {"pid": os.getpid(), **info})


async def _until_signal(server) -> None:
    """Run until ``server`` finishes on its own, or SIGTERM/SIGINT closes it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    finished = asyncio.ensure_future(server.finished())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not finished.done():
        await server.close()
    stopped.cancel()


async def run_scheduler(port: int, dashboard_port: int, state_file: Path) -> None:
    """A ``distributed.Scheduler`` on 127.0.0.1:``port`` (dashboard and its /metrics on ``dashboard_port``)."""
    from distributed import Scheduler

    async with Scheduler(host="127.0.0.1", port=port, dashboard_address=f"127.0.0.1:{dashboard_port}",
                         dashboard=True) as scheduler:
        _write_state(state_file, {"address": scheduler.address,
                                  "dashboard": f"http://127.0.0.1:{scheduler.http_server.port}/status"})
        from spark_research.optimizer.warm import import_task_modules

        # the first sweep's first task would import them on the event loop (every worker waiting)
        asyncio.get_running_loop().run_in_executor(None, import_task_modules)
        await _until_signal(scheduler)


async def run_worker(scheduler: str, name: str, nthreads: int, memory_limit: str, state_file: Path) -> None:
    """A single ``distributed.Worker`` (no nanny) joining ``scheduler``."""
    from distributed import Worker

    async with Worker(scheduler, host="127.0.0.1", name=name, nthreads=nthreads, memory_limit=memory_limit,
                      dashboard_address="127.0.0.1:0") as worker:
        _write_state(state_file, {"address": worker.address, "name": name,
                                  "dashboard": f"http://127.0.0.1:{worker.http_server.port}"})
        await _until_signal(worker)


def worker_memory_limit(n_workers: int) -> str:
    """What ``LocalCluster(memory_limit="auto")`` gives each of ``n_workers``: the machine's memory shared out."""
    import psutil

    return str(int(psutil.virtual_memory().total // max(n_workers, 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_research.optimizer.service")
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("scheduler")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--dashboard-port", type=int, default=0)
    s.add_argument("--state-file", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--scheduler", required=True, help="tcp://127.0.0.1:PORT")
    w.add_argument("--name", required=True)
    w.add_argument("--nthreads", type=int, default=1)
    w.add_argument("--memory-limit", default="auto")
    w.add_argument("--state-file", required=True)
    args = parser.parse_args(argv)
    if "SPARK_SUPERVISOR_PID" in os.environ:
        from spark_research._lifecycle import die_with_parent

        die_with_parent(int(os.environ["SPARK_SUPERVISOR_PID"]))
    if args.role == "scheduler":
        coro = run_scheduler(args.port, args.dashboard_port, Path(args.state_file))
    else:
        coro = run_worker(args.scheduler, args.name, args.nthreads, args.memory_limit, Path(args.state_file))
    asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())

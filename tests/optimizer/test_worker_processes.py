"""The Dask scheduler and workers as supervised processes (``optimizer.service``), and workers that
load the sweep kernels when they join (``optimizer.warm``): what ``spark serve`` and a cluster of
``dask worker`` processes started elsewhere rely on."""
from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from spark_research.optimizer.warm import TASK_MODULES, kernels_warm
from spark_research.platform.supervisor import Supervised
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(180)


def _proc(tmp_path, name: str, *args: str) -> Supervised:
    state = tmp_path / f"{name}.json"
    return Supervised(name, [sys.executable, "-m", "spark_research.optimizer.service", *args, "--state-file", str(state)],
                      state_file=state, log_file=tmp_path / f"{name}.log")


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)


def test_workers_load_the_sweep_kernels_when_they_join_and_come_back_after_kill_9(tmp_path):
    from distributed import Client

    from spark_research.optimizer import Optimizer

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _proc(tmp_path, "scheduler", "scheduler", "--port", str(port)).start()
    first = _proc(tmp_path, "w0", "worker", "--scheduler", address, "--name", "w0").start()
    client = Client(address, timeout="30s")
    second = None
    try:
        opt = Optimizer(client, persist=False)
        assert scheduler.ready_info["address"] == address and first.ready_info["name"] == "w0"

        def warm_everywhere() -> bool:
            done = client.run(kernels_warm)
            return len(done) == len(client.scheduler_info()["workers"]) and all(v is not None for v in done.values())

        _until(warm_everywhere, 90, "the worker present at registration loads the kernels")
        second = _proc(tmp_path, "w1", "worker", "--scheduler", address, "--name", "w1").start()
        _until(lambda: len(client.scheduler_info()["workers"]) == 2 and warm_everywhere(), 90,
               "a worker joining later loads them too")
        # kill -9 a worker: its supervisor starts it again, it rejoins and warms again
        old_pid = first.pid
        os.kill(old_pid, signal.SIGKILL)
        _until(lambda: first.pid != old_pid and first.info()["state"] == "up", 30, "the killed worker restarts")
        assert first.restarts == 1 and first.last_exit == -signal.SIGKILL
        _until(lambda: len(client.scheduler_info()["workers"]) == 2 and warm_everywhere(), 90,
               "the restarted worker rejoins with its kernels loaded")
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        opt.close()
    finally:
        client.close()
        for p in (second, first, scheduler):
            if p is not None:
                p.stop()
    assert first.proc.poll() is not None and scheduler.proc.poll() is not None  # stopped, not orphaned


def test_a_worker_exits_when_its_supervisor_is_gone(tmp_path):
    """``die_with_parent``: a worker whose supervisor died (even by kill -9) does not linger."""
    import subprocess

    port = free_port()
    code = (
        "import sys, time; from pathlib import Path\n"
        "from spark_research.platform.supervisor import Supervised\n"
        f"s = Supervised('sch', [sys.executable, '-m', 'spark_research.optimizer.service', 'scheduler', '--port', '{port}',"
        f" '--state-file', r'{tmp_path / 's.json'}'], state_file=Path(r'{tmp_path / 's.json'}')).start()\n"
        "print(s.pid, flush=True); time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return False

        _until(gone, 15, "the scheduler exits once its supervisor is gone")
    finally:
        if parent.poll() is None:
            parent.kill()


def _scheduler_has_task_modules(client) -> bool:
    # a lambda is pickled by value: asking does not import anything on the scheduler
    return client.run_on_scheduler(lambda: all(m in sys.modules for m in TASK_MODULES))


def test_a_scheduler_started_elsewhere_imports_the_sweep_task_modules_when_the_optimizer_warms_it(tmp_path):
    """Dask's scheduler unpickles every task: unwarmed, a sweep's first task makes it import the step
    modules (pandas, vectorbt: seconds) while every worker waits."""
    import subprocess

    from distributed import Client

    from spark_research.optimizer.warm import register_warm_plugin

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                             "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        client = Client(f"tcp://127.0.0.1:{port}", timeout="60s")
        try:
            assert not _scheduler_has_task_modules(client)
            register_warm_plugin(client, wait=True)
            assert _scheduler_has_task_modules(client)
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_platforms_scheduler_process_imports_the_sweep_task_modules_as_it_starts(tmp_path):
    from distributed import Client

    port = free_port()
    scheduler = _proc(tmp_path, "scheduler", "scheduler", "--port", str(port)).start()
    client = Client(f"tcp://127.0.0.1:{port}", timeout="30s")
    try:
        _until(lambda: _scheduler_has_task_modules(client), 60, "the scheduler imports the task modules")
    finally:
        client.close()
        scheduler.stop()

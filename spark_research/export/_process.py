"""Stopping a process together with everything it started (kernels, browsers, xelatex).

A report's worker starts an IPython kernel, Playwright's driver with chromium under it, or
xelatex; several of them start sessions of their own (the kernel, chromium), so a signal to
a process group misses them. :func:`kill_tree` follows the parent links instead: it stops
(SIGSTOP) the root and every descendant until no new one appears, so nothing can fork
behind its back, then kills them all (SIGKILL) and waits for them to be gone.

Example::

    >>> import subprocess, sys
    >>> sleeper = "import time; time.sleep(60)"
    >>> p = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; "
    ...                       f"subprocess.Popen([sys.executable, '-c', {sleeper!r}]); {sleeper}"])
    >>> len(kill_tree(p.pid)) >= 1, p.wait(timeout=5) == -9
    (True, True)
"""
from __future__ import annotations

import signal
import time

import psutil


def kill_tree(pid: int, timeout: float = 2.0) -> list[int]:
    """Kill process ``pid`` and all its descendants; return their pids (empty if ``pid`` is gone).

    Waits up to ``timeout`` seconds for them to exit. The caller still reaps ``pid`` itself
    if it is its child (``Popen.wait``); descendants are reaped by their new parent, init,
    which may take a second or more: a zombie counts as exited (it holds no memory, files
    or CPU).
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    frozen: dict[int, psutil.Process] = {}
    pending = [root]
    while pending:  # freeze level by level: a stopped process cannot start another
        for proc in pending:
            try:
                proc.send_signal(signal.SIGSTOP)
                frozen[proc.pid] = proc
            except psutil.NoSuchProcess:
                pass
        pending = []
        for proc in list(frozen.values()):
            try:
                pending += [c for c in proc.children() if c.pid not in frozen]
            except psutil.NoSuchProcess:
                pass
    for proc in frozen.values():
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + timeout
    waiting = [p for p in frozen.values() if p.pid != pid]
    while waiting and time.monotonic() < deadline:
        waiting = [p for p in waiting if not terminated(p)]
        if waiting:
            time.sleep(0.01)
    return sorted(frozen)


def terminated(proc: psutil.Process) -> bool:
    """True if ``proc`` has exited: gone, or a zombie (dead, waiting for its new parent, init, to reap it)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

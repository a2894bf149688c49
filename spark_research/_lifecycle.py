"""Process lifecycle helpers shared by the processes ``spark serve`` supervises (written once, low in the tree).

Example::

    >>> import os
    >>> die_with_parent(os.getppid())  # doctest: +SKIP  (this process now exits with its parent)
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


def die_with_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """In a supervised child: SIGTERM this process once its supervisor is gone (even killed with -9).

    A watchdog thread compares the parent pid (an orphan is re-parented). Not
    ``PR_SET_PDEATHSIG``: it fires when the *thread* that started the child ends, and
    ``spark serve`` starts components from short-lived threads.
    """

    def watchdog() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` by a rename, so a reader never sees half of it: how a
    supervised child publishes its ready state (``Supervised`` waits for the file with its pid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)

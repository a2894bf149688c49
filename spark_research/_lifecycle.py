"""Process lifecycle helpers shared by the processes ``spark serve`` supervises (written once, low in the tree).

Example::

    >>> import os
    >>> die_with_parent(os.getppid())  # doctest: +SKIP  (this process now exits with its parent)
"""
from __future__ import annotations

import os
import signal
import threading
import time


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

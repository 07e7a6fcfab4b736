"""Worker processes that die with their parent.

A :class:`concurrent.futures.ProcessPoolExecutor` worker whose parent is killed (``kill -9``)
keeps waiting for work, orphaned, holding memory and CPU. Pass :func:`die_with_parent` as the
pool's initializer (``initargs=(os.getpid(),)``) and it ends with its parent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

#: seconds between two looks of a worker's watchdog at its parent
_WATCH_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    """A worker's watchdog thread: exit at once when the parent process is gone (reparented)."""
    while True:
        time.sleep(_WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Initializer of the benchmark's worker processes: they die with the benchmark process,
    however it ends (``kill -9`` included), instead of waiting orphaned for work.

    On Linux the kernel sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
    everywhere a daemon thread checks ``os.getppid()`` every second as a fallback.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="firereg-parent-watch", daemon=True).start()

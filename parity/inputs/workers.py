"""Worker processes that never outlive the process that started them.

A `kill -9` of an evaluation gives it no chance to stop its decoding
workers; left alone they would keep running and keep the parent's pipes open
(so a caller waiting for the output would wait forever). Each worker asks
Linux to kill it when its parent dies (prctl PR_SET_PDEATHSIG) and, where
that is unavailable, a thread in it checks once a second that its parent is
still the one that started it. Linux sends that signal when the *thread*
that started the worker ends: the pool starts its workers from the thread
that submits work, which for the evaluation is the main thread.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(POLL_S)


def bind_to_parent(parent_pid: int) -> None:
    """Run first in every worker (a pool's initializer): the worker ends when
    `parent_pid` does, whichever way it ends."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="parent-watch").start()

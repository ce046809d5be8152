"""A helper process must not outlive the process it serves.

A heart monitor under ipcontroller, or a benchmark's child, that survived its parent's
SIGKILL would keep its ports bound and its CPU busy for nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies (elsewhere: nothing).

    Call it first thing in the child, not from a ``preexec_fn``: that is not safe in a process
    with threads, and can hang the child between fork and exec.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)

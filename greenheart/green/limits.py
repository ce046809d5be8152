"""File descriptors: every ZeroMQ socket costs one, and every connection another."""

from __future__ import annotations

import contextlib
import os
import resource

from greenheart.core.errors import TooManyHearts

__all__ = [
    "RESERVED_DESCRIPTORS",
    "TooManyHearts",
    "check_room",
    "open_descriptors",
    "raise_open_file_limit",
]

#: descriptors kept free for the context, the fleet's SUB socket, logging and the like
RESERVED_DESCRIPTORS = 64


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one, as far as the kernel allows; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # the kernel's usual nr_open
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):  # the limit stays as it was
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_descriptors(pid: int | str = "self") -> int:
    """The file descriptors a process has open (0 if /proc cannot say)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def check_room(hearts: int, per_heart: int, what: str) -> None:
    """Raise :class:`TooManyHearts` unless ``hearts`` more, at ``per_heart`` descriptors each,
    fit under the open-file limit (raised to the hard limit first)."""
    limit = raise_open_file_limit()
    in_use = open_descriptors()
    fits = max(0, (limit - in_use - RESERVED_DESCRIPTORS) // per_heart)
    if hearts > fits:
        raise TooManyHearts(
            f"{what} of {hearts} hearts needs {per_heart} file descriptors a heart, but with the"
            f" open-file limit at {limit} and {in_use} descriptors open, at most {fits} fit"
        )

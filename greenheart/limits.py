"""File descriptors: every ZeroMQ socket costs one, and every connection another."""

from __future__ import annotations

import contextlib
import os
import resource


class TooManyHearts(ValueError):
    """More hearts were asked for than the open-file limit allows."""


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


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
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

"""The errors greenheart raises on purpose.

:class:`UsageError` is the caller's mistake: an argument, address, key file or size that
cannot work as given. Its message is written for the person who asked, and the
``greenheart`` command prints it as one line with exit status 2. Anything else that
escapes greenheart is a bug, and surfaces as a traceback.
"""

from __future__ import annotations

import importlib.util


class GreenheartError(Exception):
    """The base of every error greenheart raises on purpose."""


class UsageError(GreenheartError, ValueError):
    """What was asked cannot be done as asked: the message says why, for a person to fix."""


class TooManyHearts(UsageError):
    """More hearts were asked for than the open-file limit allows."""


class SocketClosed(GreenheartError):
    """A socket an object needs was closed by someone else while the object was running."""


def require_extra(module: str, extra: str) -> None:
    """Refuse what needs an optional dependency that is not installed, naming the extra that
    brings it (``pip install 'greenheart-zmq[EXTRA]'``)."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{module} is not installed: pip install 'greenheart-zmq[{extra}]'")

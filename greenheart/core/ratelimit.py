"""Logging that an overload cannot turn into a log storm."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs


@attrs.define
class RateLimitedLog:
    """Logs at most one record per ``key`` every ``interval`` seconds.

    The next record logged for a key says how many were held back since the last one.
    Keys are a small fixed vocabulary chosen by the caller ("stale pong", "handler"), never
    something a peer controls, so the bookkeeping stays bounded.
    """

    log: logging.Logger
    interval: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = attrs.field(factory=dict, init=False)
    _held_back: dict[str, int] = attrs.field(factory=dict, init=False)

    def __call__(
        self, level: int, key: str, msg: str, *args: object, exc_info: bool = False
    ) -> bool:
        """Log ``msg % args`` under ``key`` unless one was logged recently; True if it was."""
        if not self.log.isEnabledFor(level):
            return False
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return False
        self._last[key] = now
        held_back = self._held_back.pop(key, 0)
        if held_back and last is not None:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, held_back, now - last)
        self.log.log(level, msg, *args, exc_info=exc_info)
        return True

"""Who hears of a heart monitor's verdicts: the handlers of new hearts, of failed hearts (by
identity, as IPython.parallel's, or by certificate) and of beats.

Handlers are called in the order they were added; one that raises is counted and logged
(rate-limited), and the others still run. A handler may remove itself while it is called: the
call goes on with the handlers there were when it began.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from greenheart.core.failures import Failure
from greenheart.core.values import Beat
from greenheart.green.monitor.logs import MonitorLog

HeartHandler = Callable[[bytes], Any]
FailureHandler = Callable[[Failure], Any]
BeatHandler = Callable[[Beat], Any]

T = TypeVar("T")


def require_callable(handler: object) -> None:
    if not callable(handler):
        raise TypeError(f"a handler must be callable, got {handler!r}")


@attrs.define
class Handlers:
    """A monitor's handlers, by what they hear of."""

    log: MonitorLog
    #: ``fn(heart)`` for each heart that starts beating
    new_heart: list[HeartHandler] = attrs.field(factory=list, init=False)
    #: for each heart that failed, in the order they were added: ``fn(heart)``, or with
    #: ``certificate`` true ``fn(failure)``, its certificate
    failure: list[tuple[Callable[[Any], Any], bool]] = attrs.field(factory=list, init=False)
    #: ``fn(beat)`` after every beat
    beat: list[BeatHandler] = attrs.field(factory=list, init=False)
    #: exceptions raised by handlers, logged and swallowed
    errors: int = attrs.field(default=0, init=False)

    def remove_failure(self, handler: HeartHandler | FailureHandler, certificate: bool) -> None:
        self.failure.remove((handler, certificate))

    def failed(self, heart: bytes, failure: Failure | None) -> None:
        """Call the failure handlers, each with the heart or its certificate."""
        for handler, certificate in tuple(self.failure):
            if not certificate:
                self.call([handler], "heart failure", heart)
            elif failure is not None:
                self.call([handler], "heart failure", failure)

    def call(self, handlers: Sequence[Callable[[T], Any]], event: str, arg: T) -> None:
        """Call each of ``handlers`` with ``arg``; one that raises is counted and logged."""
        for handler in tuple(handlers):  # a handler may remove itself
            try:
                handler(arg)
            except Exception:
                self.errors += 1
                self.log.error("handler", "%s handler %r raised", event, handler)

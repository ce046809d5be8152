"""A heart's watch on its monitor's pings.

:class:`PingWatch` is ipengine's check on its controller, for simulated engines: which of them
give up. :class:`Hearing` is a greenheart heart's own: it is fed the time of each ping and
tells the heart when its monitor is *lost* (no ping for ``misses`` of the monitor's periods,
learnt from the pings themselves; before any ping, for ``first_wait`` seconds: a monitor gone,
the network between cut, nothing listening at the address) and when it is *found* again (the
next ping).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from greenheart.core.checks import COUNT


@attrs.define
class PingWatch:
    """ipengine's check on its controller: at every check (ipengine checks every heart period
    plus 500 ms), an engine whose heart heard no ping since the check before has missed one;
    one that has missed ``max_misses`` in a row gives up on the controller and leaves.

    The first check of an engine only notes its count, as ipengine's first check cannot miss.
    """

    max_misses: int = attrs.field(validator=attrs.validators.ge(1))
    _heard: dict[str, int] = attrs.field(factory=dict, init=False)
    _misses: dict[str, int] = attrs.field(factory=dict, init=False)

    def check(self, pings: Mapping[str, int]) -> list[str]:
        """``pings``: how many pings each engine to watch has heard so far. The engines that
        have now missed ``max_misses`` checks in a row; they are watched no more (until they
        are in ``pings`` again, as from scratch). An engine left out of ``pings`` is forgotten.
        """
        for uuid in [uuid for uuid in self._heard if uuid not in pings]:
            del self._heard[uuid], self._misses[uuid]
        given_up = []
        for uuid, count in pings.items():
            if self._heard.get(uuid, -1) != count:
                self._heard[uuid], self._misses[uuid] = count, 0
                continue
            self._misses[uuid] += 1
            if self._misses[uuid] >= self.max_misses:
                given_up.append(uuid)
                del self._heard[uuid], self._misses[uuid]
        return given_up


#: periods without a ping before the monitor is lost
MISSES = 3

#: seconds a heart waits for its first ping before it calls the monitor lost: longer than
#: ipyparallel's period (3 s) and a connection's first handshake
FIRST_WAIT = 10.0


class Change(enum.Enum):
    LOST = "lost"
    FOUND = "found"


@attrs.define
class Hearing:
    """The pings a heart heard, by time (seconds on any monotonic clock)."""

    started: float
    misses: int = attrs.field(default=MISSES, validator=COUNT)
    first_wait: float = FIRST_WAIT
    #: when the last ping came; None before the first
    last: float | None = attrs.field(default=None, init=False)
    #: the interval between the last two pings: the monitor's period, as heard
    period: float | None = attrs.field(default=None, init=False)
    lost: bool = attrs.field(default=False, init=False)

    def ping(self, now: float) -> Change | None:
        """A ping came at ``now``: FOUND if the monitor was lost (or this is the first ping
        after a first wait that ran out). The gap of a loss is not a period."""
        if self.lost:
            self.lost, self.last = False, now
            return Change.FOUND
        if self.last is not None:
            self.period = now - self.last
        self.last = now
        return None

    def deadline(self) -> float:
        """When the monitor is lost if no ping comes first."""
        if self.last is None:
            return self.started + self.first_wait
        if self.period is None or self.period <= 0:
            return self.last + self.first_wait
        return self.last + (self.misses + 1) * self.period

    def check(self, now: float) -> Change | None:
        """LOST if the monitor has just been lost by ``now``."""
        if self.lost or now < self.deadline():
            return None
        self.lost = True
        return Change.LOST

    def silence(self, now: float) -> float:
        """Seconds since the last ping (since the start, before the first)."""
        return now - (self.last if self.last is not None else self.started)

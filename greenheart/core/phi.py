"""Phi-accrual failure detection (Hayashibara et al., 2004), as Akka and Cassandra use it.

A fixed miss count says "failed" after the same number of silent beats whether a heart
has answered like clockwork for hours or jitters wildly. A phi-accrual detector instead
keeps, for each heart, a window of the intervals between its answers, and turns the time
since its last answer into a suspicion level:

    phi = -log10(P(the next answer comes later than now))

under a normal distribution fitted to the window. phi 1 means a 10% chance the heart is
only slow, phi 8 one in 10^8. The heart fails once phi exceeds ``threshold``.

``min_std_deviation`` keeps a heart that has answered with no jitter at all from being
failed the instant it is a little late, and ``acceptable_pause`` is added to the mean
interval, to tolerate pauses (garbage collection, a busy hub) of known length. The
cumulative normal is approximated by a logistic function, as in Akka.
"""

from __future__ import annotations

import math
from array import array

import attrs

_LN10 = math.log(10.0)


@attrs.frozen
class PhiAccrual:
    """The settings of a phi-accrual detector; times in seconds."""

    threshold: float = attrs.field(default=8.0, converter=float, validator=attrs.validators.gt(0))
    min_std_deviation: float = attrs.field(
        default=0.1, converter=float, validator=attrs.validators.gt(0)
    )
    acceptable_pause: float = attrs.field(
        default=0.0, converter=float, validator=attrs.validators.ge(0)
    )
    #: how many of a heart's latest intervals the estimate rests on
    window: int = attrs.field(
        default=100, validator=[attrs.validators.instance_of(int), attrs.validators.ge(2)]
    )

    def phi(self, elapsed: float, intervals: Intervals) -> float:
        """The suspicion that a heart whose last answer was ``elapsed`` seconds ago has failed."""
        mean = intervals.mean() + self.acceptable_pause
        std = max(intervals.std(), self.min_std_deviation)
        y = (elapsed - mean) / std
        z = y * (1.5976 + 0.070566 * y * y)
        # log10(1 + e^z), written so that neither a large nor a very negative z overflows
        if z > 0:
            return (z + math.log1p(math.exp(-z))) / _LN10
        return math.log1p(math.exp(z)) / _LN10


class Intervals:
    """The latest ``size`` intervals between one heart's answers, in a fixed-size ring."""

    __slots__ = ("_count", "_next", "_values")

    def __init__(self, size: int, first_estimate: float) -> None:
        self._values = array("d", bytes(8 * size))
        self._next = 0
        self._count = 0
        # Before any interval is seen, assume the expected one with a wide spread (as Akka does).
        spread = first_estimate / 4
        self.add(first_estimate - spread)
        self.add(first_estimate + spread)

    def add(self, interval: float) -> None:
        self._values[self._next] = interval
        self._next = (self._next + 1) % len(self._values)
        self._count = min(self._count + 1, len(self._values))

    def _window(self) -> array[float]:
        return self._values if self._count == len(self._values) else self._values[: self._count]

    def mean(self) -> float:
        return sum(self._window()) / self._count

    def std(self) -> float:
        mean = self.mean()
        return math.sqrt(sum((value - mean) ** 2 for value in self._window()) / self._count)

    def __len__(self) -> int:
        return self._count

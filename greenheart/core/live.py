"""What a person watching a monitor sees first: each heart's standing, and the last minutes.

:func:`standing` says where a heart stands, from what the ledger knows of it and of the
latest failures: *failed* (recently, and not heard since), *suspect* (held in a mass silence),
*on probation* (missed beats), *returned* (failed earlier for its silence, and answering
again: a false failure), or *answering*. :class:`History` keeps, at most once a
``resolution``, how many hearts answered a beat and the median and 99th percentile of its
round trips, over a ``window`` of seconds. Everything is fed the time by its caller.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Sequence

import attrs

from greenheart.core.stats import percentile


class Standing(enum.IntEnum):
    """Where a heart stands, in the order they need attention (the lowest first)."""

    FAILED = 0
    SUSPECT = 1
    ON_PROBATION = 2
    RETURNED = 3
    ANSWERING = 4

    @property
    def code(self) -> str:
        """One letter, for a compact list of thousands of hearts."""
        return "fspra"[self.value]


def standing(*, known: bool, suspect: bool, misses: int, returned: bool) -> Standing:
    """A heart's standing: ``known`` to the ledger (else it failed and has not answered
    since), held as a ``suspect``, beats missed in a row, and whether it ``returned`` after a
    false failure."""
    if not known:
        return Standing.FAILED
    if suspect:
        return Standing.SUSPECT
    if misses:
        return Standing.ON_PROBATION
    return Standing.RETURNED if returned else Standing.ANSWERING


@attrs.frozen
class Point:
    """One moment of the history: when, hearts known and answering, round trips (seconds)."""

    at: float
    hearts: int
    answering: int
    rtt_p50: float | None
    rtt_p99: float | None


@attrs.define
class History:
    """The last ``window`` seconds of beats, a point at most every ``resolution`` seconds."""

    window: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))
    resolution: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    _points: collections.deque[Point] = attrs.field(factory=collections.deque, init=False)

    def add(self, at: float, hearts: int, answering: int, rtts: Sequence[float]) -> bool:
        """A beat at ``at``; False if it came within ``resolution`` of the last point kept (its
        round trips are then not even looked at)."""
        points = self._points
        if points and at - points[-1].at < self.resolution:
            return False
        points.append(Point(at, hearts, answering, percentile(rtts, 0.5), percentile(rtts, 0.99)))
        while points and at - points[0].at > self.window:
            points.popleft()
        return True

    def points(self) -> list[Point]:
        return list(self._points)

"""When to beat, and when a beat has come late.

Beats sit on a fixed grid (``start + n * period``), so the time spent beating does not
push later beats back. The monitor's greenlet can only beat once the gevent hub lets it
run: when the hub was busy (CPU-bound code), blocked (a call holding the GIL) or the
whole process stopped, the beat comes late. A beat more than half a period late is
*late*: the grid starts again from it, so the next round is a whole period long instead of
what was left of a lost slot. Whether a late beat may judge anyone is
:mod:`greenheart.core.judging`'s to say.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Slot:
    """What the schedule says about one beat."""

    #: seconds the beat came after it was due
    lag: float
    #: the beat came more than ``late_after`` late
    late: bool
    #: whole beats lost to the lag
    skipped: int


@attrs.define
class BeatSchedule:
    """The grid of beats, times in seconds on the caller's clock."""

    period: float = attrs.field(validator=attrs.validators.gt(0))
    #: when the next beat is due
    due: float
    #: a beat later than this is late; half a period unless given
    late_after: float = attrs.field()

    @late_after.default
    def _half_a_period(self) -> float:
        return self.period / 2

    @classmethod
    def starting(cls, start: float, period: float) -> BeatSchedule:
        """The schedule whose first beat is one period after ``start``."""
        return cls(period, start + period)

    def wait(self, now: float) -> float:
        """Seconds until the next beat is due (0 if it is due already)."""
        return max(0.0, self.due - now)

    def beat(self, now: float) -> Slot:
        """Take the beat due at ``self.due``, happening at ``now``, and schedule the next."""
        lag = max(0.0, now - self.due)
        if lag > self.late_after:
            self.due = now + self.period
            return Slot(lag, True, int(lag // self.period))
        self.due += self.period
        return Slot(lag, False, 0)

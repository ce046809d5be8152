"""What the ledger remembers of each known heart's answers: round trips, and phi's intervals.

A heart's record is made at its first answer as a known heart and goes when it fails. Each
beat folds the round's answers into the records in one pass (:meth:`Records.add`): the round
trip of each (the on-time one, if a heart answered both the current ping and the previous
one), when it arrived, and, under phi-accrual rules, the interval since the heart's answer
before. An unjudged beat (the monitor could not have heard everyone) adds no interval, since
its answers were read late, and restarts the silent hearts' silence from its own time, so
that the monitor's stall is not counted against them.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from greenheart.core.phi import Intervals, PhiAccrual
from greenheart.core.rounds import Rounds
from greenheart.core.values import RoundTrips

#: the shortest round taken as the interval a new heart is expected to answer at, in seconds
MIN_ROUND = 1e-3


@attrs.define(slots=True)
class _Record:
    count: int = 0
    total: float = 0.0
    max: float = 0.0
    last: float = 0.0
    #: when its last answer arrived
    answered_at: float | None = None
    #: where phi counts the silence from: the last answer, or the end of a stall
    last_arrival: float | None = None
    #: the intervals between answers, under phi
    intervals: Intervals | None = None


@attrs.define
class Records:
    """The records of the known hearts that have answered."""

    #: the phi-accrual settings, if the rules fail hearts by suspicion
    phi: PhiAccrual | None = None
    _records: dict[bytes, _Record] = attrs.field(factory=dict, init=False)

    def add(self, rounds: Rounds, known: Collection[bytes], now: float, *, judged: bool) -> None:
        """Fold the answers of the round that ``rounds`` is about to close, at ``now``, into the
        records of the ``known`` hearts (a heart not known was refused: it gets none)."""
        records, phi = self._records, self.phi
        on_time, late = rounds.on_time, rounds.late
        for answers, sent in ((on_time, rounds.tic), (late, rounds.previous_tic)):
            for heart, rtt in answers.items():
                if answers is late and heart in on_time:
                    continue  # its on-time answer is the one measured
                record = records.get(heart)
                if record is None:
                    if heart not in known:
                        continue
                    record = records[heart] = _Record()
                arrival = sent + rtt
                if phi is not None:
                    if record.intervals is None:
                        # the round length is the interval a heart is expected to answer at
                        round_length = max(now - rounds.tic, MIN_ROUND)
                        record.intervals = Intervals(phi.window, round_length)
                    elif judged and record.last_arrival is not None:
                        # an unjudged beat's answers were read late: the interval would be a lie
                        record.intervals.add(arrival - record.last_arrival)
                record.count += 1
                record.total += rtt
                record.last = rtt
                if rtt > record.max:
                    record.max = rtt
                record.answered_at = record.last_arrival = arrival
        if phi is not None and not judged:
            # the silent hearts could not be heard either: their silence counts from now
            for heart in known:
                record = records.get(heart)
                if record is not None and heart not in on_time and heart not in late:
                    record.last_arrival = now

    def drop(self, heart: bytes) -> None:
        """``heart`` failed: its record goes with it."""
        self._records.pop(heart, None)

    def round_trips(self, heart: bytes) -> RoundTrips | None:
        """The round trips of ``heart``, as of the last beat; None if it has no record."""
        record = self._records.get(heart)
        if record is None or not record.count:
            return None
        return RoundTrips(record.last, record.total / record.count, record.max, record.count)

    def answered_at(self, heart: bytes) -> float | None:
        """When ``heart``'s last answer arrived, as of the last beat."""
        record = self._records.get(heart)
        return None if record is None else record.answered_at

    def silence(self, heart: bytes, now: float, arrival: float | None) -> float | None:
        """Seconds from ``heart``'s last answer (``arrival``, if it answered in the round) to
        ``now``; None if it never answered."""
        last = self.answered_at(heart) if arrival is None else arrival
        return None if last is None else now - last

    def suspicion(self, heart: bytes, now: float) -> float | None:
        """The phi-accrual suspicion of ``heart`` at ``now``; None without phi or a record."""
        record = self._records.get(heart)
        phi = self.phi
        if phi is None or record is None or record.intervals is None:
            return None
        assert record.last_arrival is not None
        return phi.phi(now - record.last_arrival, record.intervals)

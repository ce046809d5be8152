"""The values a ledger returns: what a pong meant, what a beat did, the totals, and a heart's
standing and round trips.

They are frozen (but :class:`Counters`, the running totals), so every handler of a beat sees
the same record; :class:`Pong` is a NamedTuple because one is made per pong, on the monitor's
hottest path. The ledger that makes them is :mod:`greenheart.core.ledger`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

import attrs

from greenheart.core.failures import Cause, Diagnosis, Failure, FalseFailure


class PongKind(enum.Enum):
    ON_TIME = "on_time"
    LATE = "late"
    #: an answer this heart already gave in this round
    REPEAT = "repeat"
    #: sent under an identity bound to another key; or a leave on a connection not its identity's
    SPOOFED = "spoofed"
    #: well formed, but echoes none of the pings in flight (the current one, the previous one,
    #: the next one published ahead of the beat), or came in on a connection already closed; or
    #: a leave from a heart not known
    STALE = "stale"
    #: not a pong at all: wrong number of frames, no identity, oversized payload
    MALFORMED = "malformed"
    #: a known heart's leave (:data:`~greenheart.core.wire.LEAVE`): it failed, as left
    LEFT = "left"


#: Kinds of pong that show the heart is alive.
ANSWERS = frozenset({PongKind.ON_TIME, PongKind.LATE})


class Pong(NamedTuple):
    """What one incoming pong meant.

    A NamedTuple rather than an attrs class because one is made per pong, on the
    monitor's hottest path.
    """

    kind: PongKind
    heart: bytes
    #: seconds from sending the ping this pong answers to receiving it; None if not measured
    rtt: float | None


@attrs.frozen
class Beat:
    """What closing one round meant, and the ping that opens the next."""

    #: beats since the ledger was made, this one included
    number: int
    #: the time of the beat, on the caller's clock
    at: float
    #: the payload to publish now
    ping: bytes
    #: hearts known after this beat
    heart_count: int
    #: hearts that answered during the round just closed (on time or late)
    responded_count: int
    new_hearts: tuple[bytes, ...]
    failed_hearts: tuple[bytes, ...]
    #: hearts that missed this beat, failed ones excluded
    missed: tuple[bytes, ...]
    #: hearts on probation after this beat
    probation_count: int
    #: hearts that answered the current ping (repeats are bad pongs)
    on_time_pongs: int
    #: hearts that answered the previous ping
    late_pongs: int
    #: repeated, spoofed, stale and malformed pongs
    bad_pongs: int
    #: heart -> seconds its late pong came after the beat that made it late (read-only)
    late_hearts: Mapping[bytes, float]
    #: the longest round trip of an on-time pong in the round, in seconds
    max_rtt: float | None
    #: the round trip of every answer (on time, then late) in the round
    rtts: tuple[float, ...] = attrs.field(default=(), eq=False, repr=False)
    #: False when the hearts that did not answer were not charged a miss
    judged: bool = True
    #: new hearts not admitted because ``max_hearts`` were known
    refused_count: int = 0
    #: seconds the beat ran behind its schedule, as the driver measured it
    lag: float = 0.0
    #: hearts failed since the beat before because their connection closed or they left
    #: (their failure handlers were called then); not in ``failed_hearts``
    disconnected: tuple[bytes, ...] = ()
    #: the certificate of every heart in ``failed_hearts``, then in ``disconnected``, in order
    failures: tuple[Failure, ...] = attrs.field(default=(), repr=False)
    #: hearts failed for their silence that answered again on the same connection
    false_failures: tuple[FalseFailure, ...] = ()
    #: hearts known before the monitor restarted that answered again within the grace
    resumed: tuple[bytes, ...] = ()
    #: hearts failed for their silence before the beat before whose connection has closed
    #: since: their certificates, amended (:meth:`Failure.gone
    #: <greenheart.core.failures.Failure.gone>`)
    amended: tuple[Failure, ...] = attrs.field(default=(), repr=False)
    #: hearts held as suspects of a mass silence after this beat, and of them those held by it
    suspects: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    held: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    #: suspects that answered again in the round, released
    released: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    #: this beat began holding suspects, none being held before; or let the last of them go
    mass_silence_began: bool = False
    mass_silence_ended: bool = False
    #: the share of the time since the beat before the driver's thread computed, if measured
    cpu_share: float | None = None

    @property
    def unreachable(self) -> tuple[Failure, ...]:
        """The amended certificates whose connection timed out: hearts failed as hung that
        were unreachable."""
        return tuple(failure for failure in self.amended if failure.timed_out)


@attrs.define
class Counters:
    """Totals since the ledger was made."""

    beats: int = 0
    on_time_pongs: int = 0
    late_pongs: int = 0
    repeat_pongs: int = 0
    spoofed_pongs: int = 0
    stale_pongs: int = 0
    malformed_pongs: int = 0
    new_hearts: int = 0
    failed_hearts: int = 0
    #: times a new heart was turned away because ``max_hearts`` were known
    refused_hearts: int = 0
    unjudged_beats: int = 0
    #: ``failed_hearts`` by cause (:class:`~greenheart.core.failures.Cause`)
    failed_disconnected: int = 0
    failed_missed: int = 0
    failed_phi: int = 0
    failed_held: int = 0
    failed_restarted: int = 0
    failed_left: int = 0
    #: mass silences begun, hearts held as suspects in them, and suspects that answered again
    mass_silences: int = 0
    held_hearts: int = 0
    released_hearts: int = 0
    #: hearts failed for their silence that answered again on the same connection, and the
    #: seconds those mistakes lasted, summed
    false_failures: int = 0
    false_failure_seconds: float = 0.0
    #: ``failed_hearts`` by :class:`~greenheart.core.failures.Diagnosis`, when they failed
    crashed_hearts: int = 0
    hung_hearts: int = 0
    unreachable_hearts: int = 0
    stopped_hearts: int = 0
    #: hearts failed as hung whose connection timed out afterwards: unreachable after all
    found_unreachable: int = 0

    @property
    def bad_pongs(self) -> int:
        return self.repeat_pongs + self.spoofed_pongs + self.stale_pongs + self.malformed_pongs

    def failed(self, cause: Cause) -> int:
        """Hearts failed for ``cause``."""
        return int(getattr(self, f"failed_{cause.value}"))

    def add(self, beat: Beat) -> None:
        """Fold ``beat`` in. Answers are counted per round on the hot path, and folded into
        the totals here; failures between beats were counted when they happened."""
        self.beats += 1
        self.unjudged_beats += not beat.judged
        self.on_time_pongs += beat.on_time_pongs
        self.late_pongs += beat.late_pongs
        self.new_hearts += len(beat.new_hearts)
        for failure in beat.failures[: len(beat.failed_hearts)]:
            self.count_failure(failure)
        self.refused_hearts += beat.refused_count
        self.mass_silences += beat.mass_silence_began
        self.held_hearts += len(beat.held)
        self.released_hearts += len(beat.released)
        self.false_failures += len(beat.false_failures)
        self.false_failure_seconds += sum(mistake.gone for mistake in beat.false_failures)
        self.found_unreachable += len(beat.unreachable)

    def count_answers(self, on_time: int, late: int) -> None:
        """Answers of a round not closed (or taken back from it: they were made, and stay
        counted)."""
        self.on_time_pongs += on_time
        self.late_pongs += late

    def count_bad(self, kind: PongKind) -> None:
        """One more pong of ``kind`` that was not an answer: what a flood sends, so plainly."""
        if kind is PongKind.REPEAT:
            self.repeat_pongs += 1
        elif kind is PongKind.STALE:
            self.stale_pongs += 1
        elif kind is PongKind.SPOOFED:
            self.spoofed_pongs += 1
        else:
            self.malformed_pongs += 1

    def count_failure(self, failure: Failure) -> None:
        """One more heart failed, as ``failure`` certifies."""
        self.failed_hearts += 1
        name = f"failed_{failure.cause.value}"
        setattr(self, name, getattr(self, name) + 1)
        name = f"{failure.diagnosis.value}_hearts"
        setattr(self, name, getattr(self, name) + 1)

    def diagnosed(self, diagnosis: Diagnosis) -> int:
        """Hearts diagnosed ``diagnosis`` when they failed."""
        return int(getattr(self, f"{diagnosis.value}_hearts"))


@attrs.frozen
class RoundTrips:
    """One heart's round trips since it was registered, in seconds."""

    last: float
    mean: float
    max: float
    #: answers measured
    count: int


@attrs.frozen
class HeartState:
    """One known heart, as a snapshot."""

    heart: bytes
    #: beats missed in a row; 0 for a heart that answered the last beat
    misses: int
    round_trips: RoundTrips | None
    #: held as a suspect of a mass silence
    suspect: bool = False

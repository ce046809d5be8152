"""The heartbeat ledger: what a monitor knows, and how beats and pongs change it.

Theory of operation
-------------------
A monitor publishes a ping every period and listens for pongs. The ledger is the
bookkeeping between those two events. It does no I/O and has no clock: whoever
drives it hands it the time, so it can be tested without sockets or sleeps.

A *round* runs from one beat to the next. During a round, :meth:`Ledger.pong` is
called for every answer that arrives:

* an answer carrying the payload of the current ping is **on time**;
* an answer carrying the payload of the previous ping is **late**: the heart is
  alive, only slow, so it still counts as having answered this round;
* anything else is **stale** (or **malformed**, if it has no identity): counted,
  and otherwise ignored.

:meth:`Ledger.beat` closes the round. Hearts that answered and were unknown become
new hearts. Known hearts that did not answer miss a beat: they go on probation,
and a heart whose consecutive misses exceed ``max_misses`` has failed and is
forgotten (if it answers again it will be new again). Then the next round opens
with a fresh ping payload.

With the default ``max_misses=1`` this is IPython.parallel's original rule (on
probation at the first miss, failed at the second); ipyparallel made the number
configurable, which is ``max_misses`` here. The result of each transition is
returned as a value (:class:`Pong`, :class:`Beat`) for the driver to act on.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import attrs

from greenheart.wire import encode_ping


class PongKind(enum.Enum):
    ON_TIME = "on_time"
    LATE = "late"
    #: well formed, but answers neither the current ping nor the previous one
    STALE = "stale"
    #: not a pong at all: wrong number of frames, no identity, oversized payload
    MALFORMED = "malformed"


#: Kinds of pong that show the heart is alive.
ANSWERS = frozenset({PongKind.ON_TIME, PongKind.LATE})


class Pong(NamedTuple):
    """What one incoming pong meant.

    A NamedTuple rather than an attrs class because one is made per pong, on the
    monitor's hottest path.
    """

    kind: PongKind
    heart: bytes
    #: seconds from sending the ping this pong answers to receiving it; None if it answers none
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
    hearts: int
    #: hearts that answered during the round just closed (on time or late)
    responded: int
    new_hearts: tuple[bytes, ...]
    failed_hearts: tuple[bytes, ...]
    #: hearts that missed this beat, failed ones excluded
    missed: tuple[bytes, ...]
    on_probation: int
    on_time_pongs: int
    late_pongs: int
    bad_pongs: int
    #: heart -> seconds its latest late pong came after the beat that made it late
    late_hearts: dict[bytes, float]
    #: the longest round trip of an on-time pong in the round, in seconds
    max_rtt: float | None
    #: the round trip of every answer (on time or late) in the round, in arrival order
    round_trips: list[float] = attrs.field(factory=list, eq=False, repr=False)
    #: False when the hearts that did not answer were not charged a miss
    judged: bool = True


@attrs.define
class Counters:
    """Totals since the ledger was made."""

    beats: int = 0
    on_time_pongs: int = 0
    late_pongs: int = 0
    stale_pongs: int = 0
    malformed_pongs: int = 0
    new_hearts: int = 0
    failed_hearts: int = 0

    @property
    def bad_pongs(self) -> int:
        return self.stale_pongs + self.malformed_pongs


@attrs.define
class Ledger:
    """The state of one heart monitor, changed only by :meth:`beat` and :meth:`pong`."""

    #: when the current ping was sent, on the caller's clock
    tic: float
    max_misses: int = attrs.field(
        default=1, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    hearts: set[bytes] = attrs.field(factory=set, init=False)
    #: hearts that answered during the current round
    responses: set[bytes] = attrs.field(factory=set, init=False)
    #: heart -> consecutive beats missed, for hearts that missed the last beat
    on_probation: dict[bytes, int] = attrs.field(factory=dict, init=False)
    #: seconds of beating, as of the current ping
    lifetime: float = attrs.field(default=0.0, init=False)
    #: ``lifetime`` as of the previous ping
    last_ping: float = attrs.field(default=0.0, init=False)
    #: the payload of the current ping
    ping: bytes = attrs.field(init=False)
    #: totals of the rounds already closed, stale and malformed pongs included
    _totals: Counters = attrs.field(factory=Counters, init=False)

    _previous_ping: bytes | None = attrs.field(default=None, init=False)
    _previous_tic: float = attrs.field(default=0.0, init=False)
    _round_on_time: int = attrs.field(default=0, init=False)
    _round_late: int = attrs.field(default=0, init=False)
    _round_bad: int = attrs.field(default=0, init=False)
    _round_late_hearts: dict[bytes, float] = attrs.field(factory=dict, init=False)
    _round_max_rtt: float | None = attrs.field(default=None, init=False)
    _round_trips: list[float] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self.ping = encode_ping(self.lifetime)

    @property
    def counters(self) -> Counters:
        """Totals since the ledger was made, the current round included (a copy)."""
        return attrs.evolve(
            self._totals,
            on_time_pongs=self._totals.on_time_pongs + self._round_on_time,
            late_pongs=self._totals.late_pongs + self._round_late,
        )

    def pong(self, heart: bytes, payload: bytes, now: float) -> Pong:
        """Account for ``payload`` echoed by ``heart`` at time ``now``."""
        if not heart:
            return self.malformed()
        if payload == self.ping:
            rtt = now - self.tic
            self.responses.add(heart)
            self._round_trips.append(rtt)
            self._round_on_time += 1
            if self._round_max_rtt is None or rtt > self._round_max_rtt:
                self._round_max_rtt = rtt
            return Pong(PongKind.ON_TIME, heart, rtt)
        if payload == self._previous_ping:
            rtt = now - self._previous_tic
            self.responses.add(heart)
            self._round_trips.append(rtt)
            self._round_late += 1
            self._round_late_hearts[heart] = now - self.tic
            return Pong(PongKind.LATE, heart, rtt)
        self._totals.stale_pongs += 1
        self._round_bad += 1
        return Pong(PongKind.STALE, heart, None)

    def malformed(self, heart: bytes = b"") -> Pong:
        """Account for a message that is not a pong at all."""
        self._totals.malformed_pongs += 1
        self._round_bad += 1
        return Pong(PongKind.MALFORMED, heart, None)

    def beat(self, now: float, judge: bool = True) -> Beat:
        """Close the current round at time ``now`` and open the next one.

        With ``judge=False`` (the driver knows answers are still unread: it is the one
        behind) the hearts that did not answer are not charged a miss: they stay on
        probation with the misses they had, and none fails.
        """
        responses = self.responses
        new_hearts = responses - self.hearts
        missed = self.hearts - responses
        self.hearts |= new_hearts

        failed: list[bytes] = []
        on_probation: dict[bytes, int] = {}
        charge = 1 if judge else 0
        for heart in missed:
            misses = self.on_probation.get(heart, 0) + charge
            if not misses:
                continue
            if misses > self.max_misses:
                failed.append(heart)
            else:
                on_probation[heart] = misses
        self.hearts.difference_update(failed)
        self.on_probation = on_probation
        self.responses = set()

        self._previous_ping, self._previous_tic = self.ping, self.tic
        self.last_ping = self.lifetime
        # A clock that steps back (an injected one) must not make a ping repeat an older one.
        self.lifetime += max(0.0, now - self.tic)
        self.ping = encode_ping(self.lifetime)
        self.tic = now

        totals = self._totals
        totals.beats += 1
        # Answers are counted per round on the hot path, and folded into the totals here.
        totals.on_time_pongs += self._round_on_time
        totals.late_pongs += self._round_late
        totals.new_hearts += len(new_hearts)
        totals.failed_hearts += len(failed)
        beat = Beat(
            number=totals.beats,
            at=now,
            ping=self.ping,
            hearts=len(self.hearts),
            responded=len(responses),
            new_hearts=tuple(sorted(new_hearts)),
            failed_hearts=tuple(sorted(failed)),
            missed=tuple(sorted(on_probation)),
            on_probation=len(on_probation),
            on_time_pongs=self._round_on_time,
            late_pongs=self._round_late,
            bad_pongs=self._round_bad,
            late_hearts=self._round_late_hearts,
            max_rtt=self._round_max_rtt,
            round_trips=self._round_trips,
            judged=judge,
        )
        self._round_on_time = self._round_late = self._round_bad = 0
        self._round_late_hearts = {}
        self._round_max_rtt = None
        self._round_trips = []
        return beat

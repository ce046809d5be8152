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
* the same answer again from the same heart is a **repeat**: counted, not measured,
  so a peer echoing a ping in a loop cannot grow the round's records;
* anything else is **stale** (or **malformed**, if it has no identity): counted,
  and otherwise ignored.

When the driver knows which key each message was sent with (CURVE), an identity is
bound to the first key that answers for it, and stays bound (even after the heart
fails) while the ledger has room for ``max_bindings``: a pong for that identity under
another key is **spoofed**, counted, and otherwise ignored.

:meth:`Ledger.beat` closes the round. Known hearts that did not answer miss a beat:
they go on probation, and a heart whose consecutive misses exceed ``max_misses`` has
failed and is forgotten (if it answers again it will be new again). With
:class:`~greenheart.core.phi.PhiAccrual` settings (``phi``) the miss count is still kept, but
a heart fails when its suspicion passes phi's threshold instead. The settings are one
:class:`Rules` value. Hearts that
answered and were unknown become new hearts, up to ``max_hearts``; the rest are
refused (and asked again next round). Then the next round opens with a fresh ping.

A beat may be *unjudged* (``judge=False``): the driver knows it could not have heard
the hearts (it was stalled, or answers are still unread), so nobody is charged a miss.

When one beat would fail most of the hearts whose connections are up, the ledger suspects
the monitor first and holds them instead (:mod:`~greenheart.core.silence`). Every failure
comes with its certificate, a :class:`~greenheart.core.failures.Failure`, and a heart failed
for its silence that answers again on the same connection is counted as a
:class:`~greenheart.core.failures.FalseFailure`. Which connection a heart answers on is kept
in :attr:`Ledger.connections`, which the driver feeds (see
:mod:`~greenheart.core.connections`); :meth:`Ledger.closed` decides what a closed connection
means: a failure at once with ``fail_on_disconnect`` (or for a held suspect), else only that
the heart's connection is down, so that it is never held.

With the default ``max_misses=1`` this is IPython.parallel's original rule (on
probation at the first miss, failed at the second); ipyparallel made the number
configurable, which is ``max_misses`` here. The result of each transition is
returned as a value (:class:`Pong`, :class:`Beat`) for the driver to act on.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import attrs

from greenheart.core.checks import COUNT, OPTIONAL_COUNT
from greenheart.core.connections import ConnectionBook
from greenheart.core.failures import SILENCE, Cause, Failure, FalseFailure
from greenheart.core.phi import Intervals, PhiAccrual
from greenheart.core.silence import MassSilence, Outcome, Suspect, Suspects
from greenheart.core.wire import encode_ping

#: failures and false failures the ledger remembers, the newest
RECENT = 1000

#: hearts failed for their silence, with their connection, remembered at most to tell a false
#: failure (entries go when the connection closes or the heart returns)
MAX_SILENCED = 100_000


class PongKind(enum.Enum):
    ON_TIME = "on_time"
    LATE = "late"
    #: an answer this heart already gave in this round
    REPEAT = "repeat"
    #: sent under an identity bound to another key
    SPOOFED = "spoofed"
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
    hearts: int
    #: hearts that answered during the round just closed (on time or late)
    responded: int
    new_hearts: tuple[bytes, ...]
    failed_hearts: tuple[bytes, ...]
    #: hearts that missed this beat, failed ones excluded
    missed: tuple[bytes, ...]
    on_probation: int
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
    round_trips: tuple[float, ...] = attrs.field(default=(), eq=False, repr=False)
    #: False when the hearts that did not answer were not charged a miss
    judged: bool = True
    #: new hearts not admitted because ``max_hearts`` were known
    refused_hearts: int = 0
    #: seconds the beat ran behind its schedule, as the driver measured it
    lag: float = 0.0
    #: hearts failed since the beat before because their connection closed (their failure
    #: handlers were called then); not in ``failed_hearts``
    disconnected: tuple[bytes, ...] = ()
    #: the certificate of every heart in ``failed_hearts``, then in ``disconnected``, in order
    failures: tuple[Failure, ...] = attrs.field(default=(), repr=False)
    #: hearts failed for their silence that answered again on the same connection
    false_failures: tuple[FalseFailure, ...] = ()
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
    #: mass silences begun, hearts held as suspects in them, and suspects that answered again
    mass_silences: int = 0
    held_hearts: int = 0
    released_hearts: int = 0
    #: hearts failed for their silence that answered again on the same connection, and the
    #: seconds those mistakes lasted, summed
    false_failures: int = 0
    false_failure_seconds: float = 0.0

    @property
    def bad_pongs(self) -> int:
        return self.repeat_pongs + self.spoofed_pongs + self.stale_pongs + self.malformed_pongs

    def failed(self, cause: Cause) -> int:
        """Hearts failed for ``cause``."""
        return int(getattr(self, f"failed_{cause.value}"))

    def _count_failure(self, cause: Cause) -> None:
        self.failed_hearts += 1
        name = f"failed_{cause.value}"
        setattr(self, name, getattr(self, name) + 1)


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

    @property
    def on_probation(self) -> bool:
        return self.misses > 0


@attrs.define(slots=True)
class _Record:
    """What the ledger remembers about one known heart beyond its membership."""

    count: int = 0
    total: float = 0.0
    max: float = 0.0
    last: float = 0.0
    #: when its last answer arrived
    answered_at: float | None = None
    #: where phi counts the silence from: the last answer, or the end of a stall
    last_arrival: float | None = None
    #: the intervals between answers, when the rules have ``phi``
    intervals: Intervals | None = None

    def answered(self, rtt: float, arrival: float) -> None:
        self.count += 1
        self.total += rtt
        self.last = rtt
        if rtt > self.max:
            self.max = rtt
        self.last_arrival = self.answered_at = arrival


@attrs.define(slots=True)
class _Upcoming:
    """The next round, from the moment its ping was published until the current one closes."""

    ping: bytes
    tic: float
    lifetime: float
    #: heart -> round trip, for the answers to this ping read before the round opened
    on_time: dict[bytes, float] = attrs.field(factory=dict)


@attrs.frozen
class Rules:
    """How a ledger judges its hearts: every setting a monitor is made with, in one value
    (:class:`~greenheart.HeartMonitor` builds it from its keyword arguments)."""

    #: beats a heart may miss in a row; one more and it has failed
    max_misses: int = attrs.field(default=1, validator=COUNT)
    #: the most hearts known at once; None for no limit
    max_hearts: int | None = attrs.field(default=None, validator=OPTIONAL_COUNT)
    #: fail hearts by phi-accrual suspicion instead of by ``max_misses``
    phi: PhiAccrual | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(PhiAccrual))
    )
    #: hold the hearts of a mass silence as suspects first; None fails them as any others
    mass_silence: MassSilence | None = attrs.field(
        factory=MassSilence,
        validator=attrs.validators.optional(attrs.validators.instance_of(MassSilence)),
    )
    #: fail a known heart at once when its connection closes (:meth:`Ledger.closed`)
    fail_on_disconnect: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )


@attrs.define
class Ledger:
    """The state of one heart monitor, changed only by :meth:`beat` and :meth:`pong`."""

    #: when the current ping was sent, on the caller's clock
    tic: float
    rules: Rules = attrs.field(
        factory=lambda: Rules(), validator=attrs.validators.instance_of(Rules)
    )
    #: identities bound to keys remembered at most, known hearts' always included
    max_bindings: int = attrs.field(default=100_000, validator=COUNT)
    #: which connection each heart answers on; the driver feeds it
    connections: ConnectionBook = attrs.field(factory=ConnectionBook, init=False)
    #: the certificates of the latest failures, oldest first
    failures: collections.deque[Failure] = attrs.field(
        factory=lambda: collections.deque(maxlen=RECENT), init=False
    )
    #: the latest false failures, oldest first
    false_failures: collections.deque[FalseFailure] = attrs.field(
        factory=lambda: collections.deque(maxlen=RECENT), init=False
    )
    hearts: set[bytes] = attrs.field(factory=set, init=False)
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
    _records: dict[bytes, _Record] = attrs.field(factory=dict, init=False)
    #: identity -> the key it is bound to, oldest binding first
    _owners: dict[bytes, object] = attrs.field(factory=dict, init=False)

    _previous_ping: bytes | None = attrs.field(default=None, init=False)
    _previous_tic: float = attrs.field(default=0.0, init=False)
    #: heart -> round trip, for the answers to the current ping in this round
    _on_time: dict[bytes, float] = attrs.field(factory=dict, init=False)
    #: heart -> round trip, for the answers to the previous ping in this round
    _late: dict[bytes, float] = attrs.field(factory=dict, init=False)
    _round_bad: int = attrs.field(default=0, init=False)
    #: the next round, once its ping is published and until this one closes
    _upcoming: _Upcoming | None = attrs.field(default=None, init=False)
    #: hearts failed since the last beat because their connection closed, and why
    _disconnected: list[Failure] = attrs.field(factory=list, init=False)
    _suspects: Suspects | None = attrs.field(default=None, init=False)
    #: known hearts whose connection closed (without failing them), until they answer on another
    _down: set[bytes] = attrs.field(factory=set, init=False)
    #: heart -> its failure for silence, and the serial of the connection it was up on
    _silenced: dict[bytes, tuple[Failure, int]] = attrs.field(factory=dict, init=False)
    #: the last beat's lag and CPU share, for a failure between beats
    _lag: float = attrs.field(default=0.0, init=False)
    _cpu_share: float | None = attrs.field(default=None, init=False)
    #: suspects held after the last beat
    _held_after_beat: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self.ping = encode_ping(self.lifetime)
        if self.rules.mass_silence is not None:
            self._suspects = Suspects(self.rules.mass_silence)

    @property
    def responses(self) -> set[bytes]:
        """The hearts that answered during the current round."""
        return self._on_time.keys() | self._late.keys()

    @property
    def answers(self) -> int:
        """Answers (on time or late, repeats excluded) in the current round."""
        return len(self._on_time) + len(self._late)

    @property
    def counters(self) -> Counters:
        """Totals since the ledger was made, the current round included (a copy)."""
        early = len(self._upcoming.on_time) if self._upcoming is not None else 0
        return attrs.evolve(
            self._totals,
            on_time_pongs=self._totals.on_time_pongs + len(self._on_time) + early,
            late_pongs=self._totals.late_pongs + len(self._late),
        )

    def round_trips(self, heart: bytes) -> RoundTrips | None:
        """The round trips of a known heart, as of the last beat; None if it is not known."""
        record = self._records.get(heart)
        if record is None or not record.count:
            return None
        return RoundTrips(record.last, record.total / record.count, record.max, record.count)

    def states(self) -> list[HeartState]:
        """Every known heart: its misses in a row, its round trips and whether it is held as a
        suspect, as of the last beat."""
        on_probation, suspects = self.on_probation, self._suspects or ()
        return [
            HeartState(
                heart, on_probation.get(heart, 0), self.round_trips(heart), heart in suspects
            )
            for heart in self.hearts
        ]

    @property
    def suspects(self) -> dict[bytes, Suspect]:
        """The hearts held as suspects of a mass silence (a copy)."""
        return dict(self._suspects.items()) if self._suspects is not None else {}

    def connected(self, heart: bytes) -> bool | None:
        """Whether ``heart``'s connection is up: True if it is tied to an open one, False if
        the one it answered on closed since, None if :attr:`connections` never saw it."""
        if self.connections.serial_of(heart) is not None:
            return True
        return False if heart in self._down else None

    def suspicion(self, heart: bytes, now: float) -> float | None:
        """The phi-accrual suspicion of a known heart at ``now``; None without ``rules.phi``."""
        record = self._records.get(heart)
        phi = self.rules.phi
        if phi is None or record is None or record.intervals is None:
            return None
        assert record.last_arrival is not None
        return phi.phi(now - record.last_arrival, record.intervals)

    def key_of(self, heart: bytes) -> object | None:
        """The key ``heart`` is bound to, if any."""
        return self._owners.get(heart)

    def pong(self, heart: bytes, payload: bytes, now: float, key: object = None) -> Pong:
        """Account for ``payload`` echoed by ``heart`` at time ``now``, sent with ``key``
        (None when the transport does not authenticate)."""
        if not heart:
            return self.malformed()
        if key is not None:
            owner = self._owners.get(heart)
            if owner is not None and owner != key:
                self._totals.spoofed_pongs += 1
                self._round_bad += 1
                return Pong(PongKind.SPOOFED, heart, None)
        if payload == self.ping:
            if heart in self._on_time:
                return self._repeat(heart)
            rtt = self._on_time[heart] = now - self.tic
            if key is not None:
                self._owners.setdefault(heart, key)
            return Pong(PongKind.ON_TIME, heart, rtt)
        if payload == self._previous_ping:
            if heart in self._late or heart in self._on_time:
                return self._repeat(heart)
            rtt = self._late[heart] = now - self._previous_tic
            if key is not None:
                self._owners.setdefault(heart, key)
            return Pong(PongKind.LATE, heart, rtt)
        upcoming = self._upcoming
        if upcoming is not None and payload == upcoming.ping:
            # the ping of the next round, published before this one closed: on time for it
            if heart in upcoming.on_time:
                return self._repeat(heart)
            rtt = upcoming.on_time[heart] = now - upcoming.tic
            if key is not None:
                self._owners.setdefault(heart, key)
            return Pong(PongKind.ON_TIME, heart, rtt)
        return self.stale(heart)

    def pongs(self, hearts: list[bytes], payloads: list[bytes], now: float) -> list[Pong]:
        """Account for the answers of one drain, all read at ``now`` and sent with no key:
        what :meth:`pong` would make of each, in order; returns the pongs that were not
        answers (the bulk path returns none).

        The common case (every one a first answer to the same ping: the current one, the one
        published ahead of the beat, or the previous one) is a few set and dict operations
        in C; anything else takes :meth:`pong`, message by message. Every answer of a drain
        has the drain's time, so a round trip has the resolution of one drain (and of the gathering
        before it, :func:`~greenheart.core.judging.gather_seconds`).
        """
        count = len(hearts)
        if count > 1:
            target = self._bulk_target(payloads[0], count)
            if target is not None and payloads.count(payloads[0]) == count:
                unique = set(hearts)
                if (
                    len(unique) == count
                    and b"" not in unique
                    and target[0].keys().isdisjoint(unique)
                    and (target[2] is None or target[2].keys().isdisjoint(unique))
                ):
                    target[0].update(dict.fromkeys(hearts, now - target[1]))
                    return []
        pong = self.pong
        return [
            answer
            for answer in map(pong, hearts, payloads, [now] * count)
            if answer.kind not in ANSWERS
        ]

    def _bulk_target(
        self, payload: bytes, count: int
    ) -> tuple[dict[bytes, float], float, dict[bytes, float] | None] | None:
        """Where answers to ``payload`` go in bulk: the dict, the tic of their ping, and the
        dict a heart must not be in already (its repeat)."""
        if payload == self.ping:
            return self._on_time, self.tic, None
        upcoming = self._upcoming
        if upcoming is not None and payload == upcoming.ping:
            return upcoming.on_time, upcoming.tic, None
        if payload == self._previous_ping:
            return self._late, self._previous_tic, self._on_time
        return None

    def answers_to(self, payload: bytes) -> int:
        """Which ping ``payload`` echoes: 0 the current one, 1 the previous one, 2 the one
        published ahead of the beat, 3 none of them (what a recording keeps of an answer)."""
        if payload == self.ping:
            return 0
        if payload == self._previous_ping:
            return 1
        if self._upcoming is not None and payload == self._upcoming.ping:
            return 2
        return 3

    def payload_of(self, echoed: int) -> bytes:
        """A payload that echoes the ping :meth:`answers_to` numbers ``echoed``; one that echoes
        none if there is no such ping now."""
        if echoed == 0:
            return self.ping
        if echoed == 1 and self._previous_ping is not None:
            return self._previous_ping
        if echoed == 2 and self._upcoming is not None:
            return self._upcoming.ping
        return b"-"

    def _repeat(self, heart: bytes) -> Pong:
        self._totals.repeat_pongs += 1
        self._round_bad += 1
        return Pong(PongKind.REPEAT, heart, None)

    def stale(self, heart: bytes) -> Pong:
        """Account for an answer that came too late to count: it came in on a connection that
        had closed (libzmq delivers what a connection sent before it closed)."""
        self._totals.stale_pongs += 1
        self._round_bad += 1
        return Pong(PongKind.STALE, heart, None)

    def malformed(self, heart: bytes = b"") -> Pong:
        """Account for a message that is not a pong at all."""
        self._totals.malformed_pongs += 1
        self._round_bad += 1
        return Pong(PongKind.MALFORMED, heart, None)

    def publish(self, now: float) -> bytes:
        """Open the next round at ``now``, before the current one closes: the payload of its
        ping, to publish at once.

        A monitor publishes each ping on its grid time, then reads the answers still queued,
        then closes the round with :meth:`beat`. Meanwhile answers to the current ping still
        count for the current round, and answers to the new one for the round it opened.
        Publishing twice before the beat opens the round once.
        """
        if self._upcoming is None:
            elapsed = now - self.tic
            # A clock that stands still or steps back (an injected one) must not make the new
            # ping repeat the old one: its answers would be taken for answers to the new round.
            if elapsed > 0:
                lifetime = self.lifetime + elapsed
            else:
                lifetime = math.nextafter(self.lifetime, math.inf)
            self._upcoming = _Upcoming(encode_ping(lifetime), now, lifetime)
        return self._upcoming.ping

    def closed(self, fd: int, now: float) -> tuple[Failure, ...]:
        """The connection on descriptor ``fd`` closed at ``now``: the failures that makes.

        Its known hearts fail at once with ``fail_on_disconnect``, and a held suspect fails
        whatever the setting (a closed connection is the heart's side, not the monitor's). The
        others only have their connection down: they are never held, and are failed by their
        missed beats as before."""
        hearts = self.connections.closed(fd)
        failing = []
        for heart in hearts:
            self._silenced.pop(heart, None)  # a return is now a new connection's
            if heart not in self.hearts:
                continue
            self._down.add(heart)
            if self.rules.fail_on_disconnect or (
                self._suspects is not None and heart in self._suspects
            ):
                failing.append(heart)
        return tuple(
            failure
            for heart in failing
            if (failure := self.fail(heart, now, together=len(failing))) is not None
        )

    def fail(self, heart: bytes, now: float | None = None, *, together: int = 1) -> Failure | None:
        """Declare ``heart`` failed at ``now`` (the current round's start if not given),
        between beats, because its connection closed: its certificate, or None if it was not
        known. Its answers of the current round go with it, so that it is not taken for a new
        heart at the beat; the next :class:`Beat` lists it in ``disconnected``."""
        totals = self._totals
        # its answers were made, and stay counted; they only no longer make it a live heart
        if self._on_time.pop(heart, None) is not None:
            totals.on_time_pongs += 1
        if self._late.pop(heart, None) is not None:
            totals.late_pongs += 1
        if self._upcoming is not None and self._upcoming.on_time.pop(heart, None) is not None:
            totals.on_time_pongs += 1
        if heart not in self.hearts:
            return None
        at = self.tic if now is None else now
        suspect = self._suspects.drop(heart) if self._suspects is not None else None
        failure = self._certify(
            heart,
            Cause.DISCONNECTED,
            at,
            self.on_probation.get(heart, 0),
            together,
            self._totals.beats,
            self._lag,
            self._cpu_share,
            suspect,
        )
        self._forget(heart)
        self._records.pop(heart, None)
        totals._count_failure(Cause.DISCONNECTED)
        self._disconnected.append(failure)
        self.failures.append(failure)
        return failure

    def _forget(self, heart: bytes) -> None:
        """``heart`` is failed: it is no longer known."""
        self.hearts.discard(heart)
        self.on_probation.pop(heart, None)
        self._down.discard(heart)

    def _certify(
        self,
        heart: bytes,
        cause: Cause,
        now: float,
        misses: int,
        together: int,
        beat: int,
        lag: float,
        cpu_share: float | None,
        suspect: Suspect | None = None,
    ) -> Failure:
        """The certificate of ``heart``'s failure, from its record (which must still be there)."""
        record = self._records.get(heart)
        trips = self.round_trips(heart)
        return Failure(
            heart=heart,
            cause=cause,
            at=now,
            beat=beat,
            misses=misses,
            last_answer=record.answered_at if record is not None else None,
            last_rtt=trips.last if trips is not None else None,
            mean_rtt=trips.mean if trips is not None else None,
            phi=self.suspicion(heart, now),
            connected=self.connected(heart),
            lag=lag,
            cpu_share=cpu_share,
            failed_together=together,
            held_since=None if suspect is None else suspect.since,
            held_beats=0 if suspect is None else suspect.beats,
        )

    def beat(
        self, now: float, judge: bool = True, lag: float = 0.0, cpu_share: float | None = None
    ) -> Beat:
        """Close the current round at time ``now`` and open the next one (the one
        :meth:`publish` opened, or one that opens now).

        With ``judge=False`` (the driver knows it could not have heard every answer: it
        was stalled, or is behind) the hearts that did not answer are not charged a miss:
        they stay on probation with the misses they had, and none fails. ``lag`` (how late
        the beat came) and ``cpu_share`` (how much of the time since the beat before the
        driver's thread computed) are only reported, in the beat and in its certificates.
        """
        self.publish(now)
        upcoming = self._upcoming
        assert upcoming is not None
        on_time, late = self._on_time, self._late
        responded = on_time.keys() | late.keys()
        self._lag, self._cpu_share = lag, cpu_share
        verdicts, on_probation, silence = self._judge(responded, now, judge)
        verdicts.sort(key=lambda verdict: verdict[0])
        number = self._totals.beats + 1
        failures = [
            self._certify(heart, cause, now, misses, len(verdicts), number, lag, cpu_share, held)
            for heart, cause, misses, held in verdicts
        ]
        failed = [failure.heart for failure in failures]
        for failure in failures:
            self._forget(failure.heart)
            del self._records[failure.heart]
            self._remember(failure)
        self.on_probation = on_probation

        new_hearts = sorted(responded - self.hearts)
        refused = 0
        if self.rules.max_hearts is not None:
            room = max(0, self.rules.max_hearts - len(self.hearts))
            refused = max(0, len(new_hearts) - room)
            del new_hearts[room:]
        self.hearts.update(new_hearts)
        false_failures = self._returned(new_hearts) if self._silenced else ()
        round_trips = self._record_answers(responded, now, judge)
        if self._down:
            self._down = set(filter(self._is_down, self._down))
        if len(self._owners) > self.max_bindings:
            self._forget_bindings()

        # a late pong's trip began one ping earlier than the round it came in
        late_by = self.tic - self._previous_tic
        self._previous_ping, self._previous_tic = self.ping, self.tic
        self.last_ping = self.lifetime
        self.lifetime, self.ping, self.tic = upcoming.lifetime, upcoming.ping, upcoming.tic

        totals = self._totals
        totals.beats += 1
        totals.unjudged_beats += not judge
        # Answers are counted per round on the hot path, and folded into the totals here.
        totals.on_time_pongs += len(on_time)
        totals.late_pongs += len(late)
        totals.new_hearts += len(new_hearts)
        for failure in failures:
            totals._count_failure(failure.cause)
        totals.refused_hearts += refused
        suspects = self._suspects
        held_before = self._held_after_beat
        held_after = len(suspects) if suspects is not None else 0
        self._held_after_beat = held_after
        totals.mass_silences += not held_before and held_after > 0
        if silence is not None:
            totals.held_hearts += len(silence.held)
            totals.released_hearts += len(silence.released)
        for mistake in false_failures:
            totals.false_failures += 1
            totals.false_failure_seconds += mistake.gone
        disconnections = tuple(self._disconnected)
        beat = Beat(
            number=totals.beats,
            at=now,
            ping=self.ping,
            hearts=len(self.hearts),
            responded=len(responded),
            new_hearts=tuple(new_hearts),
            failed_hearts=tuple(failed),
            missed=tuple(sorted(on_probation)),
            on_probation=len(on_probation),
            on_time_pongs=len(on_time),
            late_pongs=len(late),
            bad_pongs=self._round_bad,
            late_hearts=MappingProxyType({heart: rtt - late_by for heart, rtt in late.items()}),
            max_rtt=max(on_time.values(), default=None),
            round_trips=round_trips,
            judged=judge,
            refused_hearts=refused,
            lag=lag,
            disconnected=tuple(failure.heart for failure in disconnections),
            failures=(*failures, *disconnections),
            false_failures=false_failures,
            suspects=tuple(sorted(suspects)) if suspects else (),
            held=silence.held if silence is not None else (),
            released=silence.released if silence is not None else (),
            mass_silence_began=not held_before and held_after > 0,
            mass_silence_ended=held_before > 0 and not held_after,
            cpu_share=cpu_share,
        )
        self._on_time, self._late, self._round_bad = upcoming.on_time, {}, 0
        self._upcoming, self._disconnected = None, []
        return beat

    def _judge(
        self, responded: set[bytes], now: float, judge: bool
    ) -> tuple[list[tuple[bytes, Cause, int, Suspect | None]], dict[bytes, int], Outcome | None]:
        """The hearts that failed (each with its cause, its misses and its hold, if it was
        held), the misses of the hearts that did not answer and did not fail, and what the
        mass-silence rule did (None if it had nothing to do)."""
        failed: list[tuple[bytes, Cause, int, Suspect | None]] = []
        on_probation: dict[bytes, int] = {}
        charge = 1 if judge else 0
        phi = self.rules.phi
        cause = Cause.MISSED if phi is None else Cause.PHI
        suspects = self._suspects
        # hearts that would fail with their connections up, which the rule may hold instead
        would_fail: list[bytes] = []
        for heart in self.hearts - responded:
            misses = self.on_probation.get(heart, 0) + charge
            if not misses:
                continue
            if suspects is not None and heart in suspects:
                on_probation[heart] = misses
                continue
            if phi is None:
                gone = misses > self.rules.max_misses
            else:
                suspicion = self.suspicion(heart, now)
                gone = judge and suspicion is not None and suspicion > phi.threshold
            if not gone:
                on_probation[heart] = misses
            elif suspects is not None and not self._is_down(heart):
                would_fail.append(heart)
                on_probation[heart] = misses
            else:
                failed.append((heart, cause, misses, None))
        if suspects is None or not (would_fail or suspects):
            return failed, on_probation, None
        outcome = suspects.beat(
            answered=responded, would_fail=would_fail, up=self._up(), now=now, judged=judge
        )
        for heart in outcome.failed:
            failed.append((heart, cause, on_probation.pop(heart), None))
        for heart, suspect in outcome.expired:
            failed.append((heart, Cause.HELD, on_probation.pop(heart), suspect))
        return failed, on_probation, outcome

    def _is_down(self, heart: bytes) -> bool:
        """Whether ``heart``'s connection closed, and it has not answered on another since."""
        return heart in self._down and self.connections.serial_of(heart) is None

    def _up(self) -> int:
        """Known hearts whose connection is not known to be down."""
        return len(self.hearts) - sum(map(self._is_down, self._down))

    def _remember(self, failure: Failure) -> None:
        """Keep ``failure``'s certificate, and, for a verdict on silence made while its
        connection was up, what tells a false failure."""
        self.failures.append(failure)
        serial = self.connections.serial_of(failure.heart)
        if failure.cause in SILENCE and serial is not None:
            if len(self._silenced) >= MAX_SILENCED:
                del self._silenced[next(iter(self._silenced))]
            self._silenced[failure.heart] = (failure, serial)

    def _returned(self, new_hearts: list[bytes]) -> tuple[FalseFailure, ...]:
        """The false failures among ``new_hearts``: hearts failed for their silence back on
        the connection they were failed on. Called before the round's tics move on."""
        mistakes = []
        for heart in new_hearts:
            entry = self._silenced.pop(heart, None)
            if entry is None:
                continue
            failure, serial = entry
            if self.connections.serial_of(heart) != serial:
                continue  # it came back on a new connection: it had died
            rtt = self._on_time.get(heart)
            arrival = self.tic + rtt if rtt is not None else self._previous_tic + self._late[heart]
            mistake = FalseFailure(failure, arrival)
            mistakes.append(mistake)
            self.false_failures.append(mistake)
        return tuple(mistakes)

    def _tally(self, responded: set[bytes]) -> None:
        """:meth:`_record_answers` without phi: round trips only, on the hot path of every
        beat (no arrival times, which only phi needs)."""
        on_time, late, records, hearts = self._on_time, self._late, self._records, self.hearts
        tic, previous_tic = self.tic, self._previous_tic
        for heart in responded:
            rtt = on_time.get(heart)
            if rtt is None:
                rtt = late[heart]
                arrival = previous_tic + rtt
            else:
                arrival = tic + rtt
            record = records.get(heart)
            if record is None:
                if heart not in hearts:
                    continue  # refused
                record = records[heart] = _Record()
            record.count += 1
            record.total += rtt
            record.last = rtt
            if rtt > record.max:
                record.max = rtt
            record.answered_at = arrival

    def _forget_bindings(self) -> None:
        """Drop the oldest bindings of identities no longer known, down to ``max_bindings``."""
        excess = len(self._owners) - self.max_bindings
        for heart in [h for h in self._owners if h not in self.hearts][:excess]:
            del self._owners[heart]

    def _record_answers(self, responded: set[bytes], now: float, judge: bool) -> tuple[float, ...]:
        """Update the records of the known hearts that answered; return every round trip."""
        on_time, late, records = self._on_time, self._late, self._records
        tic, previous_tic, phi = self.tic, self._previous_tic, self.rules.phi
        if phi is None:
            self._tally(responded)
            return (*on_time.values(), *late.values())
        for heart in responded:
            record = records.get(heart)
            if record is None:
                if heart not in self.hearts:
                    continue  # refused
                record = records[heart] = _Record()
            rtt = on_time.get(heart)
            arrival = tic + rtt if rtt is not None else previous_tic + late[heart]
            if rtt is None:
                rtt = late[heart]
            if phi is not None:
                last = record.last_arrival
                if record.intervals is None:
                    # the round length is the interval a heart is expected to answer at
                    record.intervals = Intervals(phi.window, max(now - tic, 1e-3))
                elif judge and last is not None:
                    # An unjudged beat's answers were read late: the interval would be a lie.
                    record.intervals.add(arrival - last)
            record.answered(rtt, arrival)
        if phi is not None and not judge:
            # The silent hearts could not be heard either: their suspicion starts again from
            # now, rather than counting the monitor's own stall against them.
            for heart in self.hearts - responded:
                records[heart].last_arrival = now
        return (*on_time.values(), *late.values())

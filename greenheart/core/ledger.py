"""The heartbeat ledger: which hearts are beating, and the verdict of each beat.

Theory of operation
-------------------
A monitor publishes a ping every period and listens for pongs. The ledger is the bookkeeping
between the two, as h11's connection is for HTTP: no I/O, no clock. Every input carries its
time, and every decision comes back as a value (:mod:`~greenheart.core.values`).

A heart's life, beat by beat:

- an unknown heart that answered in the round is **new** at the beat (or refused, and asked
  again, while ``max_hearts`` are known);
- a known heart silent at a judged beat **misses** it and is on probation, until it answers.
  One miss more than ``max_misses`` (with phi: a suspicion past the threshold) and it has
  **failed**: it is forgotten, and new again if it answers again;
- when a beat would fail most of the hearts whose connections are up, it holds them as
  **suspects** instead (:mod:`~greenheart.core.silence`), failed if their connection closes;
- a known heart whose connection **closes** fails at once with ``fail_on_disconnect``, and
  otherwise is *down* (:mod:`~greenheart.core.connections`): failed by its misses, never held;
  one whose connection **timed out** is down and unreachable (:mod:`~greenheart.core.transport`);
- a known heart that **leaves** (:data:`~greenheart.core.wire.LEAVE`, under its identity's key
  and on its connection) fails at once, as left; its connection's close then fails nobody;
- a heart failed for its silence that answers again on the same connection was failed by
  mistake: a **false failure** (:mod:`~greenheart.core.failures`).

An *unjudged* beat (``judge=False``: the driver could not have heard everyone,
:mod:`~greenheart.core.judging`) charges nobody a miss. Every failure has its certificate, a
:class:`~greenheart.core.failures.Failure`. The settings are one
:class:`~greenheart.core.rules.Rules`; ``max_misses=1`` is IPython.parallel's rule.

The ledger composes one piece per idea: rounds (:mod:`~greenheart.core.rounds`), round trips
and phi (:mod:`~greenheart.core.records`), key bindings (:mod:`~greenheart.core.bindings`),
connections, the hearts failed for silence, the suspects. An observer (:meth:`Ledger.observe`)
is handed every input as a value (:mod:`~greenheart.core.inputs`): how a monitor is recorded.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from types import MappingProxyType

import attrs

from greenheart.core import inputs
from greenheart.core.bindings import MAX_BINDINGS, KeyBindings
from greenheart.core.checks import COUNT
from greenheart.core.connections import ConnectionBook
from greenheart.core.failures import Cause, Failure, FalseFailure, Silenced, amend
from greenheart.core.records import Records
from greenheart.core.restart import Awaiting, Remembered
from greenheart.core.rounds import Echo, Rounds
from greenheart.core.rules import Rules
from greenheart.core.silence import Outcome, Suspect, Suspects
from greenheart.core.values import ANSWERS, Beat, Counters, HeartState, Pong, PongKind, RoundTrips
from greenheart.core.wire import LEAVE

#: failures and false failures the ledger remembers, the newest
RECENT = 1000

#: what a beat decided of one heart: its cause, its misses, and its hold if it was held
_Verdict = tuple[bytes, Cause, int, Suspect | None]


@attrs.define
class Ledger:
    """Who is beating: the hearts known, their misses, and the verdict of each beat."""

    #: when the first round opened, on the caller's clock
    _opened_at: float = attrs.field(alias="tic")
    rules: Rules = attrs.field(factory=Rules, validator=attrs.validators.instance_of(Rules))
    #: identities bound to keys remembered at most, known hearts' always included
    max_bindings: int = attrs.field(default=MAX_BINDINGS, validator=COUNT)
    #: the known hearts
    hearts: set[bytes] = attrs.field(factory=set, init=False)
    #: heart -> consecutive beats missed, for hearts that missed the last beat
    on_probation: dict[bytes, int] = attrs.field(factory=dict, init=False)
    #: the certificates of the latest failures, oldest first
    failures: collections.deque[Failure] = attrs.field(
        factory=lambda: collections.deque(maxlen=RECENT), init=False
    )
    #: the latest false failures, oldest first
    false_failures: collections.deque[FalseFailure] = attrs.field(
        factory=lambda: collections.deque(maxlen=RECENT), init=False
    )
    _rounds: Rounds = attrs.field(init=False)
    _records: Records = attrs.field(init=False)
    _bindings: KeyBindings = attrs.field(init=False)
    _book: ConnectionBook = attrs.field(factory=ConnectionBook, init=False)
    _silenced: Silenced = attrs.field(factory=Silenced, init=False)
    _suspects: Suspects | None = attrs.field(default=None, init=False)
    #: totals of the rounds already closed, stale and malformed pongs included
    _totals: Counters = attrs.field(factory=Counters, init=False)
    #: hearts failed since the last beat, between beats (a closed connection, a leave)
    _disconnected: list[Failure] = attrs.field(factory=list, init=False)
    #: certificates amended since the last beat: their connection closed
    _amended: list[Failure] = attrs.field(factory=list, init=False)
    #: the last beat's lag and the driver's CPU share then, for a failure between beats
    _monitor_at_beat: tuple[float, float | None] = attrs.field(default=(0.0, None), init=False)
    #: suspects held after the last beat
    _held_after_beat: int = attrs.field(default=0, init=False)
    _observer: Callable[[inputs.Input], object] | None = attrs.field(default=None, init=False)
    #: a stopped monitor's hearts, not heard since it restarted (:mod:`~greenheart.core.restart`)
    _awaiting: Awaiting | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._rounds = Rounds(self._opened_at)
        self._records = Records(self.rules.phi)
        self._bindings = KeyBindings(self.max_bindings)
        if self.rules.mass_silence is not None:
            self._suspects = Suspects(self.rules.mass_silence)

    # -- what it knows ----------------------------------------------------------------------

    @property
    def tic(self) -> float:
        """When the current ping was sent."""
        return self._rounds.tic

    @property
    def ping(self) -> bytes:
        """The payload of the current ping."""
        return self._rounds.ping

    @property
    def rounds(self) -> Rounds:
        """The pings in flight and their answers (``lifetime``, ``last_ping``, ``responses``,
        ``answer_count``): to read."""
        return self._rounds

    @property
    def connections(self) -> ConnectionBook:
        """Which connection each heart answers on: to read (fed by :meth:`closed` and co.)."""
        return self._book

    @property
    def counters(self) -> Counters:
        """Totals since the ledger was made, the current round included (a copy)."""
        counters, rounds = attrs.evolve(self._totals), self._rounds
        counters.count_answers(len(rounds.on_time) + rounds.early_count, len(rounds.late))
        return counters

    @property
    def suspects(self) -> dict[bytes, Suspect]:
        """The hearts held as suspects of a mass silence (a copy)."""
        return dict(self._suspects.items()) if self._suspects is not None else {}

    def round_trips(self, heart: bytes) -> RoundTrips | None:
        """The round trips of a known heart, as of the last beat; None if it is not known."""
        return self._records.round_trips(heart)

    def states(self) -> list[HeartState]:
        """Every known heart's misses in a row, round trips and suspicion, as of the last beat."""
        on_probation, suspects = self.on_probation, self._suspects or ()
        trips = self._records.round_trips
        return [
            HeartState(heart, on_probation.get(heart, 0), trips(heart), heart in suspects)
            for heart in self.hearts
        ]

    def suspicion(self, heart: bytes, now: float) -> float | None:
        """The phi-accrual suspicion of a known heart at ``now``; None without ``rules.phi``."""
        return self._records.suspicion(heart, now)

    @property
    def amended(self) -> tuple[Failure, ...]:
        """Certificates amended since the last beat, which the next beat lists."""
        return tuple(self._amended)

    def key_of(self, heart: bytes) -> object | None:
        """The key ``heart`` is bound to, if any."""
        return self._bindings.key_of(heart)

    # -- inputs -----------------------------------------------------------------------------

    def observe(self, observer: Callable[[inputs.Input], object] | None) -> None:
        """Hand ``observer`` every input from now on, as a value (None stops it); first what
        brings a new ledger to this round (a :class:`~greenheart.core.inputs.Started`, the
        answers already read). Call it at the start, or right after a beat."""
        self._observer = observer
        if observer is None:
            return
        for given in inputs.opening(self._rounds, self.key_of):
            observer(given)

    def resume(self, remembered: Sequence[Remembered], now: float, grace: float) -> None:
        """Know ``remembered``, a stopped monitor's hearts, each awaited for ``grace`` s."""
        self._awaiting = Awaiting.of(remembered, now, grace)
        self.hearts.update(r.heart for r in remembered)

    def publish(self, now: float) -> bytes:
        """Open the next round at ``now``, before the current one closes (a monitor publishes,
        reads what is queued, then beats): its ping. Publishing twice opens it once."""
        if not self._rounds.published:
            self._note(inputs.RoundOpened, now)
        return self._rounds.publish(now)

    def pong(
        self, heart: bytes, payload: bytes, now: float, key: object = None, fd: int = -1
    ) -> Pong:
        """Account for ``payload`` echoed by ``heart`` at ``now``, sent with ``key`` (None when
        the transport does not authenticate) on descriptor ``fd`` (-1: not known); or its leave."""
        echo = self._rounds.echo_of(payload)
        if echo is Echo.OTHER and payload == LEAVE:
            return self.left(heart, now, key, fd)
        return self.echoed(heart, echo, now, key)

    def left(self, heart: bytes, now: float, key: object = None, fd: int = -1) -> Pong:
        """``heart`` said at ``now`` it stops, with ``key`` on descriptor ``fd`` (-1: not known).
        Known, it fails at once as left (its certificate the newest of :attr:`failures`); not
        known, it is stale, its answers of the round taken back."""
        self._note(inputs.Left, now, heart, fd, key)
        if not heart:
            return self._bad(PongKind.MALFORMED, heart)
        if not self._bindings.allows(heart, key) or not self._book.own(heart, fd):
            return self._bad(PongKind.SPOOFED, heart)
        if heart not in self.hearts:
            self._totals.count_answers(*self._rounds.drop(heart))
            return self._bad(PongKind.STALE, heart)
        self._fail_now([heart], Cause.LEFT, now)
        return Pong(PongKind.LEFT, heart, None)

    def echoed(self, heart: bytes, echo: Echo, now: float, key: object = None) -> Pong:
        """:meth:`pong`, for a pong known by which ping it echoes (a replay's input)."""
        if self._observer is not None:
            self._observer(inputs.Echoed(now, heart, echo, key))
        if not heart:
            return self._bad(PongKind.MALFORMED, heart)
        if key is not None and not self._bindings.allows(heart, key):
            return self._bad(PongKind.SPOOFED, heart)
        kind, rtt = self._rounds.heard(heart, echo, now)
        if rtt is None:
            return self._bad(kind, heart)
        if key is not None:
            self._bindings.bind(heart, key)
        return Pong(kind, heart, rtt)

    def pongs(self, hearts: list[bytes], payloads: list[bytes], now: float) -> list[Pong]:
        """:meth:`pong` for each answer of one drain, read at ``now`` with no key: those not
        answers. Each a first answer to one ping, it is a few set operations in C
        (:meth:`~greenheart.core.rounds.Rounds.heard_all`), to the resolution of one drain."""
        count = len(hearts)
        if count > 1 and payloads.count(payloads[0]) == count:
            echo = self._rounds.echo_of(payloads[0])
            if self._rounds.heard_all(hearts, echo, now):
                if self._observer is not None:
                    for heart in hearts:
                        self._observer(inputs.Echoed(now, heart, echo))
                return []
        pong = self.pong
        return [
            answer
            for answer in map(pong, hearts, payloads, [now] * count)
            if answer.kind not in ANSWERS
        ]

    def stale(
        self, heart: bytes, now: float, payload: bytes = b"", key: object = None, fd: int = -1
    ) -> Pong:
        """Account for what ``heart`` sent on ``fd`` before it closed: an answer, too late to
        count; its leave, taken (:meth:`left`)."""
        if payload == LEAVE:
            return self.left(heart, now, key, fd)
        self._note(inputs.Stale, now, heart)
        return self._bad(PongKind.STALE, heart)

    def malformed(self, heart: bytes, now: float) -> Pong:
        """Account for a message that is not a pong at all (``heart`` may be empty)."""
        self._note(inputs.Malformed, now)
        return self._bad(PongKind.MALFORMED, heart)

    def accepted(self, fd: int, now: float) -> None:
        """A connection was accepted on descriptor ``fd``."""
        self._note(inputs.ConnectionAccepted, now, fd)
        self._book.accepted(fd)

    def tie(self, heart: bytes, fd: int, now: float) -> None:
        """``heart`` answered on ``fd``, not its own; every event before it has been handed in."""
        self._note(inputs.ConnectionTied, now, heart, fd)
        self._book.answered(heart, fd)

    def closed(self, fd: int, now: float) -> tuple[Failure, ...]:
        """The connection on descriptor ``fd`` closed at ``now``: the failures that makes (the
        next beat's ``disconnected``). Timed out (:mod:`~greenheart.core.transport`), its hearts
        are down and unreachable, none failed: the link lost may be the monitor's."""
        self._note(inputs.ConnectionClosed, now, fd)
        failing = []
        suspects, book, keepalive = self._suspects, self._book, self.rules.keepalive
        for heart in book.closed(fd, self.hearts):
            amended = self._silenced.closed(heart, now, keepalive)
            if amended is not None:
                amend(self.failures, amended)
                self._amended.append(amended)
            if heart not in self.hearts:
                continue
            silence = self._records.silence(heart, now, self._rounds.arrival(heart))
            if keepalive is not None and keepalive.timed_out(silence):
                book.time_out(heart)
            elif self.rules.fail_on_disconnect or (suspects is not None and heart in suspects):
                failing.append(heart)
        return self._fail_now(failing, Cause.DISCONNECTED, now)

    def beat(
        self, now: float, judge: bool = True, lag: float = 0.0, cpu_share: float | None = None
    ) -> Beat:
        """Close the current round at ``now`` and open the next (if :meth:`publish` did not).
        With ``judge=False`` (the driver could not have heard every answer) nobody is charged a
        miss. ``lag`` and ``cpu_share`` (the driver's thread's share of the time since the beat
        before) are only reported, in the beat and its certificates."""
        self.publish(now)
        self._note(inputs.RoundClosed, now, judge, lag, cpu_share)
        rounds, totals = self._rounds, self._totals
        on_time, late, bad = rounds.on_time, rounds.late, rounds.bad
        responses = rounds.responses
        self._monitor_at_beat = lag, cpu_share

        verdicts, on_probation, silence = self._judge(responses, now, judge)
        verdicts.sort(key=lambda verdict: verdict[0])
        number = totals.beats + 1
        failures = [
            self._certify(heart, cause, now, misses, len(verdicts), number, held)
            for heart, cause, misses, held in verdicts
        ]
        resumed, gone = self._awaiting.beat(responses, now) if self._awaiting else ((), [])
        failures += [
            self._certify(r.heart, Cause.RESTARTED, now, 0, len(gone), number, last=r.last_answer)
            for r in gone
        ]
        for failure in failures:
            self._silenced.failed(failure, self._book.serial_of(failure.heart))
            self._forget(failure.heart)
            self.failures.append(failure)
        self.on_probation = on_probation

        candidates = sorted(responses - self.hearts)
        new_hearts = candidates[: self.rules.room(len(self.hearts))]
        refused = len(candidates) - len(new_hearts)
        self.hearts.update(new_hearts)
        # before the round closes: when each answered
        false_failures = self._silenced.returns(new_hearts, self._book.serial_of, rounds.arrival)
        self.false_failures.extend(false_failures)
        self._records.add(rounds, self.hearts, now, judged=judge)
        self._bindings.trim(self.hearts)
        # a late pong's trip began one ping earlier than the round it came in
        late_by = rounds.tic - rounds.previous_tic
        rounds.close()

        held_before, held_after = self._held_after_beat, len(self._suspects or ())
        self._held_after_beat = held_after
        disconnections, self._disconnected = tuple(self._disconnected), []
        amended, self._amended = tuple(self._amended), []
        beat = Beat(
            number=number,
            at=now,
            ping=rounds.ping,
            heart_count=len(self.hearts),
            responded_count=len(responses),
            new_hearts=tuple(new_hearts),
            failed_hearts=tuple(failure.heart for failure in failures),
            missed=tuple(sorted(on_probation)),
            probation_count=len(on_probation),
            on_time_pongs=len(on_time),
            late_pongs=len(late),
            bad_pongs=bad,
            late_hearts=MappingProxyType({heart: rtt - late_by for heart, rtt in late.items()}),
            max_rtt=max(on_time.values(), default=None),
            rtts=(*on_time.values(), *late.values()),
            judged=judge,
            refused_count=refused,
            lag=lag,
            disconnected=tuple(failure.heart for failure in disconnections),
            failures=(*failures, *disconnections),
            false_failures=false_failures,
            resumed=resumed,
            amended=amended,
            suspects=tuple(sorted(self._suspects)) if self._suspects else (),
            held=silence.held if silence is not None else (),
            released=silence.released if silence is not None else (),
            mass_silence_began=not held_before and held_after > 0,
            mass_silence_ended=held_before > 0 and not held_after,
            cpu_share=cpu_share,
        )
        totals.add(beat)
        return beat

    # -- the decisions --------------------------------------------------------------------------

    def _judge(
        self, responses: set[bytes], now: float, judge: bool
    ) -> tuple[list[_Verdict], dict[bytes, int], Outcome | None]:
        """The hearts that failed (each with its cause, its misses and its hold, if it was
        held), the misses of the hearts that did not answer and did not fail, and what the
        mass-silence rule did (None if it had nothing to do)."""
        failed: list[_Verdict] = []
        on_probation: dict[bytes, int] = {}
        charge = 1 if judge else 0
        phi = self.rules.phi
        cause = Cause.MISSED if phi is None else Cause.PHI
        suspects, book, awaiting = self._suspects, self._book, self._awaiting or ()
        # hearts that would fail with their connections up, which the rule may hold instead
        would_fail: list[bytes] = []
        for heart in self.hearts - responses:
            misses = self.on_probation.get(heart, 0) + charge
            if not misses or heart in awaiting:
                continue
            if suspects is not None and heart in suspects:
                on_probation[heart] = misses
                continue
            if phi is None:
                gone = misses > self.rules.max_misses
            else:
                suspicion = self._records.suspicion(heart, now)
                gone = judge and suspicion is not None and suspicion > phi.threshold
            if not gone:
                on_probation[heart] = misses
            elif suspects is not None and not book.is_down(heart):
                would_fail.append(heart)
                on_probation[heart] = misses
            else:
                failed.append((heart, cause, misses, None))
        if suspects is None or not (would_fail or suspects):
            return failed, on_probation, None
        outcome = suspects.beat(
            answered=responses,
            would_fail=would_fail,
            up=len(self.hearts) - book.down_count,
            now=now,
            judged=judge,
        )
        for heart in outcome.failed:
            failed.append((heart, cause, on_probation.pop(heart), None))
        for heart, suspect in outcome.expired:
            failed.append((heart, Cause.HELD, on_probation.pop(heart), suspect))
        return failed, on_probation, outcome

    def _fail_now(self, hearts: list[bytes], cause: Cause, now: float) -> tuple[Failure, ...]:
        """Fail ``hearts`` together at ``now``, between beats: the next beat's ``disconnected``."""
        suspects, totals, start = self._suspects, self._totals, len(self._disconnected)
        for heart in hearts:
            totals.count_answers(*self._rounds.drop(heart))
            held = suspects.drop(heart) if suspects is not None else None
            misses = self.on_probation.get(heart, 0)
            failure = self._certify(heart, cause, now, misses, len(hearts), totals.beats, held)
            self._forget(heart)
            totals.count_failure(failure)
            self._disconnected.append(failure)
            self.failures.append(failure)
        return tuple(self._disconnected[start:])

    def _certify(
        self,
        heart: bytes,
        cause: Cause,
        now: float,
        misses: int,
        together: int,
        beat: int,
        suspect: Suspect | None = None,
        last: float | None = None,
    ) -> Failure:
        """The certificate of ``heart``'s failure, from its record (which must still be there)."""
        trips = self.round_trips(heart)
        return Failure(
            heart=heart,
            cause=cause,
            at=now,
            beat=beat,
            misses=misses,
            last_answer=self._records.answered_at(heart) or last,
            last_rtt=trips.last if trips is not None else None,
            mean_rtt=trips.mean if trips is not None else None,
            phi=self.suspicion(heart, now),
            connected=self._book.connected(heart),
            lag=self._monitor_at_beat[0],
            cpu_share=self._monitor_at_beat[1],
            failed_together=together,
            held_since=None if suspect is None else suspect.since,
            held_beats=0 if suspect is None else suspect.beats,
            timed_out=self._book.timed_out(heart),
        )

    def _forget(self, heart: bytes) -> None:
        """``heart`` failed: it is no longer known."""
        self.hearts.discard(heart)
        self.on_probation.pop(heart, None)
        self._book.failed(heart)
        self._records.drop(heart)
        if self._awaiting is not None:
            self._awaiting.discard(heart)

    def _note(self, kind: Callable[..., inputs.Input], *fields: object) -> None:
        """Hand the observer, if there is one, the input ``kind(*fields)``."""
        if self._observer is not None:
            self._observer(kind(*fields))

    def _bad(self, kind: PongKind, heart: bytes) -> Pong:
        """Count a pong that is not an answer."""
        self._totals.count_bad(kind)
        self._rounds.bad += 1
        return Pong(kind, heart, None)

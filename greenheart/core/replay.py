"""Replaying a recording through a ledger: under its own rules, under others, at other periods.

:func:`replay` feeds a recording's inputs (:mod:`greenheart.core.inputs`) to a fresh
:class:`~greenheart.core.ledger.Ledger` under any :class:`~greenheart.core.rules.Rules`: under
the recording's own it makes the live monitor's verdicts again, the same hearts failed on the
same beats (times are kept to the microsecond, so only a suspicion within a millionth of its
threshold could come out otherwise). That holds from a monitor's start: a segment a rotated
file begins starts a new ledger from the round's answers alone, so that what its hearts did
before (their misses, connections, holds) is not in it.

**Other periods** (:func:`resample`). A period changes when pings go out, so the answers must
be made up: each heart answers a ping sent at ``t`` after the delay with which it answered the
recorded ping before ``t``, or not at all if it did not answer that one, or its connection was
closed then, or it had left. Silences and pauses so keep their length in seconds, and the
monitor's own stalls (beats that came late) keep theirs: a beat due inside a recorded stall
comes at its end, judged as the recorded one was. The limits: a silence shorter than the
recorded period cannot be seen (a recording at 1 s says nothing of a 300 ms hiccup), a heart's
delay is taken as it was whatever the ping rate (a heart or network loaded by pinging more
often would answer slower), and a monitor's own busy beats are not made up for a period that
would load it more.

**Deaths** (:func:`inject`). To measure how long a setting takes to notice a death, a plan of
:class:`Injection`\\ s kills hearts at chosen moments: from then on, the heart's identity is
silent (a hang: its connection stays up) or its connection closes as well (a crash), and the
heart carries on under a new identity (``name~1``) on a new connection, as a restarted process
would, so the load stays the same. The time from the injection to the old identity's failure
is the detection time.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence

import attrs

from greenheart.core.failures import SILENCE, Failure, FalseFailure, amend
from greenheart.core.inputs import (
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionTied,
    Echoed,
    Input,
    Left,
    Malformed,
    RoundClosed,
    RoundOpened,
    Stale,
    Started,
)
from greenheart.core.ledger import Ledger
from greenheart.core.rounds import Echo
from greenheart.core.rules import Rules
from greenheart.core.stats import percentile
from greenheart.core.values import PongKind

#: descriptors for the connections of injected restarts: above any real one
_FAKE_FD = 1 << 30

HANG, CRASH = "hang", "crash"


@attrs.frozen
class Injection:
    """A heart killed at ``at``: its identity then is ``heart``."""

    heart: bytes
    at: float
    kind: str = attrs.field(validator=attrs.validators.in_((HANG, CRASH)))


@attrs.define
class Replayed:
    """What a replay decided."""

    failures: list[Failure] = attrs.field(factory=list)
    false_failures: list[FalseFailure] = attrs.field(factory=list)
    beats: int = 0
    #: heart-seconds: the hearts known after each beat, times the time to the next beat
    exposure: float = 0.0
    #: hearts known after each beat, at most
    most_hearts: int = 0

    def failure_of(self, heart: bytes) -> Failure | None:
        return next((failure for failure in self.failures if failure.heart == heart), None)

    @property
    def silence_failures(self) -> list[Failure]:
        return [failure for failure in self.failures if failure.cause in SILENCE]


def replay(inputs: Iterable[Input], rules: Rules) -> Replayed:
    """Feed ``inputs`` to a ledger under ``rules``: every failure it made, in order, and every
    false failure. A :class:`~greenheart.core.inputs.Started` begins a new ledger (a new
    segment); what comes before the first is skipped."""
    replayed = Replayed()
    ledger: Ledger | None = None
    last_beat: float | None = None
    failures = replayed.failures
    for event in inputs:
        if isinstance(event, Started):
            ledger, last_beat = Ledger(tic=event.at, rules=rules), None
            continue
        if ledger is None:
            continue
        match event:
            case Echoed(at, heart, echo, key):
                ledger.echoed(heart, echo, at, key)
            case RoundClosed(at, judged, lag, cpu_share):
                beat = ledger.beat(at, judge=judged, lag=lag, cpu_share=cpu_share)
                failures.extend(beat.failures[: len(beat.failed_hearts)])
                replayed.false_failures.extend(beat.false_failures)
                replayed.beats += 1
                if last_beat is not None:
                    replayed.exposure += beat.heart_count * (at - last_beat)
                replayed.most_hearts = max(replayed.most_hearts, beat.heart_count)
                last_beat = at
            case RoundOpened(at):
                ledger.publish(at)
            case ConnectionAccepted(at, fd):
                ledger.accepted(fd, at)
            case ConnectionTied(at, heart, fd):
                ledger.tie(heart, fd, at)
            case ConnectionClosed(at, fd):
                failures.extend(ledger.closed(fd, at))
                for amended in ledger.amended:
                    amend(failures, amended)
            case Stale(at, heart):
                ledger.stale(heart, at)
            case Left(at, heart, fd, key):
                if ledger.left(heart, at, key, fd).kind is PongKind.LEFT:
                    failures.append(ledger.failures[-1])
            case Malformed(at):
                ledger.malformed(b"", at)
    return replayed


# -- other periods -----------------------------------------------------------------------------


@attrs.define
class _Heart:
    """One heart's answers in a recorded segment."""

    #: recorded ping index -> arrival of its answer
    answers: dict[int, float] = attrs.field(factory=dict)
    key: object = None
    #: (closed at, answered again at) for each time its connection closed under it, or it left
    down: list[tuple[float, float]] = attrs.field(factory=list)
    fd: int | None = None

    def went_down(self, at: float) -> None:
        """Its connection closed, or it left, at ``at``: silent until it is tied again."""
        if not self.down or self.down[-1][1] != float("inf"):
            self.down.append((at, float("inf")))


@attrs.frozen
class _MadeUp:
    """An answer made up for the new grid, to its ping number ``ping`` (echo still unknown)."""

    at: float
    heart: bytes
    ping: int
    key: object


def _segments(inputs: Sequence[Input]) -> list[Sequence[Input]]:
    starts = [i for i, event in enumerate(inputs) if isinstance(event, Started)]
    bounds = [*starts, len(inputs)]
    return [inputs[bounds[i] : bounds[i + 1]] for i in range(len(starts))]


# inputs at one instant: connections first, answers before the beat they count for; leaves
# and closes in the order recorded (the sort is stable)
_ORDER: dict[type, int] = {
    ConnectionAccepted: 0,
    ConnectionTied: 1,
    _MadeUp: 2,
    Left: 3,
    ConnectionClosed: 3,
    RoundOpened: 4,
    RoundClosed: 5,
}


def resample(inputs: Sequence[Input], period: float) -> list[Input]:
    """``inputs`` as they would have been at ``period`` ms (see the module's docstring)."""
    if not 0 < period < math.inf:
        raise ValueError(f"a period must be a positive number of ms, not {period!r}")
    out: list[Input] = []
    for segment in _segments(inputs):
        out.extend(_resample_segment(segment, period / 1000.0))
    return out


def _resample_segment(inputs: Sequence[Input], step: float) -> list[Input]:
    start = inputs[0].at
    pings = [start]
    current, upcoming = 0, None
    hearts: dict[bytes, _Heart] = {}
    tied: dict[int, set[bytes]] = {}
    stalls: list[tuple[float, float, bool]] = []  # (from, to, judged)
    kept: list[Input] = []
    end = start
    for event in inputs[1:]:
        end = max(end, event.at)
        if isinstance(event, (RoundOpened, RoundClosed)):
            if upcoming is None:
                pings.append(event.at)
                upcoming = len(pings) - 1
            if isinstance(event, RoundClosed):
                current, upcoming = upcoming, None
                if event.lag > 0 or not event.judged:
                    stalls.append((event.at - event.lag, event.at, event.judged))
        elif isinstance(event, Echoed):
            index = {Echo.CURRENT: current, Echo.PREVIOUS: current - 1, Echo.UPCOMING: upcoming}
            ping = index.get(event.echo)
            if ping is None or ping < 0:
                continue
            record = hearts.setdefault(event.heart, _Heart())
            record.answers.setdefault(ping, event.at)
            record.key = event.key
        elif isinstance(event, ConnectionTied):
            record = hearts.setdefault(event.heart, _Heart())
            if record.down and record.down[-1][1] == float("inf"):
                record.down[-1] = (record.down[-1][0], event.at)
            if record.fd is not None:
                tied.get(record.fd, set()).discard(event.heart)
            record.fd = event.fd
            tied.setdefault(record.fd, set()).add(event.heart)
            kept.append(event)
        elif isinstance(event, ConnectionClosed):
            for name in tied.pop(event.fd, ()):
                hearts[name].went_down(event.at)
                hearts[name].fd = None
            kept.append(event)
        elif isinstance(event, Left):
            record = hearts.setdefault(event.heart, _Heart())
            if event.fd < 0 or record.fd in (None, event.fd):  # its own: silent from now on
                record.went_down(event.at)
            kept.append(event)
        elif isinstance(event, ConnectionAccepted):
            kept.append(event)
    # the new grid, and the beats on it
    beats: list[tuple[float, bool]] = []
    t = start + step
    stall_ends = [stall[1] for stall in stalls]
    while t <= end:
        i = bisect.bisect_left(stall_ends, t)
        if i < len(stalls) and stalls[i][0] < t <= stalls[i][1]:
            at, judged = stalls[i][1], stalls[i][2]
            t = at  # the grid goes on from the stall's end, skipping what it lost
        else:
            at, judged = t, True
        beats.append((at, judged))
        t += step
    new_pings = [start, *(at for at, _ in beats)]
    out: list[Input | _MadeUp] = [*kept]
    for at, judged in beats:
        out += [RoundOpened(at), RoundClosed(at, judged)]
    for heart, record in hearts.items():
        if not record.answers:
            continue
        first, last = min(record.answers), max(record.answers)
        for j, sent in enumerate(new_pings):
            k = bisect.bisect_right(pings, sent) - 1
            arrival = record.answers.get(k)
            if k < first or k > last or arrival is None:
                continue
            at = sent + max(arrival - pings[k], 1e-6)
            if not any(since <= at < until for since, until in record.down):
                out.append(_MadeUp(at, heart, j, record.key))
    out.sort(key=lambda event: (event.at, _ORDER[type(event)]))
    result: list[Input] = [inputs[0]]
    now_ping = 0
    for item in out:
        if isinstance(item, _MadeUp):
            lag = now_ping - item.ping
            echo = Echo.CURRENT if lag == 0 else Echo.PREVIOUS if lag == 1 else Echo.OTHER
            result.append(Echoed(item.at, item.heart, echo, item.key))
            continue
        now_ping += isinstance(item, RoundClosed)
        result.append(item)
    return result


# -- deaths ------------------------------------------------------------------------------------


def plan(
    inputs: Sequence[Input],
    count: int,
    *,
    seed: int = 0,
    warmup: float = 5.0,
    tail: float = 10.0,
    within: float = 1.0,
) -> list[Injection]:
    """``count`` deaths, alternately hangs and crashes, at random moments from ``warmup``
    seconds into the recording to ``tail`` before the end of its load, each of a heart that
    answered within ``within`` seconds before the moment and after it (alive across it, not in
    a silence of its own). A heart dies again (once every heart has died) only ``tail`` or more
    from its other deaths: its restart must live long enough to be known, and noticed."""
    answers: dict[bytes, list[float]] = {}
    for event in inputs:
        if isinstance(event, Echoed) and event.heart:
            answers.setdefault(event.heart, []).append(event.at)
    if not answers:
        return []
    # where the load ends: when half the hearts had given their last answer (a recording that
    # ends as its cluster leaves must not have deaths that the leaving hides)
    ends = sorted(times[-1] for times in answers.values())
    start, end = inputs[0].at, min(inputs[-1].at, ends[len(ends) // 2])
    lo, hi = start + warmup, end - tail
    if hi <= lo:
        return []
    rng = random.Random(seed)
    names = sorted(answers)
    injections: list[Injection] = []
    died: dict[bytes, list[float]] = {}
    tries = 0
    while len(injections) < count and tries < 50 * count:
        tries += 1
        at = rng.uniform(lo, hi)
        heart = rng.choice(names)
        if heart in died and (
            len(died) < len(names) or any(abs(at - t) < tail for t in died[heart])
        ):
            continue
        times = answers[heart]
        i = bisect.bisect_left(times, at)
        if i == 0 or i == len(times) or at - times[i - 1] > within or times[i] - at > within:
            continue
        died.setdefault(heart, []).append(at)
        kind = HANG if len(injections) % 2 == 0 else CRASH
        injections.append(Injection(heart, at, kind))
    injections.sort(key=lambda injection: injection.at)
    return injections


def inject(
    inputs: Sequence[Input], injections: Sequence[Injection]
) -> tuple[list[Input], list[Injection]]:
    """``inputs`` with the deaths of ``injections`` made (see the module's docstring); and the
    injections, each with the identity it killed (a heart killed twice dies the second time
    under the name of its first restart)."""
    pending = sorted(injections, key=lambda injection: injection.at)
    names: dict[bytes, bytes] = {}  # recorded heart -> the identity it answers under now
    real_fd: dict[bytes, int] = {}  # recorded heart -> the descriptor it answers on
    #: recorded heart -> (its descriptor when it was killed, its restart's made-up one)
    moved: dict[bytes, tuple[int, int]] = {}
    restarts: dict[bytes, int] = {}
    made: list[Injection] = []
    out: list[Input] = []
    fresh = _FAKE_FD
    i = 0
    for event in inputs:
        while i < len(pending) and pending[i].at <= event.at:
            injection = pending[i]
            i += 1
            recorded = injection.heart
            old = names.get(recorded, recorded)
            restarts[recorded] = restarts.get(recorded, 0) + 1
            names[recorded] = recorded + b"~%d" % restarts[recorded]
            made.append(Injection(old, injection.at, injection.kind))
            fd = real_fd.get(recorded)
            previous = moved.get(recorded)
            if injection.kind == CRASH:
                dead = previous[1] if previous is not None else fd
                if dead is not None:
                    out.append(ConnectionClosed(injection.at, dead))
            fresh += 1
            out.append(ConnectionAccepted(injection.at, fresh))
            out.append(ConnectionTied(injection.at, names[recorded], fresh))
            moved[recorded] = (fd if fd is not None else -1, fresh)
        if isinstance(event, ConnectionTied):
            real_fd[event.heart] = event.fd
            if event.heart in moved:
                if moved[event.heart][0] == event.fd:
                    continue  # the restart is on a connection of its own
                del moved[event.heart]  # it reconnected: the restart takes the new connection
        elif isinstance(event, ConnectionClosed):
            for recorded, (fd, fake) in list(moved.items()):
                if fd == event.fd:  # the restart dies with the connection it stands for
                    out.append(ConnectionClosed(event.at, fake))
                    del moved[recorded]
        if isinstance(event, (Echoed, Stale, Left, ConnectionTied)) and event.heart in names:
            event = attrs.evolve(event, heart=names[event.heart])
        out.append(event)
    return out, made


@attrs.frozen
class Detection:
    """How long a setting took to notice the deaths of a plan, in seconds."""

    times: tuple[float, ...]
    #: deaths not noticed by the end of the recording
    missed: int

    @property
    def worst(self) -> float | None:
        if self.missed or not self.times:
            return None
        return max(self.times)

    @property
    def median(self) -> float | None:
        return percentile(self.times, 0.5)


def detections(replayed: Replayed, made: Sequence[Injection], kind: str) -> Detection:
    """How long after each death of ``kind`` in ``made`` the replay failed its identity."""
    failed_at: dict[bytes, list[float]] = {}
    for failure in replayed.failures:
        failed_at.setdefault(failure.heart, []).append(failure.at)
    times, missed = [], 0
    for injection in made:
        if injection.kind != kind:
            continue
        # its first failure since (a flapping heart may have been failed before, and returned)
        at = min((t for t in failed_at.get(injection.heart, ()) if t >= injection.at), default=None)
        if at is None:
            missed += 1
        else:
            times.append(at - injection.at)
    return Detection(tuple(times), missed)

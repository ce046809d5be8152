"""Replaying a recording through a ledger: under its own rules, under others, at other periods.

:func:`replay` feeds a recording's events (:mod:`greenheart.core.recording`) to a fresh
:class:`~greenheart.core.ledger.Ledger` under any :class:`~greenheart.core.ledger.Rules`: under
the recording's own it makes the live monitor's verdicts again, the same hearts failed on the
same beats (times are kept to the microsecond, so only a suspicion within a millionth of its
threshold could come out otherwise).

**Other periods** (:func:`resample`). A period changes when pings go out, so the answers must
be made up: each heart answers a ping sent at ``t`` after the delay with which it answered the
recorded ping before ``t``, or not at all if it did not answer that one, or its connection
was closed then. Silences and pauses so keep their length in seconds, and the monitor's own
stalls (beats that came late) keep theirs: a beat due inside a recorded stall comes at its
end, judged as the recorded one was. The limits: a silence shorter than the recorded period
cannot be seen (a recording at 1 s says nothing of a 300 ms hiccup), a heart's delay is taken
as it was whatever the ping rate (a heart or network loaded by pinging more often would answer
slower), and a monitor's own busy beats are not made up for a period that would load it more.

**Deaths** (:func:`inject`). To measure how long a setting takes to notice a death, a plan of
:class:`Injection`\\ s kills hearts at chosen moments: from then on, the heart's identity is
silent (a hang: its connection stays up) or its connection closes as well (a crash), and the
heart carries on under a new identity (``name~1``) on a new connection, as a restarted process
would, so the load stays the same. The time from the injection to the old identity's failure
is the detection time.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence

import attrs

from greenheart.core.failures import SILENCE, Failure, FalseFailure
from greenheart.core.ledger import Ledger, Rules
from greenheart.core.recording import CURRENT, OTHER, PREVIOUS, UPCOMING, Event, Op

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
class Outcome:
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


def replay(events: Iterable[Event], rules: Rules) -> Outcome:
    """Feed ``events`` to a ledger under ``rules``: every failure it made, in order, and every
    false failure. A START event begins a new ledger (a new segment)."""
    outcome = Outcome()
    ledger: Ledger | None = None
    last_beat: float | None = None
    failures, false_failures = outcome.failures, outcome.false_failures
    for op, at, heart, a, b, key in events:
        if op == Op.PONG:
            if ledger is not None:
                ledger.pong(heart, ledger.payload_of(int(a)), at, key)  # type: ignore[arg-type]
        elif op == Op.BEAT:
            if ledger is None:
                continue
            beat = ledger.beat(at, judge=bool(a), lag=b, cpu_share=key)  # type: ignore[arg-type]
            failures.extend(beat.failures[: len(beat.failed_hearts)])
            false_failures.extend(beat.false_failures)
            outcome.beats += 1
            if last_beat is not None:
                outcome.exposure += beat.hearts * (at - last_beat)
            outcome.most_hearts = max(outcome.most_hearts, beat.hearts)
            last_beat = at
        elif ledger is None and op != Op.START:
            continue
        elif op == Op.PUBLISH:
            ledger.publish(at)  # type: ignore[union-attr]
        elif op == Op.START:
            ledger, last_beat = Ledger(tic=at, rules=rules), None
        elif op == Op.ACCEPTED:
            ledger.connections.accepted(int(a))  # type: ignore[union-attr]
        elif op == Op.ANSWERED:
            ledger.connections.answered(heart, int(a))  # type: ignore[union-attr,arg-type]
        elif op == Op.CLOSED:
            failures.extend(ledger.closed(int(a), at))  # type: ignore[union-attr]
        elif op == Op.STALE:
            ledger.stale(heart)  # type: ignore[union-attr,arg-type]
        elif op == Op.MALFORMED:
            ledger.malformed()  # type: ignore[union-attr]
    return outcome


# -- other periods -----------------------------------------------------------------------------


@attrs.define
class _Heart:
    """One heart's answers in a recorded segment."""

    #: recorded ping index -> arrival of its answer
    answers: dict[int, float] = attrs.field(factory=dict)
    key: object = None
    #: (closed at, answered again at) for each time its connection closed under it
    down: list[tuple[float, float]] = attrs.field(factory=list)
    fd: int | None = None


def _segments(events: Sequence[Event]) -> list[Sequence[Event]]:
    starts = [i for i, event in enumerate(events) if event[0] == Op.START]
    bounds = [*starts, len(events)]
    return [events[bounds[i] : bounds[i + 1]] for i in range(len(starts))]


# events at one instant: connections first, answers before the beat they count for
_ORDER: dict[int, int] = {
    Op.ACCEPTED: 0,
    Op.ANSWERED: 1,
    Op.PONG: 2,
    Op.CLOSED: 3,
    Op.PUBLISH: 4,
    Op.BEAT: 5,
}


def resample(events: Sequence[Event], period: float) -> list[Event]:
    """``events`` as they would have been at ``period`` ms (see the module's docstring)."""
    out: list[Event] = []
    for segment in _segments(events):
        out.extend(_resample_segment(segment, period / 1000.0))
    return out


def _resample_segment(events: Sequence[Event], step: float) -> list[Event]:
    start = events[0][1]
    pings = [start]
    current, upcoming = 0, None
    hearts: dict[bytes, _Heart] = {}
    tied: dict[int, set[bytes]] = {}
    stalls: list[tuple[float, float, bool]] = []  # (from, to, judged)
    kept: list[Event] = []
    end = start
    for event in events[1:]:
        op, at, heart = event[0], event[1], event[2]
        end = max(end, at)
        if op == Op.PUBLISH:
            if upcoming is None:
                pings.append(at)
                upcoming = len(pings) - 1
        elif op == Op.BEAT:
            if upcoming is None:
                pings.append(at)
                upcoming = len(pings) - 1
            current, upcoming = upcoming, None
            if event[4] > 0 or not event[3]:
                stalls.append((at - event[4], at, bool(event[3])))
        elif op == Op.PONG:
            assert heart is not None
            echoed = int(event[3])
            index = {CURRENT: current, PREVIOUS: current - 1, UPCOMING: upcoming}.get(echoed)
            if echoed == OTHER or index is None or index < 0:
                continue
            record = hearts.setdefault(heart, _Heart())
            record.answers.setdefault(index, at)
            record.key = event[5]
        elif op == Op.ANSWERED:
            assert heart is not None
            record = hearts.setdefault(heart, _Heart())
            if record.down and record.down[-1][1] == float("inf"):
                record.down[-1] = (record.down[-1][0], at)
            if record.fd is not None:
                tied.get(record.fd, set()).discard(heart)
            record.fd = int(event[3])
            tied.setdefault(record.fd, set()).add(heart)
            kept.append(event)
        elif op == Op.CLOSED:
            for name in tied.pop(int(event[3]), ()):
                hearts[name].down.append((at, float("inf")))
                hearts[name].fd = None
            kept.append(event)
        elif op == Op.ACCEPTED:
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
    out: list[tuple[float, int, Event]] = [(start, -1, events[0])]
    for at, judged in beats:
        out.append((at, _ORDER[Op.PUBLISH], (Op.PUBLISH, at, None, 0.0, 0.0, None)))
        out.append((at, _ORDER[Op.BEAT], (Op.BEAT, at, None, float(judged), 0.0, None)))
    for event in kept:
        out.append((event[1], _ORDER[event[0]], event))
    for heart, record in hearts.items():
        if not record.answers:
            continue
        first, last = min(record.answers), max(record.answers)
        downs = record.down
        for j, sent in enumerate(new_pings):
            k = bisect.bisect_right(pings, sent) - 1
            if k < first or k > last:
                continue
            arrival = record.answers.get(k)
            if arrival is None:
                continue
            at = sent + max(arrival - pings[k], 1e-6)
            if any(since <= at < until for since, until in downs):
                continue
            # the ping index rides in the number slot until categories are known
            out.append((at, _ORDER[Op.PONG], (Op.PONG, at, heart, float(j), 0.0, record.key)))
    out.sort(key=lambda item: (item[0], item[1]))
    result: list[Event] = []
    now_ping = 0
    for _, _, event in out:
        if event[0] == Op.BEAT:
            now_ping += 1
        elif event[0] == Op.PONG:
            lag = now_ping - int(event[3])
            echoed = CURRENT if lag == 0 else PREVIOUS if lag == 1 else OTHER
            event = (Op.PONG, event[1], event[2], float(echoed), 0.0, event[5])
        result.append(event)
    return result


# -- deaths ------------------------------------------------------------------------------------


def plan(
    events: Sequence[Event],
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
    a silence of its own)."""
    answers: dict[bytes, list[float]] = {}
    for op, at, heart, *_ in events:
        if op == Op.PONG and heart:
            answers.setdefault(heart, []).append(at)
    if not answers or not events:
        return []
    # where the load ends: when half the hearts had given their last answer (a recording that
    # ends as its cluster leaves must not have deaths that the leaving hides)
    ends = sorted(times[-1] for times in answers.values())
    start, end = events[0][1], min(events[-1][1], ends[len(ends) // 2])
    lo, hi = start + warmup, end - tail
    if hi <= lo:
        return []
    rng = random.Random(seed)
    names = sorted(answers)
    injections: list[Injection] = []
    used: set[bytes] = set()
    tries = 0
    while len(injections) < count and tries < 50 * count:
        tries += 1
        at = rng.uniform(lo, hi)
        heart = rng.choice(names)
        if heart in used and len(used) < len(names):
            continue
        times = answers[heart]
        i = bisect.bisect_left(times, at)
        if i == 0 or i == len(times) or at - times[i - 1] > within or times[i] - at > within:
            continue
        used.add(heart)
        kind = HANG if len(injections) % 2 == 0 else CRASH
        injections.append(Injection(heart, at, kind))
    injections.sort(key=lambda injection: injection.at)
    return injections


def inject(
    events: Sequence[Event], injections: Sequence[Injection]
) -> tuple[list[Event], list[Injection]]:
    """``events`` with the deaths of ``injections`` made (see the module's docstring); and the
    injections, each with the identity it killed (a heart killed twice dies the second time
    under the name of its first restart)."""
    pending = sorted(injections, key=lambda injection: injection.at)
    names: dict[bytes, bytes] = {}  # recorded heart -> the identity it answers under now
    real_fd: dict[bytes, int] = {}  # recorded heart -> the descriptor it answers on
    #: recorded heart -> (its descriptor when it was killed, its restart's made-up one)
    moved: dict[bytes, tuple[int, int]] = {}
    restarts: dict[bytes, int] = {}
    made: list[Injection] = []
    out: list[Event] = []
    fresh = _FAKE_FD
    i = 0
    for event in events:
        op, at, heart = event[0], event[1], event[2]
        while i < len(pending) and pending[i].at <= at:
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
                    out.append((Op.CLOSED, injection.at, None, float(dead), 0.0, None))
            fresh += 1
            out.append((Op.ACCEPTED, injection.at, None, float(fresh), 0.0, None))
            out.append((Op.ANSWERED, injection.at, names[recorded], float(fresh), 0.0, None))
            moved[recorded] = (fd if fd is not None else -1, fresh)
        if op == Op.ANSWERED and heart is not None:
            real_fd[heart] = int(event[3])
            if heart in moved:
                if moved[heart][0] == int(event[3]):
                    continue  # the restart is on a connection of its own
                del moved[heart]  # it reconnected: the restart takes the new connection
        elif op == Op.CLOSED:
            for recorded, (fd, fake) in list(moved.items()):
                if fd == int(event[3]):  # the restart dies with the connection it stands for
                    out.append((Op.CLOSED, at, None, float(fake), 0.0, None))
                    del moved[recorded]
        if heart is not None and heart in names:
            event = (op, at, names[heart], event[3], event[4], event[5])
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
        if not self.times:
            return None
        ordered = sorted(self.times)
        return ordered[len(ordered) // 2]


def detections(outcome: Outcome, made: Sequence[Injection], kind: str) -> Detection:
    """How long after each death of ``kind`` in ``made`` the replay failed its identity."""
    failed_at: dict[bytes, list[float]] = {}
    for failure in outcome.failures:
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

"""Whether a beat may judge the hearts: the catch-up before it, and the verdict.

Before a beat charges anyone a miss, the monitor reads the answers already queued on its
socket: they arrived in time, only the monitor was slow to read them (ipyparallel's
``flush()`` before a beat is the same idea). How much to read is decided here, fed with
counts only, so that the rule can be tested without a socket:

1. Read up to ``2 * hearts + batch`` messages. ZeroMQ's ROUTER queues fairly across
   connections, so within that many every heart's answers have been read. If fewer were
   queued, the monitor has caught up.
2. Otherwise what is left is either more answers (the monitor is *behind*: judging now would
   blame hearts whose answers sit unread) or one peer's flood of repeats and garbage (which
   must not stop the monitor judging). One more batch tells which: if it brought no new
   answer, what is left is the flood.

A beat that came late (see :mod:`~greenheart.core.schedule`) is judged by why it came late.
A *busy* hub (Python computing without yielding) is not a paused process: ZeroMQ's I/O
thread keeps reading while Python computes, so every answer that arrived is queued and
read by the catch-up, and the late beat judges as any other. Only when the whole process
was paused (SIGSTOP, a VM pause) or blocked in a call may answers still sit in the kernel,
unread: such a beat is a *stall*, and judges nobody (Cassandra's rule for its own pauses,
MAX_LOCAL_PAUSE, applied per beat). The two are told apart by the CPU time the monitor's
own thread spent since the beat before: a busy hub spent nearly all of it computing, a
paused or blocked one almost none. :class:`Pace` is fed both clocks at every beat and says
which (:class:`Lateness`); :func:`verdict` then says what the beat may do.
"""

from __future__ import annotations

import enum

import attrs

from greenheart.core.checks import COUNT

#: messages read per batch: by the pong greenlet between yields, and by the catch-up's check
PONG_BATCH = 256

#: seconds the pong greenlet lets answers gather after a drain that emptied the queue, before
#: it looks again. A reader that wakes for every few answers pays ZeroMQ's signalling for each
#: (its I/O thread writes an eventfd, the reader polls and reads it, epoll wakes the hub):
#: with 4,000 hearts at 60 ms, a millisecond cuts the monitor's system calls from five a pong
#: to two (one is the kernel's read of the connection) and its CPU per pong by about a tenth.
#: A round trip is then read at most this much late; the beat is not delayed, and what it
#: judges is unchanged, since it reads everything queued first.
GATHER_SECONDS = 0.001


def gather_seconds(period: float) -> float:
    """How long the pong greenlet lets answers gather, for a ``period`` in seconds: at most
    :data:`GATHER_SECONDS`, and at most a hundredth of the period."""
    return min(GATHER_SECONDS, period / 100)


#: a late beat whose thread computed for less than this share of the time since the beat
#: before was paused or blocked, not busy
BUSY_SHARE = 0.5


class Lateness(enum.Enum):
    """Why a beat came when it did (:mod:`~greenheart.core.schedule` says whether it was late)."""

    #: on its grid time, or nearly
    ON_TIME = "on_time"
    #: late, the monitor's thread computing: what arrived meanwhile is queued, and readable
    BUSY = "busy"
    #: late, the process paused or blocked: answers may still sit unread in the kernel
    STALLED = "stalled"


class Verdict(enum.Enum):
    """What a beat may do with the hearts that did not answer."""

    #: charge them a miss
    JUDGE = "judge"
    #: nothing: the beat came late from a paused process, and answers may still be unread
    STALLED = "stalled"
    #: nothing: answers were still queued after the catch-up
    BEHIND = "behind"


@attrs.frozen
class Lap:
    """What the time since the beat before says of this one."""

    lateness: Lateness
    #: the share of that time the monitor's thread computed; None if no time passed
    cpu_share: float | None


#: a beat taken by hand (:meth:`HeartMonitor.beat <greenheart.HeartMonitor.beat>`), measured by
#: nobody: judged by what it reads
BY_HAND = Lap(Lateness.ON_TIME, None)


@attrs.define
class Pace:
    """The real time and the CPU time of the monitor's thread at the beat before, fed by the
    driver at every beat (:meth:`lap`)."""

    #: real time, and the thread's CPU time, in seconds
    since: float
    cpu: float

    def lap(self, *, late: bool, now: float, cpu: float) -> Lap:
        """A beat at ``now``, the thread having used ``cpu`` seconds of CPU in all, that came
        ``late`` or not: why, and the share of the time since the beat before the thread
        computed. Handlers' time counts, since a late beat's cause may be in them."""
        elapsed, used = now - self.since, cpu - self.cpu
        self.since, self.cpu = now, cpu
        if not late:
            lateness = Lateness.ON_TIME
        elif used < BUSY_SHARE * elapsed:
            lateness = Lateness.STALLED
        else:
            lateness = Lateness.BUSY
        return Lap(lateness, used / elapsed if elapsed > 0 else None)


def verdict(lateness: Lateness, *, caught_up: bool) -> Verdict:
    """The verdict of a beat that came as ``lateness`` says, and that did (or did not) catch
    up with what was queued."""
    if lateness is Lateness.STALLED:
        return Verdict.STALLED
    if not caught_up:
        return Verdict.BEHIND
    return Verdict.JUDGE


@attrs.define
class CatchUp:
    """The reads of one beat's catch-up, decided one batch at a time.

    The driver asks :meth:`wanted` how many messages to read without waiting, reads them,
    and reports with :meth:`read`, until :meth:`wanted` says 0; then :attr:`caught_up` is
    the answer.
    """

    #: hearts known at the beat
    hearts: int = attrs.field(validator=COUNT)
    batch: int = attrs.field(default=PONG_BATCH, validator=[COUNT, attrs.validators.gt(0)])
    #: None until decided; then whether every answer queued at the beat has been read
    caught_up: bool | None = attrs.field(default=None, init=False)
    _answers_before_check: int | None = attrs.field(default=None, init=False)

    @property
    def limit(self) -> int:
        """The most messages the first read takes: enough for every heart's answers."""
        return 2 * self.hearts + self.batch

    def wanted(self) -> int:
        """How many messages to read now; 0 once :attr:`caught_up` is decided."""
        if self.caught_up is not None:
            return 0
        return self.limit if self._answers_before_check is None else self.batch

    def read(self, count: int, answers: int) -> None:
        """``count`` messages were read of the :meth:`wanted` ones, and the round now holds
        ``answers`` answers."""
        asked = self.wanted()
        if not 0 <= count <= asked:
            raise ValueError(f"read {count} messages of the {asked} wanted")
        if self._answers_before_check is not None:
            # the check: a batch with a new answer in it means answers are still coming in
            self.caught_up = answers == self._answers_before_check
        elif count < asked:
            self.caught_up = True  # the queue ran dry
        else:
            self._answers_before_check = answers

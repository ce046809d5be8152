"""Events a subscriber can trust: numbered, kept for a while, and followed without a gap.

The ZeroMQ guide's Clone pattern, for the monitor's event stream
(:mod:`greenheart.integrations.events`). Every event carries ``seq``, one more than the event
before; a stream keeps its latest events in a :class:`Tail`. A subscriber starts from a
snapshot stamped with the ``seq`` it reflects, and a :class:`Follower` tells it, for each
event that arrives, whether to deliver it, skip it (the snapshot or a catch-up already had
it), or catch up first: a gap means events were lost (a slow subscriber, a reconnection), and
the tail gives them back, or a fresh snapshot when it no longer reaches back.

Where a restarted stream starts is :func:`resume_seq`'s decision: one more than the last
``seq`` it published, when a mark kept that number (continuous across the restart); when
nothing did, the Unix time in microseconds (:func:`first_seq`), which no earlier stream
reached while the clock did not step back and it published fewer than a million events a
second.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Sequence

import attrs

#: events a stream keeps for subscribers catching up
TAIL = 10_000


def first_seq(unix_time: float) -> int:
    """The ``seq`` before a new stream's first event."""
    return int(unix_time * 1_000_000)


def resume_seq(mark: int | None, saved: int | None, unix_time: float) -> int:
    """The ``seq`` before the first event of a stream that starts at ``unix_time``.

    ``mark`` is the last ``seq`` a stream before it published, if a mark written before each
    event survived (a process killed at any instant leaves it, the last number it used);
    ``saved``, the last ``seq`` whose event was saved (its tail, behind the mark by what was
    not written yet). With a mark the stream goes on from it; without one, nothing says how
    far a stream before it went past ``saved``, so it jumps to the clock."""
    if mark is not None:
        return max(mark, saved or 0)
    return max(first_seq(unix_time), saved or 0)


@attrs.define
class Tail:
    """The latest events, by ``seq``: each a sequence of frames."""

    limit: int = TAIL
    _events: collections.deque[tuple[int, Sequence[bytes]]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._events = collections.deque(maxlen=self.limit)

    def add(self, seq: int, frames: Sequence[bytes]) -> None:
        self._events.append((seq, frames))

    def since(self, seq: int, now: int) -> list[Sequence[bytes]] | None:
        """The events after ``seq`` up to ``now`` (the latest), in order; None if the tail no
        longer reaches back to the one after ``seq`` (or ``seq`` is not one this stream
        made)."""
        if seq >= now:
            return [] if seq == now else None
        if not self._events or self._events[0][0] > seq + 1:
            return None
        return [frames for number, frames in self._events if number > seq]


class Step(enum.Enum):
    """What a follower does with an event."""

    DELIVER = "deliver"
    #: already delivered, or reflected by the snapshot
    SKIP = "skip"
    #: events before it were lost: catch up first
    CATCH_UP = "catch up"


@attrs.define
class Follower:
    """Where a subscriber is: the ``seq`` of the last event it has (or its snapshot's)."""

    last: int

    def step(self, seq: int) -> Step:
        if seq <= self.last:
            return Step.SKIP
        if seq > self.last + 1:
            return Step.CATCH_UP
        return Step.DELIVER

    def delivered(self, seq: int) -> None:
        self.last = max(self.last, seq)

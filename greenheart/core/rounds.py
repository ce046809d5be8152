"""Rounds: the pings in flight, and which answers each has had.

A *round* runs from one beat to the next, opened by the ping published for it. An answer
echoes one of three pings, as :meth:`Rounds.echo_of` says (:class:`Echo`):

* the current round's ping: **on time**;
* the previous round's: **late**; the heart is alive, only slow, so it counts as an answer
  to the current round too, measured from the ping it echoes;
* the next round's, published ahead of the beat that closes this one (:meth:`Rounds.publish`:
  a monitor publishes on its grid time, then reads what is still queued, then closes the
  round): on time, for the round it opened;

and anything else is **stale**. A heart's second answer to the same ping is a **repeat**,
counted but not measured, so that a peer echoing in a loop cannot grow a round.
:meth:`Rounds.close` moves everything on by one round. Nothing here knows which hearts are
known: that is the ledger's (:mod:`greenheart.core.ledger`).
"""

from __future__ import annotations

import enum
import math

import attrs

from greenheart.core.values import PongKind
from greenheart.core.wire import encode_ping


class Echo(enum.IntEnum):
    """Which ping an answer echoes (a recording keeps these numbers)."""

    CURRENT = 0
    PREVIOUS = 1
    #: the next round's, published before the current one closed
    UPCOMING = 2
    #: none of them
    OTHER = 3


#: where an echo of no ping goes: nowhere (never written to)
_NOWHERE: dict[bytes, float] = {}


@attrs.define(slots=True)
class _Upcoming:
    """The next round, from the moment its ping was published until the current one closes."""

    ping: bytes
    tic: float
    lifetime: float
    #: heart -> round trip, for the answers to this ping read before the round opened
    on_time: dict[bytes, float] = attrs.field(factory=dict)


@attrs.define
class Rounds:
    """The current round, the one before it, and the next one once its ping is out; times on
    the caller's clock."""

    #: when the current ping was sent
    tic: float
    #: seconds of beating, as of the current ping (IPython.parallel's ``lifetime``)
    lifetime: float = attrs.field(default=0.0, init=False)
    #: ``lifetime`` as of the previous ping
    last_ping: float = attrs.field(default=0.0, init=False)
    #: the payload of the current ping
    ping: bytes = attrs.field(init=False)
    previous_ping: bytes | None = attrs.field(default=None, init=False)
    previous_tic: float = attrs.field(default=0.0, init=False)
    #: heart -> round trip, for the answers to the current ping
    on_time: dict[bytes, float] = attrs.field(factory=dict, init=False)
    #: heart -> round trip, for the answers to the previous ping
    late: dict[bytes, float] = attrs.field(factory=dict, init=False)
    #: repeated, spoofed, stale and malformed pongs in this round
    bad: int = attrs.field(default=0, init=False)
    _upcoming: _Upcoming | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.ping = encode_ping(self.lifetime)

    @property
    def responses(self) -> set[bytes]:
        """The hearts that answered in this round (on time or late)."""
        return self.on_time.keys() | self.late.keys()

    @property
    def answer_count(self) -> int:
        """Answers in this round, on time or late (repeats excluded)."""
        return len(self.on_time) + len(self.late)

    @property
    def early_count(self) -> int:
        """Answers to the next round's ping, read before it opened."""
        return len(self._upcoming.on_time) if self._upcoming is not None else 0

    @property
    def published(self) -> bool:
        """Whether the next round's ping is out (the round closes at the beat)."""
        return self._upcoming is not None

    def publish(self, now: float) -> bytes:
        """Open the next round at ``now``, before the current one closes: the payload of its
        ping. Publishing twice before :meth:`close` opens it once."""
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

    def echo_of(self, payload: bytes) -> Echo:
        """Which ping ``payload`` echoes."""
        if payload == self.ping:
            return Echo.CURRENT
        if payload == self.previous_ping:
            return Echo.PREVIOUS
        if self._upcoming is not None and payload == self._upcoming.ping:
            return Echo.UPCOMING
        return Echo.OTHER

    def _target(self, echo: Echo) -> tuple[dict[bytes, float], float, dict[bytes, float] | None]:
        """Where answers echoing ``echo`` go: the dict, the tic of their ping, and the dict a heart
        must not be in already (an on-time answer makes a late one a repeat); a dict of none
        (nowhere) for an echo of no ping."""
        if echo is Echo.CURRENT:
            return self.on_time, self.tic, None
        if echo is Echo.PREVIOUS and self.previous_ping is not None:
            return self.late, self.previous_tic, self.on_time
        if echo is Echo.UPCOMING and self._upcoming is not None:
            return self._upcoming.on_time, self._upcoming.tic, None
        return _NOWHERE, 0.0, None

    def heard(self, heart: bytes, echo: Echo, now: float) -> tuple[PongKind, float | None]:
        """A pong from ``heart`` echoing ``echo``, read at ``now``: its kind, and its round trip
        if it is an answer (on time or late; a repeat, or an echo of no ping, is not)."""
        target, sent, taken = self._target(echo)
        if target is _NOWHERE:
            return PongKind.STALE, None
        if heart in target or (taken is not None and heart in taken):
            return PongKind.REPEAT, None
        rtt = target[heart] = now - sent
        return (PongKind.LATE if taken is not None else PongKind.ON_TIME), rtt

    def heard_all(self, hearts: list[bytes], echo: Echo, now: float) -> bool:
        """``hearts``' pongs echoing ``echo``, all read at ``now``, taken at once if every one is
        a heart's first answer to that ping (the common case, a few set and dict operations in
        C); False, taking none, if any is not."""
        target, sent, taken = self._target(echo)
        unique = set(hearts)
        if (
            target is _NOWHERE
            or len(unique) != len(hearts)
            or b"" in unique
            or not target.keys().isdisjoint(unique)
            or (taken is not None and not taken.keys().isdisjoint(unique))
        ):
            return False
        target.update(dict.fromkeys(hearts, now - sent))
        return True

    def drop(self, heart: bytes) -> tuple[int, int]:
        """Take back ``heart``'s answers (it failed between beats, so it must not be taken for
        a new heart at the beat): how many were on time and late."""
        on_time = (self.on_time.pop(heart, None) is not None) + (
            self._upcoming is not None and self._upcoming.on_time.pop(heart, None) is not None
        )
        return on_time, int(self.late.pop(heart, None) is not None)

    def arrival(self, heart: bytes) -> float | None:
        """When ``heart``'s answer of this round arrived (its on-time one, if both)."""
        rtt = self.on_time.get(heart)
        if rtt is not None:
            return self.tic + rtt
        rtt = self.late.get(heart)
        return None if rtt is None else self.previous_tic + rtt

    def close(self) -> None:
        """Close the current round: the published one is current now, its early answers its
        own. :meth:`publish` must have been called."""
        upcoming = self._upcoming
        if upcoming is None:
            raise RuntimeError("a round closes only once the next one is published")
        self.previous_ping, self.previous_tic = self.ping, self.tic
        self.last_ping = self.lifetime
        self.lifetime, self.ping, self.tic = upcoming.lifetime, upcoming.ping, upcoming.tic
        self.on_time, self.late, self.bad = upcoming.on_time, {}, 0
        self._upcoming = None

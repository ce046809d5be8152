"""The ledger's inputs, as values: what it was fed, so that it can be fed the same again.

The ledger is a pure state machine, so what it decided is a function of what it was fed.
Each of its inputs has a class here, as h11's events have theirs. A ledger observed
(:meth:`Ledger.observe <greenheart.core.ledger.Ledger.observe>`) hands each input it takes to
its observer as one of these; a recording (:mod:`greenheart.core.recording`) writes them down
and reads them back; a replay (:mod:`greenheart.core.replay`) feeds them to a ledger under
other rules. An answer is kept by which ping it echoed (:class:`~greenheart.core.rounds.Echo`),
not by its bytes: ping payloads are a function of the ping times, so a replay publishes the
same pings, and an answer means the same thing. Times are on the monitor's clock, in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import attrs

from greenheart.core.rounds import Echo, Rounds


@attrs.frozen
class Started:
    """A new ledger, its first round opening at ``at``."""

    at: float


@attrs.frozen
class RoundOpened:
    """The next round's ping was published (:meth:`Ledger.publish
    <greenheart.core.ledger.Ledger.publish>`)."""

    at: float


@attrs.frozen
class RoundClosed:
    """A beat closed the round (:meth:`Ledger.beat <greenheart.core.ledger.Ledger.beat>`)."""

    at: float
    judged: bool = True
    #: how late the beat came, in seconds
    lag: float = 0.0
    #: the share of the time since the beat before that the driver's thread computed
    cpu_share: float | None = None


@attrs.frozen
class Echoed:
    """A pong from ``heart``, echoing ``echo``, sent with ``key`` (None without CURVE)."""

    at: float
    heart: bytes
    echo: Echo
    key: object = None


@attrs.frozen
class Stale:
    """A pong from ``heart`` that came in on a connection already closed."""

    at: float
    heart: bytes


@attrs.frozen
class Left:
    """``heart`` said it stops cleanly, on descriptor ``fd`` (-1: not known), with ``key``."""

    at: float
    heart: bytes
    fd: int = -1
    key: object = None


@attrs.frozen
class Malformed:
    """A message that was not a pong at all."""

    at: float


@attrs.frozen
class ConnectionAccepted:
    """A connection was accepted on descriptor ``fd``."""

    at: float
    fd: int


@attrs.frozen
class ConnectionTied:
    """``heart`` answered on descriptor ``fd``, which it was not tied to."""

    at: float
    heart: bytes
    fd: int


@attrs.frozen
class ConnectionClosed:
    """The connection on descriptor ``fd`` closed."""

    at: float
    fd: int


Input: TypeAlias = (
    Started
    | RoundOpened
    | RoundClosed
    | Echoed
    | Stale
    | Left
    | Malformed
    | ConnectionAccepted
    | ConnectionTied
    | ConnectionClosed
)


def opening(rounds: Rounds, key_of: Callable[[bytes], object]) -> list[Input]:
    """What brings a new ledger to ``rounds``, right after a beat: a :class:`Started`, then the
    answers already read (each with the key ``key_of`` its heart)."""
    if rounds.published or rounds.late or rounds.bad:
        raise RuntimeError("a ledger is observed from a round's start, right after a beat")
    answers = rounds.on_time.items()
    return [
        Started(rounds.tic),
        *(Echoed(rounds.tic + rtt, heart, Echo.CURRENT, key_of(heart)) for heart, rtt in answers),
    ]

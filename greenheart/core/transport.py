"""Transport liveness: how the monitor learns that a heart's host is gone when no FIN comes.

A process that dies has its kernel close its connections at once, and the monitor hears of it
in milliseconds. A host that vanishes (power lost, a cable cut, a partition) sends nothing:
without more, the monitor would hold its connections, and their descriptors, for ever (the
pong side is idle from the monitor's side) or for the ~15 minutes of retransmissions the
kernel allows its pings. :class:`Keepalive` asks the kernel to close such a connection
within a bound: TCP keepalive probes a connection idle for :attr:`Keepalive.idle` seconds,
and ``TCP_USER_TIMEOUT`` (libzmq's ``ZMQ_TCP_MAXRT`` on Linux) aborts it once nothing, not
even an acknowledgement, has come from the peer for :attr:`Keepalive.timeout` seconds, pings
in flight or not.

TCP keepalive, not ZeroMQ's own heartbeats, because the peer's *kernel* answers it: a
stopped or hung process keeps its connections (it is hung, not unreachable), a live heart's
connections carry pings and pongs so no probe is ever sent (no cost per pong), and CURVE
carries no extra frames. ZeroMQ's heartbeats are answered by the peer's libzmq thread, so a
SIGSTOPped heart would look like a lost host.

Since ZeroMQ's socket events do not say why a connection closed, a close is told a timeout by
its time: the kernel aborts a connection between ``timeout`` and :attr:`Keepalive.bound`
seconds after the peer's last word, and a heart's last word is its last answer. A heart that
hung that long and was then killed inside that window is taken for unreachable too.
"""

from __future__ import annotations

import math

import attrs

#: seconds by default: a vanished host's connections are closed within this (and one probe
#: interval), on the ping side as on the pong side
DEFAULT_TRANSPORT_TIMEOUT = 30.0

#: the shortest timeout: keepalive counts whole seconds, and probes need a few of them
MIN_TRANSPORT_TIMEOUT = 3.0

#: seconds either side of the window in which a close is taken for a timeout: what a last
#: answer may lag its packet, and the kernel its timer
SLACK = 1.0


def _at_least_min(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not MIN_TRANSPORT_TIMEOUT <= value < math.inf:
        raise ValueError(
            f"a transport timeout must be at least {MIN_TRANSPORT_TIMEOUT:g} s, not {value!r}"
        )


@attrs.frozen
class Keepalive:
    """The kernel's watch on a connection whose peer stopped answering: ``timeout`` seconds."""

    timeout: float = attrs.field(
        default=DEFAULT_TRANSPORT_TIMEOUT, converter=float, validator=_at_least_min
    )

    @property
    def idle(self) -> int:
        """Seconds a connection is idle before the first probe."""
        return max(1, int(self.timeout // 3))

    @property
    def interval(self) -> int:
        """Seconds between probes."""
        return max(1, int(self.timeout // 10))

    @property
    def count(self) -> int:
        """Probes unanswered before the kernel gives up, were there no user timeout."""
        return math.ceil((self.timeout - self.idle) / self.interval) + 1

    @property
    def user_timeout_ms(self) -> int:
        """``TCP_USER_TIMEOUT``: what closes the connection, in ms."""
        return round(self.timeout * 1000)

    @property
    def bound(self) -> float:
        """The most seconds after a peer's last word that its connection stays open: the
        kernel checks at each probe."""
        return self.timeout + self.interval

    def timed_out(self, silence: float | None) -> bool:
        """Whether a connection that closed ``silence`` seconds after its heart's last answer
        (None: it never answered) closed because it timed out, not because its peer closed
        it."""
        if silence is None:
            return False
        return self.timeout - SLACK <= silence <= self.bound + SLACK


def keepalive_for(timeout: float | None) -> Keepalive | None:
    """The keepalive for a timeout of ``timeout`` seconds; None (or 0) for none."""
    return Keepalive(timeout) if timeout else None

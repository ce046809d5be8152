"""When a monitor's process is out of file descriptors, refuse new connections until the
storm that took them is over.

Every connection costs a descriptor. When a storm of connections takes the last one, the
kernel still completes TCP handshakes into the listening socket's queue, libzmq's ``accept``
fails with EMFILE, the listener stays readable, and ZeroMQ's I/O thread spins on it, a whole
core, until descriptors are free again. Meanwhile no heart can connect anyway.

So the monitor looks at its descriptors a few times a second. Once none is free it *refuses*
connections: its driver makes the listening sockets drop new ones, which keeps every
connection already made, hearts included, and counts the packets they dropped. It admits
connections again once ``headroom`` descriptors are free and the storm is over: over the last
``min_seconds`` the listeners dropped fewer than ``calm`` packets a second. At that rate the
connections an admission lets in give their descriptors back (a monitor's bind() hangs up on
a peer that has not finished its handshake within :data:`HANDSHAKE_SECONDS`) as fast as they
take them, so they cannot run the process out again; a faster storm stays refused, however
long it lasts, instead of being let in wave after wave. Hearts that tried to connect while
connections were refused are let in at their next SYN (TCP retries 1, 3 and 7 s after the
first). :class:`Refusal` is that decision, fed counts and times.

The monitor's other servers (its page, its metrics, its event stream) must never take the
hearts' descriptors in the first place: each holds at most a small share of the open-file
limit (:func:`connection_cap`), and refuses the connections beyond it. :class:`ConnectionCap`
is that rule, fed the connections opened and closed.
"""

from __future__ import annotations

import collections
import enum

import attrs

from greenheart.core.checks import COUNT

#: descriptors that must be free before connections are let in again, at least, and as a
#: share of the open-file limit: the wave of retries an admission lets in is as large as the
#: listen backlog (4,096 for a monitor's bind()), and a wave that does not fit takes every
#: descriptor again
HEADROOM = 64
HEADROOM_SHARE = 0.25


def headroom(limit: int) -> int:
    """The descriptors that must be free under an open-file limit of ``limit``."""
    return max(HEADROOM, int(limit * HEADROOM_SHARE))


#: seconds a peer that connected has to finish ZeroMQ's handshake before a monitor's bind()
#: hangs up on it (libzmq's default is 30 s: a port scanner would hold a descriptor as long)
HANDSHAKE_SECONDS = 5.0

#: seconds a refusal lasts at least, over which the storm's rate is measured
MIN_SECONDS = 1.0


class Change(enum.Enum):
    REFUSE = "refuse"
    ADMIT = "admit"


@attrs.define
class Refusal:
    """Whether new connections are refused, from looks at how many descriptors are free and
    how many packets the refusing listeners dropped."""

    headroom: int = attrs.field(default=HEADROOM, validator=[COUNT, attrs.validators.gt(0)])
    min_seconds: float = attrs.field(default=MIN_SECONDS, validator=attrs.validators.gt(0))
    #: packets a second the listeners may drop for the storm to count as over; by default
    #: the rate whose connections, each held HANDSHAKE_SECONDS, fit in the headroom
    calm: float = attrs.field(validator=attrs.validators.ge(0))
    #: when the refusal under way began; None while connections are admitted
    since: float | None = attrs.field(default=None, init=False)
    #: refusals begun, and the seconds the ended ones lasted
    refusals: int = attrs.field(default=0, init=False)
    seconds: float = attrs.field(default=0.0, init=False)
    #: (time, packets dropped) of the looks of the last min_seconds of a refusal, and the one
    #: before them
    _looks: collections.deque[tuple[float, int]] = attrs.field(
        factory=collections.deque, init=False
    )

    @calm.default
    def _calm(self) -> float:
        return self.headroom / HANDSHAKE_SECONDS

    @property
    def refusing(self) -> bool:
        return self.since is not None

    def wanted(self) -> int:
        """How many free descriptors the next look needs to count up to: one while admitting
        (is any free?), ``headroom`` while refusing (are enough free?)."""
        return self.headroom if self.refusing else 1

    def drop_rate(self) -> float | None:
        """Packets a second the listeners dropped over the last ``min_seconds`` or more of the
        refusal under way; None before it lasted that long."""
        if len(self._looks) < 2:
            return None
        (first, dropped_first), (last, dropped_last) = self._looks[0], self._looks[-1]
        if last - first < self.min_seconds:
            return None
        return (dropped_last - dropped_first) / (last - first)

    def look(self, *, free: int, dropped: int, now: float) -> Change | None:
        """``free`` descriptors were free at ``now`` (counted up to :meth:`wanted`) and the
        listeners had dropped ``dropped`` packets in all: the change to make, if any."""
        if self.since is None:
            if free > 0:
                return None
            self.since = now
            self.refusals += 1
            self._looks.clear()
            self._looks.append((now, dropped))
            return Change.REFUSE
        self._looks.append((now, dropped))
        while len(self._looks) > 2 and now - self._looks[1][0] >= self.min_seconds:
            self._looks.popleft()
        rate = self.drop_rate()
        if free >= self.headroom and rate is not None and rate < self.calm:
            self.seconds += now - self.since
            self.since = None
            return Change.ADMIT
        return None


# -- a cap on the connections of a server that is not the hearts' --------------------------------

#: the share of the open-file limit each of the monitor's other servers may hold as connections,
#: by default, and the least and the most: a page's audience is a few browsers (six connections
#: each at most) and a scraper, so 1,000 is hundreds of viewers; three servers at 5% leave the
#: hearts 85% of the descriptors, more than the refusal's headroom needs
CAP_SHARE = 0.05
CAP_LEAST = 16
CAP_MOST = 1000

#: seconds a connection has, from its accept, to send a request's head (its request line and
#: headers) whole: a browser or a scraper sends it in one packet, and on any network within a
#: second; a peer that holds a connection open with half a request (slowloris) holds it this long
REQUEST_SECONDS = 10.0

#: seconds a kept-alive connection may wait for its next request: the page polls at least every
#: 2 s, so it keeps its connection; a scraper at Prometheus' usual 15 s keeps its own too
IDLE_SECONDS = 30.0


def connection_cap(limit: int) -> int:
    """The connections one of the monitor's other servers holds at most, by default, under an
    open-file limit of ``limit``."""
    return min(CAP_MOST, max(CAP_LEAST, int(limit * CAP_SHARE)))


@attrs.define
class ConnectionCap:
    """At most ``most`` connections at once, from the connections opened and closed.

    An HTTP server asks :meth:`admit` of each connection it accepts, and closes at once the
    ones it refuses. A ZeroMQ listener cannot refuse one connection: it is told each one
    :meth:`opened` and :meth:`closed`, and stops taking new ones (:data:`Change.REFUSE`) while
    the cap is full, until one closes (:data:`Change.ADMIT`); connections that were already
    queued may take it past ``most``."""

    most: int = attrs.field(validator=[COUNT, attrs.validators.gt(0)])
    #: connections held now
    open: int = attrs.field(default=0, init=False)
    #: connections refused at the cap (by :meth:`admit`)
    refused: int = attrs.field(default=0, init=False)
    #: times the cap filled
    refusals: int = attrs.field(default=0, init=False)

    @property
    def full(self) -> bool:
        return self.open >= self.most

    def admit(self) -> bool:
        """A connection came: whether it is held (and counted open) or refused."""
        if self.full:
            self.refused += 1
            return False
        self.opened()
        return True

    def opened(self) -> Change | None:
        """A connection was taken: :data:`Change.REFUSE` if it filled the cap."""
        self.open += 1
        if self.open == self.most:
            self.refusals += 1
            return Change.REFUSE
        return None

    def closed(self) -> Change | None:
        """A connection held closed: :data:`Change.ADMIT` if that made room."""
        if self.open == 0:
            return None
        self.open -= 1
        return Change.ADMIT if self.open == self.most - 1 else None

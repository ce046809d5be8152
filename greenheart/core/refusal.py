"""When a monitor's process is out of file descriptors, refuse new connections for a while.

Every connection costs a descriptor. When a storm of connections takes the last one, the
kernel still completes TCP handshakes into the listening socket's queue, libzmq's ``accept``
fails with EMFILE, the listener stays readable, and ZeroMQ's I/O thread spins on it, a whole
core, until descriptors are free again. Meanwhile no heart can connect anyway.

So the monitor looks at its descriptors a few times a second. Once none is free it *refuses*
connections (its driver makes the listening sockets drop new ones, which keeps every
connection already made, hearts included), and it admits them again once ``headroom``
descriptors are free and it has refused for a while. A storm's peers retry, as TCP does, and
each admission lets a wave of them in that can take every descriptor again; so the while
starts at ``min_seconds`` and doubles (up to ``max_seconds``) each time a refusal begins
within ``quiet`` seconds of the last admission. A lone burst keeps new hearts out for a few
seconds; a storm that goes on is let in ever more rarely. :class:`Refusal` is that decision,
fed counts and times.
"""

from __future__ import annotations

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


#: seconds a refusal lasts at least, the first time and at most. The first outlasts the
#: handshakes of the connections that took the descriptors (a monitor's bind() hangs up on one
#: after 5 s) and a burst's first retries, which TCP makes 1 and 3 s after a dropped SYN.
MIN_SECONDS = 5.0
MAX_SECONDS = 40.0

#: seconds after an admission within which a new refusal lasts twice as long as the last
QUIET = 30.0


class Change(enum.Enum):
    REFUSE = "refuse"
    ADMIT = "admit"


@attrs.define
class Refusal:
    """Whether new connections are refused, from looks at how many descriptors are free."""

    headroom: int = attrs.field(default=HEADROOM, validator=[COUNT, attrs.validators.gt(0)])
    min_seconds: float = attrs.field(default=MIN_SECONDS, validator=attrs.validators.ge(0))
    max_seconds: float = attrs.field(default=MAX_SECONDS, validator=attrs.validators.ge(0))
    quiet: float = attrs.field(default=QUIET, validator=attrs.validators.ge(0))
    #: when the refusal under way began; None while connections are admitted
    since: float | None = attrs.field(default=None, init=False)
    #: how long the refusal under way lasts at least
    lasts: float = attrs.field(default=0.0, init=False)
    #: when connections were last admitted again, after a refusal
    admitted: float | None = attrs.field(default=None, init=False)
    #: refusals begun, and the seconds the ended ones lasted
    refusals: int = attrs.field(default=0, init=False)
    seconds: float = attrs.field(default=0.0, init=False)

    @property
    def refusing(self) -> bool:
        return self.since is not None

    def wanted(self) -> int:
        """How many free descriptors the next look needs to count up to: one while admitting
        (is any free?), ``headroom`` while refusing (are enough free?)."""
        return self.headroom if self.refusing else 1

    def look(self, *, free: int, now: float) -> Change | None:
        """``free`` descriptors were free at ``now`` (counted up to :meth:`wanted`): the change
        to make, if any."""
        if self.since is None:
            if free > 0:
                return None
            again = self.admitted is not None and now - self.admitted < self.quiet
            self.lasts = min(self.max_seconds, 2 * self.lasts) if again else self.min_seconds
            self.since = now
            self.refusals += 1
            return Change.REFUSE
        if free >= self.headroom and now - self.since >= self.lasts:
            self.seconds += now - self.since
            self.since, self.admitted = None, now
            return Change.ADMIT
        return None

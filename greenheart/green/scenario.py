"""Playing a scenario: a timeline's cues carried out when they are due.

The pure :class:`~greenheart.core.timeline.Timeline` decides when and who; :func:`play` waits
for each cue in a greenlet and has a cast carry it out: a fleet's hearts (:class:`FleetCast`)
or simulated ipyparallel engines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import gevent

from greenheart.core.timeline import Cast, Hearts, Timeline

if TYPE_CHECKING:
    from greenheart.green.fleet import HeartFleet

log = logging.getLogger("greenheart.fleet")


@attrs.define
class FleetCast:
    """A fleet's hearts, as its scenario plays on them."""

    fleet: HeartFleet
    noun: str = "hearts"

    @property
    def alive(self) -> tuple[bytes, ...]:
        return self.fleet.alive

    @property
    def dead(self) -> tuple[bytes, ...]:
        return self.fleet.dead

    def kill(self, hearts: Hearts) -> None:
        self.fleet.kill(hearts)

    def revive(self, hearts: Hearts) -> None:
        self.fleet.revive(hearts)

    def replace(self, hearts: Hearts) -> None:
        self.fleet.replace(hearts)

    def silence(self, hearts: Hearts, silent: bool) -> None:
        # flappers were chosen at the start: churn may have taken some away since
        self.fleet.silence([heart for heart in hearts if heart in self.fleet.ids], silent)


def play(timeline: Timeline, clock: Callable[[], float], cast: Cast) -> None:
    """Have ``cast`` carry out the timeline's cues when they are due (a greenlet): the one
    scenario runner, for a fleet and for simulated engines alike."""
    started = clock()
    while (due := timeline.next_due()) is not None:
        delay = started + due - clock()
        if delay > 0:
            gevent.sleep(delay)
        while cue := timeline.pop_due(clock() - started, cast.alive, cast.dead):
            log.info("scenario: %s", cue.describe(cast.noun))
            cue.apply(cast)

"""A monitor that restarts remembers: the hearts it knew are awaited for a grace.

A monitor started on a saved state (:mod:`greenheart.green.state`) knows who was beating when
it stopped. Each of those hearts is *awaited*: known, so an answer does not make it new, and
charged no miss while it reconnects. One that answers within the grace *resumes*, its history
kept; one that does not is failed once, for not being seen since the monitor restarted, with
its last answer before the restart in its certificate.

The grace: a ``Heart`` or a fleet reconnects within ZeroMQ's reconnect interval (100 ms, or a
fleet's ``--reconnect-max``) and answers the first ping after that, and ipyparallel's engines
do the same, so three periods are enough; :data:`MIN_GRACE` covers a fleet backing off and a
restart that takes a few seconds to bind. The bound: a heart that died while the monitor was
down is failed within ``grace`` and one period of the restart.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

#: seconds a restarted monitor awaits the hearts it knew, at the least
MIN_GRACE = 10.0

#: periods a restarted monitor awaits them, when that is longer
GRACE_PERIODS = 3


def grace_for(period: float) -> float:
    """The grace, in seconds, of a monitor beating every ``period`` seconds."""
    return max(MIN_GRACE, GRACE_PERIODS * period)


@attrs.frozen
class Remembered:
    """A heart a stopped monitor knew: its identity, and when it last answered (on the
    restarted ledger's clock: in the past, before the restart)."""

    heart: bytes
    last_answer: float | None


@attrs.define
class Awaiting:
    """The remembered hearts not heard since the restart, until ``until``."""

    until: float
    _hearts: dict[bytes, Remembered] = attrs.field(factory=dict, alias="hearts")

    @classmethod
    def of(cls, remembered: Iterable[Remembered], now: float, grace: float) -> Awaiting:
        return cls(now + grace, {r.heart: r for r in remembered})

    def __contains__(self, heart: object) -> bool:
        return heart in self._hearts

    def __len__(self) -> int:
        return len(self._hearts)

    def discard(self, heart: bytes) -> None:
        """``heart`` failed before it was heard: no longer awaited."""
        self._hearts.pop(heart, None)

    def beat(
        self, answered: Iterable[bytes], now: float
    ) -> tuple[tuple[bytes, ...], list[Remembered]]:
        """A beat at ``now`` after ``answered`` answered: the awaited hearts among them, which
        resume, and once the grace has run out, those still awaited, which fail; in order."""
        resumed = sorted(heart for heart in answered if heart in self._hearts)
        for heart in resumed:
            del self._hearts[heart]
        gone = []
        if now >= self.until:
            gone = [self._hearts.pop(heart) for heart in sorted(self._hearts)]
        return tuple(resumed), gone

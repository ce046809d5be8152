"""A fleet's scenario as a timeline: which hearts die, come back, leave or fall silent, and when.

The scenario's events (:class:`~greenheart.core.behaviour.Die`,
:class:`~greenheart.core.behaviour.Revive`, :class:`~greenheart.core.behaviour.Churn`,
:class:`~greenheart.core.behaviour.Flap`) become actions at times counted in seconds from the
start of the fleet. The timeline decides everything (when, and which hearts, chosen by the
seed from the hearts alive or dead at that moment); the fleet only waits until
:meth:`Timeline.next_due` and carries out what :meth:`Timeline.pop_due` returns.

Victims of deaths and churn are drawn when their event comes, from the hearts then alive;
flapping hearts are drawn once, at the start. Revivals bring back the longest dead first.
Events due at the same time come in the order of the scenario.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Sequence

import attrs

from greenheart.core.behaviour import Churn, Die, Event, Revive

Hearts = tuple[bytes, ...]


@attrs.frozen
class KillHearts:
    """Close these hearts' connections, as if their processes died."""

    hearts: Hearts


@attrs.frozen
class ReviveHearts:
    """Bring these dead hearts back under their identities."""

    hearts: Hearts


@attrs.frozen
class ReplaceHearts:
    """These hearts leave the fleet, and as many new ones join."""

    hearts: Hearts


@attrs.frozen
class SilenceHearts:
    """These hearts stop answering (``silent``) or answer again, keeping their connections."""

    hearts: Hearts
    silent: bool


Action = KillHearts | ReviveHearts | ReplaceHearts | SilenceHearts


@attrs.define
class _Entry:
    event: Event
    #: for a flap: its hearts, and whether they go silent next
    flappers: Hearts = ()
    silent_next: bool = True


@attrs.define
class Timeline:
    """The scenario's actions still to come; times in seconds since the fleet started."""

    _chooser: random.Random
    _heap: list[tuple[float, int, _Entry]] = attrs.field(factory=list)
    _order: itertools.count[int] = attrs.field(factory=itertools.count)

    @classmethod
    def start(cls, scenario: Iterable[Event], seed: int, alive: Sequence[bytes]) -> Timeline:
        """The timeline of ``scenario`` for a fleet whose hearts ``alive`` have just started."""
        timeline = cls(random.Random(seed))
        for event in scenario:
            if isinstance(event, Die | Revive):
                timeline._at(event.at, _Entry(event))
            elif isinstance(event, Churn):
                timeline._at(event.every, _Entry(event))
            else:
                timeline._at(event.up, _Entry(event, timeline._choose(event.count, alive)))
        return timeline

    def next_due(self) -> float | None:
        """When the next action is due; None when there are no more."""
        return self._heap[0][0] if self._heap else None

    def pop_due(
        self, elapsed: float, alive: Sequence[bytes], dead: Sequence[bytes]
    ) -> Action | None:
        """The next action if it is due ``elapsed`` seconds after the start, chosen from the
        hearts ``alive`` and ``dead`` now (longest dead first); None if none is due yet."""
        if not self._heap or self._heap[0][0] > elapsed:
            return None
        when, _, entry = heapq.heappop(self._heap)
        event = entry.event
        if isinstance(event, Die):
            return KillHearts(self._choose(event.count, alive))
        if isinstance(event, Revive):
            return ReviveHearts(tuple(dead[: event.count]))
        if isinstance(event, Churn):
            self._at(when + event.every, entry)
            return ReplaceHearts(self._choose(event.count, alive))
        silent = entry.silent_next
        entry.silent_next = not silent
        self._at(when + (event.down if silent else event.up), entry)
        return SilenceHearts(entry.flappers, silent)

    def _at(self, when: float, entry: _Entry) -> None:
        heapq.heappush(self._heap, (when, next(self._order), entry))

    def _choose(self, count: int, alive: Sequence[bytes]) -> Hearts:
        return tuple(self._chooser.sample(list(alive), min(count, len(alive))))

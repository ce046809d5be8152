"""A fleet's scenario as a timeline: which hearts die, come back, leave or fall silent, and when.

The scenario's actions (:class:`~greenheart.core.behaviour.Die`,
:class:`~greenheart.core.behaviour.Revive`, :class:`~greenheart.core.behaviour.Churn`,
:class:`~greenheart.core.behaviour.Flap`) become cues at times counted in seconds from the
start of the fleet. The timeline decides everything (when, and which hearts, chosen by the
seed from the hearts alive or dead at that moment); the driver only waits until
:meth:`Timeline.next_due` and has each cue that :meth:`Timeline.pop_due` returns
:meth:`~KillHearts.apply` itself to its :class:`Cast` (a fleet's hearts, or simulated
engines).

Victims of deaths and churn are drawn when their action comes, from the hearts then alive;
flapping hearts are drawn once, at the start. Revivals bring back the longest dead first.
Actions due at the same time come in the order of the scenario.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from greenheart.core.behaviour import Action, Churn, Die, Revive

Hearts = tuple[bytes, ...]


class Cast(Protocol):
    """What a scenario plays on: the hearts alive and dead now, and what it does to them.
    ``noun`` names them in the log ("hearts", "engines")."""

    noun: str

    @property
    def alive(self) -> Sequence[bytes]: ...

    @property
    def dead(self) -> Sequence[bytes]: ...

    def kill(self, hearts: Hearts) -> None: ...

    def revive(self, hearts: Hearts) -> None: ...

    def replace(self, hearts: Hearts) -> None: ...

    def silence(self, hearts: Hearts, silent: bool) -> None: ...


@attrs.frozen
class KillHearts:
    """Close these hearts' connections, as if their processes died."""

    hearts: Hearts

    def apply(self, cast: Cast) -> None:
        cast.kill(self.hearts)

    def describe(self, noun: str) -> str:
        return f"{len(self.hearts)} {noun} die"


@attrs.frozen
class ReviveHearts:
    """Bring these dead hearts back under their identities."""

    hearts: Hearts

    def apply(self, cast: Cast) -> None:
        cast.revive(self.hearts)

    def describe(self, noun: str) -> str:
        return f"{len(self.hearts)} {noun} come back"


@attrs.frozen
class ReplaceHearts:
    """These hearts leave the fleet, and as many new ones join."""

    hearts: Hearts

    def apply(self, cast: Cast) -> None:
        cast.replace(self.hearts)

    def describe(self, noun: str) -> str:
        return f"churn, {len(self.hearts)} {noun} leave and as many join"


@attrs.frozen
class SilenceHearts:
    """These hearts stop answering (``silent``) or answer again, keeping their connections."""

    hearts: Hearts
    silent: bool

    def apply(self, cast: Cast) -> None:
        cast.silence(self.hearts, self.silent)

    def describe(self, noun: str) -> str:
        return f"{len(self.hearts)} flapping {noun} {'go silent' if self.silent else 'answer'}"


#: what the timeline has its cast do now: an action of the scenario, its hearts chosen
Cue = KillHearts | ReviveHearts | ReplaceHearts | SilenceHearts


@attrs.define
class _Entry:
    action: Action
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
    def start(cls, scenario: Iterable[Action], seed: int, alive: Sequence[bytes]) -> Timeline:
        """The timeline of ``scenario`` for a fleet whose hearts ``alive`` have just started."""
        timeline = cls(random.Random(seed))
        for action in scenario:
            if isinstance(action, Die | Revive):
                timeline._at(action.at, _Entry(action))
            elif isinstance(action, Churn):
                timeline._at(action.every, _Entry(action))
            else:
                timeline._at(action.up, _Entry(action, timeline._choose(action.count, alive)))
        return timeline

    def next_due(self) -> float | None:
        """When the next cue is due; None when there are no more."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, elapsed: float, alive: Sequence[bytes], dead: Sequence[bytes]) -> Cue | None:
        """The next cue if it is due ``elapsed`` seconds after the start, chosen from the
        hearts ``alive`` and ``dead`` now (longest dead first); None if none is due yet."""
        if not self._heap or self._heap[0][0] > elapsed:
            return None
        when, _, entry = heapq.heappop(self._heap)
        action = entry.action
        if isinstance(action, Die):
            return KillHearts(self._choose(action.count, alive))
        if isinstance(action, Revive):
            return ReviveHearts(tuple(dead[: action.count]))
        if isinstance(action, Churn):
            self._at(when + action.every, entry)
            return ReplaceHearts(self._choose(action.count, alive))
        silent = entry.silent_next
        entry.silent_next = not silent
        self._at(when + (action.down if silent else action.up), entry)
        return SilenceHearts(entry.flappers, silent)

    def _at(self, when: float, entry: _Entry) -> None:
        heapq.heappush(self._heap, (when, next(self._order), entry))

    def _choose(self, count: int, alive: Sequence[bytes]) -> Hearts:
        return tuple(self._chooser.sample(list(alive), min(count, len(alive))))

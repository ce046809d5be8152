"""Mass silence: when most hearts go quiet at once, the monitor suspects itself first.

One heart that stops answering has most likely stopped. Most of them stopping on the same
beat, their connections still up, is more likely the monitor's own corner of the world going
quiet: a storm of connections on its host, a brownout of its network, a fleet's machine
starved for a moment. Failing them all would unregister a whole cluster for the monitor's
trouble, as Kubernetes' node lifecycle controller refuses to evict when most of a zone goes
NotReady at once, and memberlist's Lifeguard slows its verdicts when its own health is poor.

So when a beat would fail more than ``share`` of the known hearts whose connections are up
(the hearts already held counting with them, and never fewer than ``min_hearts``), it fails
none of them: it holds them as *suspects*. A suspect that answers again is released, as if it
had never missed. One still silent after ``hold`` judged beats is failed (cause: held), and
one whose connection closes meanwhile is failed at once: a closed connection is the heart's
side, not the monitor's. A heart whose connection is down is never held.

The bound: a heart that really dies while most hearts are silent (its connection up: a hang,
a partition) is failed within ``hold`` beats more than it would be otherwise, so within
``(max_misses + 2 + hold)`` beats on a punctual grid. A crash that closes its connection is
never held. :class:`Suspects` is the state; it is fed sets, counts and times only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Set

import attrs

from greenheart.core.checks import COUNT

#: the default share: more than half of the hearts that are up
SHARE = 0.5

#: the default least number of silent hearts a hold is for: "a handful"; fewer are failed
MIN_HEARTS = 5

#: the default hold, in judged beats: 15 s at the monitor's default period of 3 s, which
#: outlasts the correlated silences of a few seconds seen here (a fleet's host starved by a
#: connection storm silenced all its hearts for 2.2 s before the monitor's storm defences), and
#: adds less than twice the usual detection time to a real mass death at max_misses=1 (3 beats
#: become 8). Counted in beats, it scales with the period a user chose for its latency; at
#: periods well under a second, raise it to cover the same seconds.
HOLD = 5


def _share(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be more than 0 and at most 1, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value!r}")


@attrs.frozen
class MassSilence:
    """The settings of the mass-silence rule."""

    #: hold when the silent hearts are more than this share of the hearts whose connections
    #: are up
    share: float = attrs.field(default=SHARE, converter=float, validator=_share)
    #: never hold fewer silent hearts than this
    min_hearts: int = attrs.field(default=MIN_HEARTS, validator=[COUNT, _positive])
    #: judged beats a suspect is held before it is failed
    hold: int = attrs.field(default=HOLD, validator=[COUNT, _positive])

    def holds(self, *, would_fail: int, suspects: int, up: int) -> bool:
        """Whether the ``would_fail`` hearts a beat would fail are held instead, with
        ``suspects`` hearts held already and ``up`` known hearts whose connections are up."""
        silent = would_fail + suspects
        return would_fail > 0 and silent >= self.min_hearts and silent > self.share * up


@attrs.frozen
class Suspect:
    """A heart held in a mass silence."""

    #: when it was held, on the caller's clock
    since: float
    #: judged beats it has been held for
    beats: int = 0


@attrs.frozen
class Outcome:
    """What one beat did to the suspects and to the hearts it would have failed."""

    #: suspects that answered again: no longer held, nor charged
    released: tuple[bytes, ...] = ()
    #: suspects held for ``hold`` judged beats, still silent: to fail now
    expired: tuple[tuple[bytes, Suspect], ...] = ()
    #: hearts the beat would have failed, held instead
    held: tuple[bytes, ...] = ()
    #: hearts the beat would have failed, to fail now
    failed: tuple[bytes, ...] = ()


@attrs.define
class Suspects:
    """The hearts held in a mass silence, and the rule that holds them."""

    rule: MassSilence
    _held: dict[bytes, Suspect] = attrs.field(factory=dict, init=False)

    def __contains__(self, heart: object) -> bool:
        return heart in self._held

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._held)

    def get(self, heart: bytes) -> Suspect | None:
        return self._held.get(heart)

    def items(self) -> Iterable[tuple[bytes, Suspect]]:
        return self._held.items()

    def beat(
        self,
        *,
        answered: Set[bytes],
        would_fail: Collection[bytes],
        up: int,
        now: float,
        judged: bool = True,
    ) -> Outcome:
        """Close one beat at ``now``.

        ``answered`` are the hearts that answered in the round; ``would_fail`` those the beat
        would fail by their misses or suspicion, whose connections are up and which are not
        held already; ``up`` the known hearts whose connections are up. An unjudged beat
        (``judged=False``) only releases the suspects that answered.
        """
        held = self._held
        released = tuple(sorted(heart for heart in held if heart in answered))
        for heart in released:
            del held[heart]
        expired: list[tuple[bytes, Suspect]] = []
        if judged:
            for heart, suspect in list(held.items()):
                suspect = held[heart] = attrs.evolve(suspect, beats=suspect.beats + 1)
                if suspect.beats >= self.rule.hold:
                    expired.append((heart, suspect))
                    del held[heart]
        newly_held: tuple[bytes, ...] = ()
        failed = tuple(sorted(would_fail))
        if self.rule.holds(would_fail=len(would_fail), suspects=len(held), up=up):
            newly_held, failed = failed, ()
            for heart in newly_held:
                held[heart] = Suspect(now)
        return Outcome(
            released, tuple(sorted(expired, key=lambda item: item[0])), newly_held, failed
        )

    def drop(self, heart: bytes) -> Suspect | None:
        """Stop holding ``heart`` (its connection closed, say); its suspect record, if held."""
        return self._held.pop(heart, None)

"""A fleet's scenario as a timeline, driven by a fed clock and a model fleet: no sockets."""

from __future__ import annotations

import pytest

from greenheart.core.behaviour import Churn, Die, Flap, Revive
from greenheart.core.timeline import (
    Cue,
    KillHearts,
    ReplaceHearts,
    ReviveHearts,
    SilenceHearts,
    Timeline,
)


class ModelFleet:
    """What a fleet does with the timeline's cues, on lists."""

    def __init__(self, size: int) -> None:
        self.alive = [b"h-%d" % n for n in range(size)]
        self.dead: list[bytes] = []
        self.serial = size

    def carry_out(self, cue: Cue) -> None:
        hearts = list(cue.hearts)
        if isinstance(cue, KillHearts):
            self.alive = [heart for heart in self.alive if heart not in hearts]
            self.dead += hearts
        elif isinstance(cue, ReviveHearts):
            self.dead = [heart for heart in self.dead if heart not in hearts]
            self.alive += hearts
        elif isinstance(cue, ReplaceHearts):
            self.alive = [heart for heart in self.alive if heart not in hearts]
            for _ in hearts:
                self.alive.append(b"h-%d" % self.serial)
                self.serial += 1
        # a heart that falls silent (SilenceHearts) stays alive: its connection is up


def run(scenario, size: int, until: float, seed: int = 0) -> list[tuple[float, Cue]]:
    """Every cue the timeline gives before ``until``, with its time, on a fed clock."""
    fleet = ModelFleet(size)
    timeline = Timeline.start(scenario, seed, fleet.alive)
    taken = []
    while (due := timeline.next_due()) is not None and due < until:
        assert timeline.pop_due(due - 1e-9, fleet.alive, fleet.dead) is None  # not yet
        while cue := timeline.pop_due(due, fleet.alive, fleet.dead):
            fleet.carry_out(cue)
            taken.append((due, cue))
    return taken


def test_deaths_and_revivals_happen_when_scripted_to_the_hearts_then_alive_or_dead():
    taken = run([Die(at=1, count=3), Die(at=2, count=2), Revive(at=5, count=4)], 10, until=60)
    assert [(when, type(cue)) for when, cue in taken] == [
        (1.0, KillHearts),
        (2.0, KillHearts),
        (5.0, ReviveHearts),
    ]
    first, second, revived = (cue.hearts for _, cue in taken)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    assert revived == first + second[:1]  # the longest dead first


def test_a_death_never_asks_for_more_hearts_than_are_alive():
    ((_, cue),) = run([Die(at=0, count=50)], 4, until=1)
    assert sorted(cue.hearts) == [b"h-0", b"h-1", b"h-2", b"h-3"]


def test_churn_repeats_every_period_and_chooses_among_the_hearts_alive_then():
    taken = run([Churn(every=2.5, count=2)], 6, until=10)
    assert [when for when, _ in taken] == [2.5, 5.0, 7.5]
    assert all(isinstance(cue, ReplaceHearts) for _, cue in taken)
    # the third round may pick hearts that joined in the first
    leaving = [set(cue.hearts) for _, cue in taken]
    assert all(len(hearts) == 2 for hearts in leaving)
    assert not leaving[0] & leaving[1]


def test_flapping_hearts_answer_for_up_seconds_then_fall_silent_for_down():
    taken = run([Flap(count=2, down=0.5, up=1.5)], 5, until=6)
    assert [(when, cue.silent) for when, cue in taken] == [
        (1.5, True),
        (2.0, False),
        (3.5, True),
        (4.0, False),
        (5.5, True),
    ]
    assert all(isinstance(cue, SilenceHearts) for _, cue in taken)
    (flappers,) = {cue.hearts for _, cue in taken}  # always the same ones
    assert len(flappers) == 2


def test_actions_due_together_come_in_the_order_of_the_scenario():
    taken = run([Revive(at=1, count=1), Die(at=1, count=1)], 3, until=2)
    assert [type(cue) for _, cue in taken] == [ReviveHearts, KillHearts]
    assert taken[0][1].hearts == ()  # nobody was dead yet


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_same_seed_chooses_the_same_hearts(seed):
    scenario = [Die(at=1, count=3), Churn(every=1, count=2), Flap(count=2, down=1, up=1)]
    assert run(scenario, 20, until=10, seed=seed) == run(scenario, 20, until=10, seed=seed)
    assert run(scenario, 20, until=10, seed=seed) != run(scenario, 20, until=10, seed=seed + 1)


def test_a_timeline_without_actions_is_over_at_once():
    timeline = Timeline.start([], 0, [b"a"])
    assert timeline.next_due() is None and timeline.pop_due(1e9, [b"a"], []) is None

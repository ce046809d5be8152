"""Behaviours are pure functions of the seed: checked with no sockets."""

from __future__ import annotations

import statistics

import pytest

from greenheart.core.behaviour import Behaviour, Churn, Delay, Die, Flap, Revive, parse_action


def decisions(behaviour: Behaviour, hearts: int = 100, pings: int = 100) -> list[float | None]:
    return [
        behaviour.decide(heart, ping) for heart in range(hearts) for ping in range(1, pings + 1)
    ]


def test_the_same_seed_makes_the_same_decisions_and_another_seed_others():
    behaviour = Behaviour(seed=7, delay=Delay.parse("exp:20"), loss=0.1)
    assert decisions(behaviour) == decisions(Behaviour(seed=7, delay=Delay("exp", 20), loss=0.1))
    assert decisions(behaviour) != decisions(Behaviour(seed=8, delay=Delay("exp", 20), loss=0.1))


@pytest.mark.parametrize(
    "delay", [Delay.parse("fixed:15"), Delay.parse("uniform:10:30"), Delay.parse("exp:20")]
)
def test_loss_and_delay_match_what_was_asked_over_ten_thousand_pongs(delay):
    drawn = decisions(Behaviour(seed=3, delay=delay, loss=0.05))
    assert len(drawn) == 10_000
    loss = drawn.count(None) / len(drawn)
    assert abs(loss - 0.05) < 0.02
    delays_ms = [seconds * 1000 for seconds in drawn if seconds is not None]
    assert abs(statistics.fmean(delays_ms) - delay.mean) < 0.1 * delay.mean
    if delay.kind == "uniform":
        assert min(delays_ms) >= 10 and max(delays_ms) <= 30
    if delay.kind == "exp":  # an exponential's standard deviation is its mean
        assert abs(statistics.stdev(delays_ms) - 20) < 2


def test_slow_hearts_are_a_fixed_fraction_with_their_own_delay():
    behaviour = Behaviour(seed=1, slow_fraction=0.2, slow_delay=Delay.parse("fixed:500"))
    slow = [heart for heart in range(5000) if behaviour.is_slow(heart)]
    assert abs(len(slow) / 5000 - 0.2) < 0.02
    assert behaviour.decide(slow[0], 1) == 0.5
    fast = next(heart for heart in range(5000) if not behaviour.is_slow(heart))
    assert behaviour.decide(fast, 1) == 0.0
    assert not behaviour.prompt and Behaviour().prompt


@pytest.mark.parametrize(
    "text", ["fixed", "fixed:", "uniform:5", "exp:1:2", "gauss:3", "uniform:9:1"]
)
def test_bad_delays_are_refused(text):
    with pytest.raises(ValueError):
        Delay.parse(text)


def test_bad_behaviours_are_refused():
    with pytest.raises(ValueError):
        Behaviour(loss=1.5)
    with pytest.raises(ValueError):
        Behaviour(slow_fraction=0.1)  # slow, but how slow?


def test_actions_from_the_command_line():
    assert parse_action("die", "5:10") == Die(5.0, 10)
    assert parse_action("revive", "8.5:3") == Revive(8.5, 3)
    assert parse_action("churn", "2:4") == Churn(2.0, 4)
    assert parse_action("flap", "5:1:2.5") == Flap(5, 1.0, 2.5)
    for kind, text in [("die", "5"), ("churn", "0:4"), ("flap", "5:1"), ("die", "x:1")]:
        with pytest.raises(ValueError, match=f"--{kind}"):
            parse_action(kind, text)

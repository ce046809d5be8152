"""``greenheart tune``'s settings, pure: the command it names is the setting it evaluated."""

from __future__ import annotations

import argparse
import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.cli import monitor as monitor_command
from greenheart.cli import tune as tune_command
from greenheart.core.errors import UsageError
from greenheart.core.phi import PhiAccrual
from greenheart.core.recording import Header, Recording, read
from greenheart.core.rules import Rules
from greenheart.core.silence import MassSilence
from greenheart.core.tuning import (
    MAX_MISSES,
    PHI_THRESHOLDS,
    Rate,
    Setting,
    Targets,
    evaluate_all,
    parse_duration,
    parse_rate,
    settings_for,
    slowest_detection,
)
from tests import pure


def parse(command: str, words: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    {"monitor": monitor_command, "tune": tune_command}[command].add_command(commands)
    if command == "monitor":
        words = ["monitor", "--ping", "tcp://127.0.0.1:1", "--pong", "tcp://127.0.0.1:2", *words]
    else:
        words = ["tune", *words]
    return parser.parse_args(words)


#: milliseconds as a person types them, and as the grid turns them into seconds
MILLISECONDS = st.integers(0, 100_000).map(lambda n: n / 10)

RULES = st.builds(
    Rules,
    max_misses=st.integers(0, 50),
    max_hearts=st.none() | st.integers(0, 10**6),
    phi=st.none()
    | st.builds(
        PhiAccrual,
        threshold=st.floats(0.01, 100),
        min_std_deviation=MILLISECONDS.filter(bool).map(lambda ms: ms / 1000),
        acceptable_pause=MILLISECONDS.map(lambda ms: ms / 1000),
        window=st.integers(2, 1000),
    ),
    mass_silence=st.none()
    | st.builds(
        MassSilence,
        share=st.floats(0.01, 1.0),
        min_hearts=st.integers(1, 1000),
        hold=st.integers(1, 100),
    ),
    fail_on_disconnect=st.booleans(),
)


@given(period=st.floats(1, 10**6), rules=RULES)
def test_the_monitor_options_of_any_setting_ask_for_that_setting(period, rules):
    args = parse("monitor", monitor_command.options(period, rules))
    assert args.period == period
    assert monitor_command.rules_from(args) == rules


def test_every_setting_tune_tries_is_the_setting_its_command_asks_for():
    """The recorded rules' other settings (max_hearts, min_hearts) and --fail-on-disconnect are
    in every setting of the grid, and in the command named for it."""
    recorded = Rules(max_misses=2, max_hearts=500, mass_silence=MassSilence(min_hearts=20))
    recording = Recording(Header(period=1000.0, rules=recorded, origin=0.0), [])
    args = parse("tune", ["x.rec", "--fail-on-disconnect", "--period", "500,1000"])
    settings = tune_command.settings(args, recording)
    assert len(settings) == 2 * (len(args.max_misses) + 2 * len(args.phi))
    for setting in settings:
        assert setting.rules.fail_on_disconnect and setting.rules.max_hearts == 500
        assert setting.rules.mass_silence == MassSilence(min_hearts=20)
        asked = parse("monitor", tune_command.command(setting).split())
        assert (asked.period, monitor_command.rules_from(asked)) == (setting.period, setting.rules)


# -- the settings as JSON, the targets, the grid and the orchestration, in the core ------------


@given(rules=RULES)
def test_rules_said_as_json_read_back_as_themselves(rules):
    assert Rules.from_json(json.loads(json.dumps(rules.as_json()))) == rules


def test_rules_as_json_name_every_setting_and_read_the_missing_ones_as_defaults():
    rules = Rules(
        max_misses=3,
        max_hearts=7,
        phi=PhiAccrual(5.0, 0.2, 0.3, 10),
        mass_silence=MassSilence(0.75, 4, 6),
        fail_on_disconnect=True,
    )
    assert rules.as_json() == {
        "max_misses": 3,
        "max_hearts": 7,
        "phi": {
            "threshold": 5.0,
            "min_std_deviation": 0.2,
            "acceptable_pause": 0.3,
            "window": 10,
        },
        "mass_silence": {"share": 0.75, "min_hearts": 4, "hold": 6},
        "fail_on_disconnect": True,
        "transport_timeout": 30.0,
    }
    # what a recording made before transport liveness says: its connections had none
    assert Rules.from_json({"max_misses": 2}) == Rules(
        max_misses=2, mass_silence=None, transport_timeout=None
    )
    assert Rules(mass_silence=None).as_json()["mass_silence"] is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("5", 5.0), (" 500ms ", 0.5), ("2m", 120.0), ("2min", 120.0), ("1.5h", 5400.0)],
)
def test_a_detection_target_is_a_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1/day", Rate(1.0, False, "1/day")),
        ("2/d", Rate(2.0, False, "2/d")),
        (" 2 / hour ", Rate(48.0, False, "2 / hour")),
        ("0.5/h", Rate(12.0, False, "0.5/h")),
        ("0.1/heart/day", Rate(0.1, True, "0.1/heart/day")),
        ("1/heart/hour", Rate(24.0, True, "1/heart/hour")),
    ],
)
def test_a_false_failure_target_is_a_rate_per_day(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "5 parsecs", "-1s", "1/week", "per day", "1/"])
def test_a_target_that_says_nothing_is_an_error_naming_it(text):
    with pytest.raises(ValueError, match="such as"):
        (parse_rate if "/" in text or "day" in text else parse_duration)(text)


def test_targets_of_a_detection_and_a_rate():
    assert Targets.of(2.0, None) == Targets(2.0)
    assert Targets.of(None, Rate(3.0, True, "3/heart/day")) == Targets(None, 3.0, True)
    assert Targets.of(1.0, Rate(5.0, False, "5/day")) == Targets(1.0, 5.0, False)


def test_the_slowest_detection_a_setting_allows_for():
    assert slowest_detection(Setting(500.0, Rules(max_misses=2))) == 2.5  # (2 + 3) periods
    phi = Rules(phi=PhiAccrual(8.0, acceptable_pause=1.5))
    assert slowest_detection(Setting(100.0, phi)) == pytest.approx(3.5)  # 20 periods + pause


def test_the_grid_tune_tries_by_default_and_as_asked():
    silence = MassSilence(share=0.4, min_hearts=3, hold=2)
    header = Header(period=200.0, rules=Rules(max_hearts=9, mass_silence=silence), origin=0.0)
    default = settings_for(header)
    assert {s.period for s in default} == {200.0}
    assert [s.rules.max_misses for s in default if s.rules.phi is None] == list(MAX_MISSES)
    phis = [(s.rules.phi.threshold, s.rules.phi.acceptable_pause) for s in default if s.rules.phi]
    assert phis == [(t, pause) for t in PHI_THRESHOLDS for pause in (0.0, 0.2)]  # 0 and a period
    assert all(s.rules.mass_silence == silence and s.rules.max_hearts == 9 for s in default)
    assert not any(s.rules.fail_on_disconnect for s in default)
    asked = settings_for(
        header,
        periods=[100.0, 300.0],
        max_misses=[2],
        phi=[],
        shares=[0.5, 0.9],
        holds=[4],
        without_mass_silence=True,
        fail_on_disconnect=True,
    )
    assert [(s.period, s.rules.mass_silence) for s in asked] == [
        (period, rule)
        for period in (100.0, 300.0)
        for rule in (
            MassSilence(share=0.5, min_hearts=3, hold=4),
            MassSilence(share=0.9, min_hearts=3, hold=4),
            None,
        )
    ]
    assert all(s.rules.max_misses == 2 and s.rules.fail_on_disconnect for s in asked)
    # a hold alone keeps the recorded share; without a rule recorded, the default's
    (held,) = settings_for(header, max_misses=[1], phi=[], holds=[7])
    assert held.rules.mass_silence == attrs.evolve(silence, hold=7)
    bare = attrs.evolve(header, rules=Rules(mass_silence=None))
    (shared,) = settings_for(bare, max_misses=[1], phi=[], shares=[0.3])
    assert shared.rules.mass_silence == MassSilence(share=0.3)
    paused = settings_for(header, max_misses=[], phi=[5.0], phi_pauses_ms=[50.0])
    assert [s.rules.phi.acceptable_pause for s in paused] == [0.05]


def _steady_recording(seconds: int = 40, hearts: int = 6) -> Recording:
    """``hearts`` answering each ping of a 1 s period 10 ms after it, on a connection each."""
    ledger, take = pure.recording(Rules())
    names = [b"h%d" % n for n in range(hearts)]
    for fd in range(10, 10 + hearts):
        pure.connect(ledger, fd, 0.0)
    data = b""
    for k in range(seconds):
        for fd, heart in enumerate(names, start=10):
            pure.answer(ledger, heart, k + 0.01, fd=fd)
        pure.publish(ledger, k + 1.0)
        pure.beat(ledger, k + 1.0)
        data += take()
    return read(data)


def test_every_setting_is_weighed_against_the_same_deaths_at_its_period():
    recording = _steady_recording()
    settings = [Setting(1000.0, Rules(max_misses=n)) for n in (1, 3)]
    settings.append(Setting(2000.0, Rules(max_misses=1)))
    results = evaluate_all(recording, settings, deaths=4, seed=2)
    assert [result.setting for result in results] == settings
    one, three, slower = results
    # the same four deaths for every setting, half hangs, half crashes
    for result in results:
        assert len(result.hang.times) + result.hang.missed == 2
        assert len(result.crash.times) + result.crash.missed == 2
    assert one.hang.worst < three.hang.worst and one.hang.worst < slower.hang.worst
    assert one.crash_on_disconnect == three.crash_on_disconnect  # measured once a period
    assert one.crash_on_disconnect.times == (0.0, 0.0)
    assert evaluate_all(recording, settings, deaths=4, seed=2) == results  # seeded
    assert evaluate_all(recording, settings, deaths=4, seed=3) != results


def test_weighing_needs_a_beat_and_a_setting():
    recording = _steady_recording(3)
    with pytest.raises(UsageError, match="no beat"):
        evaluate_all(Recording(recording.header, []), [Setting(1000.0, Rules())])
    with pytest.raises(UsageError, match="no setting"):
        evaluate_all(recording, [])

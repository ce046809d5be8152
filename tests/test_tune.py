"""``greenheart tune``'s settings, pure: the command it names is the setting it evaluated."""

from __future__ import annotations

import argparse

from hypothesis import given
from hypothesis import strategies as st

from greenheart.cli import monitor as monitor_command
from greenheart.cli import tune as tune_command
from greenheart.core.phi import PhiAccrual
from greenheart.core.recording import Header, Recording
from greenheart.core.rules import Rules
from greenheart.core.silence import MassSilence


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

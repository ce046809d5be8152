"""The beat schedule, with no clock but the one the test hands it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.schedule import BeatSchedule


def test_on_time_beats_stay_on_the_grid():
    schedule = BeatSchedule.starting(10.0, 1.0)
    for n, late_by in enumerate([0.0, 0.3, 0.0, 0.5, 0.1], start=1):
        assert schedule.wait(10.0 + n - 0.25) == pytest.approx(0.25)
        slot = schedule.beat(10.0 + n + late_by)
        assert not slot.late and slot.lag == pytest.approx(late_by) and slot.skipped == 0
    assert schedule.due == 16.0  # work done between beats never pushed the grid back


def test_a_beat_more_than_half_a_period_late_is_a_stall_and_restarts_the_grid():
    schedule = BeatSchedule.starting(0.0, 1.0)
    slot = schedule.beat(6.4)
    assert slot.late and slot.lag == pytest.approx(5.4) and slot.skipped == 5
    assert schedule.due == pytest.approx(7.4)


@given(st.floats(0.01, 10), st.lists(st.floats(0, 20), max_size=50))
def test_rounds_are_never_shorter_than_half_a_period(period, lateness):
    schedule = BeatSchedule.starting(0.0, period)
    previous = 0.0
    for late in lateness:
        now = schedule.due + late * period
        slot = schedule.beat(now)
        assert slot.lag >= 0
        assert slot.late == (slot.lag > period / 2)
        assert schedule.due - now >= period / 2 - 1e-9
        assert now - previous >= period / 2 - 1e-9 or previous == 0.0
        previous = now

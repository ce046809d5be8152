"""A restarted monitor awaits the hearts it knew: those that answer within the grace carry on,
not new; the others fail once, for not being seen since the restart (fed clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.failures import Cause, Diagnosis
from greenheart.core.ledger import Ledger, Rules
from greenheart.core.restart import MIN_GRACE, Awaiting, Remembered, grace_for
from tests import pure

pytestmark = pytest.mark.pure

NAMES = [b"h%d" % n for n in range(8)]


def test_the_grace_is_three_periods_or_ten_seconds():
    assert grace_for(1.0) == MIN_GRACE and grace_for(5.0) == 15.0


@given(
    back=st.dictionaries(st.sampled_from(NAMES), st.floats(0.0, 30.0), max_size=8),
    grace=st.floats(1.0, 20.0),
)
def test_hearts_answering_within_the_grace_resume_and_the_others_fail_once(back, grace):
    """``back``: the remembered hearts that answer again, and when (s after the restart)."""
    period = 1.0
    ledger = pure.ledger(Rules(mass_silence=None), tic=100.0)
    ledger.resume([Remembered(heart, 90.0) for heart in NAMES], 100.0, grace)
    resumed, failed, new = set(), [], set()
    beats = [100.0 + period * n for n in range(1, int(grace) + 4)]
    for at_beat in beats:  # a heart back at ``at`` answers every ping from then on
        for heart, at in back.items():
            if 100.0 + at <= at_beat - 0.5:
                ledger.pong(heart, ledger.ping, at_beat - 0.5)
        beat = ledger.beat(at_beat)
        resumed.update(beat.resumed)
        failed += beat.failures
        new.update(beat.new_hearts)
    # the beat that ends the grace is the first at or after it: answers of its round count
    last = next(t for t in beats if t >= 100.0 + grace)
    on_time = {
        heart for heart, at in back.items() if any(100.0 + at <= t - 0.5 <= last for t in beats)
    }
    assert resumed <= set(NAMES) and not resumed & {f.heart for f in failed}
    restarted = [f for f in failed if f.cause is Cause.RESTARTED]
    assert len({f.heart for f in restarted}) == len(restarted)  # each once
    assert {f.heart for f in restarted} == set(NAMES) - resumed
    assert on_time == resumed
    assert not new & resumed  # a resumed heart is not new
    for failure in restarted:
        assert failure.last_answer == 90.0 and failure.diagnosis is Diagnosis.UNREACHABLE
        assert "not seen since the monitor restarted" in failure.describe()
        assert 100.0 + grace <= failure.at <= 100.0 + grace + period
    assert ledger.counters.failed(Cause.RESTARTED) == len(restarted)


def test_an_awaited_heart_is_charged_no_miss_during_the_grace():
    ledger = Ledger(tic=0.0, rules=Rules(max_misses=0, mass_silence=None))
    ledger.resume([Remembered(b"slow", None)], 0.0, 5.0)
    for now in (1.0, 2.0, 3.0, 4.0):
        beat = ledger.beat(now)
        assert not beat.failures and not ledger.on_probation
    (failure,) = ledger.beat(5.0).failures
    assert failure.cause is Cause.RESTARTED and failure.last_answer is None


def test_awaiting_says_who_resumed_and_who_is_gone_in_order():
    awaiting = Awaiting.of([Remembered(b"b", 1.0), Remembered(b"a", 2.0)], 10.0, 5.0)
    assert awaiting.beat({b"a", b"x"}, 11.0) == ((b"a",), [])
    assert awaiting.beat(set(), 15.0) == ((), [Remembered(b"b", 1.0)])
    assert awaiting.beat({b"b"}, 16.0) == ((), []) and not awaiting

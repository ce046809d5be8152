"""The registrations of simulated ipyparallel engines, as a pure state machine."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from greenheart.core.registrations import EngineState, PingWatch, Registry, registration_times


@given(
    count=st.integers(0, 300),
    rate=st.one_of(st.none(), st.floats(0.5, 1000)),
    spread=st.floats(0, 100),
    seed=st.integers(0, 2**32),
)
@example(count=1, rate=None, spread=5e-324, seed=0)  # a delay that rounded up to the spread
def test_engines_ask_within_the_spread_and_never_faster_than_the_rate(count, rate, spread, seed):
    times = registration_times(count, rate=rate, spread=spread, seed=seed)
    assert len(times) == count
    assert times == registration_times(count, rate=rate, spread=spread, seed=seed)  # seeded
    assert all(t >= 0 for t in times)
    ordered = sorted(times)
    if rate is None:
        assert all(t < spread or t == 0 for t in times)
    else:
        gaps = [b - a for a, b in itertools.pairwise(ordered)]
        assert all(gap >= 1 / rate * (1 - 1e-9) for gap in gaps)
        if spread == 0:  # all at once but for the rate: as soon as it allows
            assert ordered == pytest.approx([n / rate for n in range(count)])


def registry(*uuids: str, purge_after: float = 30.0) -> Registry:
    book = Registry(purge_after=purge_after)
    for uuid in uuids:
        book.add(uuid, 0.0)
    return book


def test_an_engine_goes_from_asked_to_registered_and_a_kill_is_timed_to_its_unregistration():
    book = registry("a", "b")
    assert book.due(0.0) == ["a", "b"]
    book.asked("a", 1.0)
    book.accepted("a", 1.5, engine_id=0)
    assert book.registered("a", 3.0)
    book.killed("a", 10.0)
    assert book.unregistered("a", 10.25) == pytest.approx(0.25)
    status = book.status(11.0)
    assert (status.asked, status.accepted, status.registered, status.registered_now) == (1, 1, 1, 0)
    assert (status.killed, status.killed_unregistered, status.lost) == (1, 1, 0)
    assert book.registration_seconds() == [2.0] and book.detection_seconds() == [0.25]
    assert book.engine_ids() == {"a": 0}  # b was never accepted


def test_an_engine_unregistered_alive_is_lost_and_one_never_announced_is_purged():
    book = registry("alive", "silent", purge_after=30.0)
    for uuid in ("alive", "silent"):
        book.asked(uuid, 0.0)
        book.accepted(uuid, 0.1, engine_id=0)
    book.registered("alive", 1.0)
    assert book.unregistered("alive", 5.0) is None
    assert book.status(20.0).purged == 0  # the hub may still hear its heart
    status = book.status(31.0)
    assert (status.lost, status.purged, status.unregistered) == (1, 1, 1)


def test_refusals_and_silence_are_counted_and_a_late_answer_does_not_revive_a_given_up_request():
    book = registry("refused", "unanswered")
    book.asked("refused", 0.0)
    book.asked("unanswered", 0.0)
    book.refused("refused", "Invalid Signature")
    assert book.overdue(5.0, timeout=3.0) == ["unanswered"]
    book.unanswered("unanswered")
    book.accepted("unanswered", 6.0, engine_id=3)  # too late: it is not beating
    status = book.status(7.0)
    assert (status.refused, status.unanswered, status.accepted) == (1, 1, 0)
    assert book.oldest_asked() is None  # neither waits for an answer any more
    assert status.last_error == "Invalid Signature"
    assert book.in_state(EngineState.UNANSWERED) == ["unanswered"]


def test_announcements_of_other_engines_are_ignored():
    book = registry("mine")
    assert not book.registered("someone-else", 1.0)
    assert book.unregistered("someone-else", 1.0) is None
    with pytest.raises(ValueError):
        book.add("mine", 0.0)


def test_a_revived_engine_asks_again_and_is_timed_afresh():
    book = registry("a")
    book.asked("a", 0.0)
    book.accepted("a", 0.1, engine_id=0)
    book.registered("a", 1.0)
    book.killed("a", 2.0)
    book.unregistered("a", 2.1)
    book.asked("a", 5.0)  # registers again under its uuid
    book.accepted("a", 5.1, engine_id=1)
    assert book.registered("a", 6.0)
    status = book.status(7.0)
    assert (status.asked, status.registered, status.registered_now, status.killed) == (2, 2, 1, 0)


def test_engines_fall_due_in_order_once_each_and_the_next_one_is_known():
    book = Registry()
    for uuid, due in [("late", 2.0), ("early", 0.5), ("tie-1", 1.0), ("tie-2", 1.0)]:
        book.add(uuid, due)
    assert book.next_due() == 0.5
    assert book.due(0.9) == ["early"] and book.due(0.9) == []
    book.asked("tie-2", 0.95)  # asked some other way before its time: not due again
    assert book.due(1.5) == ["tie-1"]
    assert book.next_due() == 2.0
    assert book.due(5.0) == ["late"] and book.next_due() is None


@given(
    max_misses=st.integers(1, 6),
    heard=st.lists(st.lists(st.booleans(), max_size=30), min_size=1, max_size=5),
)
def test_an_engine_gives_up_after_max_misses_checks_in_a_row_without_a_ping(max_misses, heard):
    """``heard[e][c]``: whether engine e heard a ping between check c-1 and check c."""
    engines = [f"e{n}" for n in range(len(heard))]
    expected = {}  # the check at which each gives up: the first check cannot miss
    for engine, checks in zip(engines, heard, strict=True):
        streak = 0
        for check, got in enumerate(checks):
            streak = 0 if got or check == 0 else streak + 1
            if streak == max_misses:
                expected[engine] = check
                break
    watch = PingWatch(max_misses)
    counts = dict.fromkeys(engines, 0)
    given_up = {}
    for check in range(max(map(len, heard))):
        watched = {}
        for engine, checks in zip(engines, heard, strict=True):
            if check < len(checks) and engine not in given_up:
                counts[engine] += checks[check]
                watched[engine] = counts[engine]
        for engine in watch.check(watched):
            assert engine not in given_up  # once: it is watched no more
            given_up[engine] = check
    assert given_up == expected


def test_an_engine_left_out_is_forgotten_and_watched_from_scratch_when_back():
    watch = PingWatch(2)
    assert watch.check({"a": 5}) == []
    assert watch.check({"a": 5}) == []  # one miss
    assert watch.check({}) == []  # killed: forgotten, misses and all
    assert watch.check({"a": 5}) == []  # back: its first check again
    assert watch.check({"a": 5}) == []
    assert watch.check({"a": 5}) == ["a"]


def test_an_engine_that_left_is_unregistered_as_it_asked_not_lost():
    book = registry("leaver", "killed")
    for uuid in ("leaver", "killed"):
        book.asked(uuid, 0.0)
        book.accepted(uuid, 0.1, engine_id=0)
        book.registered(uuid, 1.0)
    book.left("leaver", 80.0)
    book.killed("killed", 80.0)
    book.left("killed", 81.0)  # dead already: it cannot leave
    assert book.unregistered("leaver", 80.1) is None
    assert book.unregistered("killed", 80.5) == pytest.approx(0.5)
    status = book.status(90.0)
    assert (status.left, status.lost, status.unregistered, status.killed_unregistered) == (
        1,
        0,
        2,
        1,
    )
    assert book.detection_seconds() == [pytest.approx(0.5)]


def test_the_oldest_request_waiting_is_the_first_asked_of_those_still_unanswered():
    book = registry("a", "b", "c")
    assert book.oldest_asked() is None
    book.asked("b", 1.0)
    book.asked("a", 2.0)
    book.asked("c", 3.0)
    assert book.oldest_asked() == "b"
    book.unanswered("b")
    assert book.oldest_asked() == "a"
    book.accepted("a", 4.0, engine_id=0)
    assert book.oldest_asked() == "c"

"""The registrations of simulated ipyparallel engines, as a pure state machine."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from greenheart.core.pingwatch import PingWatch
from greenheart.core.registrations import (
    LEAVING_GRACE,
    TRANSITIONS,
    UNANSWERED_WARNING,
    EngineState,
    Happening,
    Registry,
    hub_purge_seconds,
    registration_times,
)


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


def registry(
    *uuids: str, purge_after: float | None = 30.0, reply_timeout: float = 30.0
) -> Registry:
    book = Registry(purge_after=purge_after, reply_timeout=reply_timeout)
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
    book = registry("refused", "unanswered", reply_timeout=3.0)
    book.asked("refused", 0.0)
    book.asked("unanswered", 0.0)
    book.refused("refused", "Invalid Signature")
    assert book.look(2.9, beating=False).unanswered == ()
    assert book.look(5.0, beating=False).unanswered == ("unanswered",)
    assert book.look(5.5, beating=False).unanswered == ()  # given up on once
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


def test_the_transition_table_moves_only_the_engines_its_pairs_name():
    for state in EngineState:
        assert TRANSITIONS[state, Happening.ASKED] is EngineState.ASKED  # asking again, always
    answers = {h for (s, h) in TRANSITIONS if s is EngineState.ASKED} - {Happening.ASKED}
    assert answers == {Happening.ACCEPTED, Happening.REFUSED, Happening.UNANSWERED}
    # an announcement moves only an engine in the state it announces the end of
    assert [s for (s, h) in TRANSITIONS if h is Happening.REGISTERED] == [EngineState.ACCEPTED]
    assert [s for (s, h) in TRANSITIONS if h is Happening.UNREGISTERED] == [EngineState.REGISTERED]


def test_a_hub_that_answers_nothing_is_warned_of_once_after_the_delay():
    book = registry("a", "b")
    book.asked("a", 10.0)
    assert not book.look(10.0 + UNANSWERED_WARNING, beating=False).warn_unanswered
    assert book.look(10.1 + UNANSWERED_WARNING, beating=False).warn_unanswered
    assert not book.look(20.0, beating=False).warn_unanswered  # said once


@pytest.mark.parametrize("answer", ["accepted", "refused"])
def test_a_hub_that_answered_anything_is_not_warned_of(answer):
    book = registry("a", "b")
    book.asked("a", 0.0)
    book.asked("b", 0.0)
    if answer == "accepted":
        book.accepted("a", 0.1, engine_id=0)
    else:
        book.refused("a", "no")
    assert not book.look(60.0, beating=False).warn_unanswered


def test_registration_fails_once_every_engine_asked_and_none_could_register():
    book = registry("a", "b", reply_timeout=3.0)
    book.asked("a", 0.0)
    book.refused("a", "Invalid Signature")
    assert not book.look(10.0, beating=False).none_registered  # b has not asked yet
    book.asked("b", 10.0)
    assert not book.look(12.0, beating=False).none_registered  # b still waits
    look = book.look(13.5, beating=False)
    assert look.none_registered and look.unanswered == ("b",)


def test_an_engine_accepted_keeps_registration_from_failing():
    book = registry("a", "b", reply_timeout=3.0)
    for uuid in ("a", "b"):
        book.asked(uuid, 0.0)
    book.accepted("a", 0.1, engine_id=0)
    assert not book.look(10.0, beating=True).none_registered


def test_everyone_left_waits_for_the_hub_to_announce_them_or_for_the_grace():
    book = registry("a", "b")
    for n, uuid in enumerate(("a", "b")):
        book.asked(uuid, 0.0)
        book.accepted(uuid, 0.1, engine_id=n)
        book.registered(uuid, 0.5)
    book.left("a", 10.0)
    assert not book.look(10.0, beating=True).everyone_left  # b still beats
    book.left("b", 11.0)
    assert not book.look(11.0, beating=False).everyone_left  # the hub may yet announce them
    book.unregistered("a", 11.5)
    assert not book.look(11.0 + LEAVING_GRACE - 0.01, beating=False).everyone_left
    assert book.look(11.0 + LEAVING_GRACE, beating=False).everyone_left
    book.unregistered("b", 12.0)
    assert book.look(12.0, beating=False).everyone_left  # every one announced


def test_an_engine_waiting_to_ask_means_not_everyone_left():
    book = registry("a", "later")
    book.asked("a", 0.0)
    book.accepted("a", 0.1, engine_id=0)
    book.left("a", 1.0)
    assert not book.look(60.0, beating=False).everyone_left


def test_the_engines_watched_for_pings_are_those_accepted_beating_and_not_killed():
    book = registry("waiting", "accepted", "registered", "killed", "silent")
    for n, uuid in enumerate(("accepted", "registered", "killed", "silent")):
        book.asked(uuid, 0.0)
        book.accepted(uuid, 0.1, engine_id=n)
    for uuid in ("registered", "killed"):
        book.registered(uuid, 0.5)
    book.killed("killed", 1.0)
    beating = {"waiting", "accepted", "registered", "killed"}  # silent's heart is gone
    assert book.watched(beating) == ["accepted", "registered"]


def test_the_purge_time_is_the_hubs_default_for_the_period_it_announced_unless_given():
    book = registry("a", purge_after=None)
    assert book.purge_seconds == hub_purge_seconds(3000.0) == 30.0  # no period known yet
    book.asked("a", 0.0)
    book.accepted("a", 0.0, engine_id=0, period_ms=10_000.0)
    assert book.purge_seconds == hub_purge_seconds(10_000.0) == 100.0
    assert book.status(99.0).purged == 0 and book.status(101.0).purged == 1
    assert registry("a", purge_after=5.0).purge_seconds == 5.0

"""What the live page decides: a heart's standing, the order of attention, the history."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.live import History, Standing, standing
from greenheart.core.stats import percentile
from greenheart.core.updates import Updates, apply, diff


def test_a_heart_the_ledger_forgot_has_failed_whatever_else_is_said():
    assert standing(known=False, suspect=True, misses=3, returned=True) is Standing.FAILED


def test_a_suspect_comes_before_probation_and_probation_before_a_return():
    assert standing(known=True, suspect=True, misses=2, returned=True) is Standing.SUSPECT
    assert standing(known=True, suspect=False, misses=1, returned=True) is Standing.ON_PROBATION
    assert standing(known=True, suspect=False, misses=0, returned=True) is Standing.RETURNED
    assert standing(known=True, suspect=False, misses=0, returned=False) is Standing.ANSWERING


def test_each_standing_has_its_own_letter():
    assert len({s.code for s in Standing}) == len(Standing)


def test_the_one_percentile_is_the_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.99) == 99.0 and percentile(values, 0.5) == 50.0
    assert percentile(list(reversed(values)), 0.5) == 50.0  # it sorts
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([], 0.5) is None


def test_the_history_keeps_a_point_a_resolution_over_its_window():
    history = History(window=10.0, resolution=1.0)
    assert history.add(0.0, 3, 3, [0.003, 0.001, 0.002])
    assert not history.add(0.5, 3, 2, [1.0])  # within a second of the last point
    for at in range(1, 15):
        history.add(float(at), 3, 3, [0.001])
    points = history.points()
    assert points[0].at == 4.0 and points[-1].at == 14.0  # the last 10 s
    first = History().points() or None
    assert first is None


def test_a_points_round_trips_are_the_beats_median_and_p99():
    history = History()
    history.add(0.0, 100, 100, [n / 1000 for n in range(100, 0, -1)])
    (point,) = history.points()
    assert (point.rtt_p50, point.rtt_p99) == (0.05, 0.099)


_rows = st.dictionaries(
    st.sampled_from([f"h{n}" for n in range(12)]),
    st.tuples(st.none() | st.sampled_from(["a", "b"]), st.sampled_from("fspra"), st.integers(0, 3)),
    max_size=12,
)


@given(_rows, _rows, _rows)
def test_a_delta_turns_one_page_into_the_next_and_deltas_compose(first, second, third):
    one, two = diff(first, second), diff(second, third)
    assert apply(first, one) == second
    assert apply(first, one.then(two)) == third
    assert not diff(third, third)


@given(st.lists(_rows, min_size=1, max_size=12), st.integers(1, 5), st.data())
def test_a_page_that_applies_every_update_it_is_given_equals_a_fresh_page(pages, kept, data):
    """A viewer polls at whatever versions it likes; each time it is given what changed since
    the version it holds, or every row when that is too old: it always ends with the rows a
    fresh page is given."""
    updates = Updates(kept=kept)
    seen: dict[str, tuple] = {}
    held = None
    for rows in pages:
        updates.advance(dict(rows))
        if data.draw(st.booleans()):
            delta = None if held is None else updates.since(held)
            assert delta is not None or held is None or held < updates.version - kept
            seen = dict(updates.rows) if delta is None else apply(seen, delta)
            held = updates.version
            assert seen == updates.rows
    assert updates.since(updates.version + 1) is None and updates.since(-1) is None

"""The order a fleet fans each ping out in (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.fanout import FANOUT_BATCH, fan_out_order


def test_each_ping_is_fanned_out_from_a_batch_further_on():
    hearts = list(range(3 * FANOUT_BATCH + 7))
    orders = [fan_out_order(hearts, ping) for ping in range(1, 5)]
    firsts = [order[0] for order in orders]
    assert firsts == [FANOUT_BATCH, 2 * FANOUT_BATCH, 3 * FANOUT_BATCH, 0]
    # the last heart of one fan-out is not the last of the next
    assert len({order[-1] for order in orders}) == 4


@given(hearts=st.integers(0, 3000), ping=st.integers(0, 10**6), batch=st.integers(1, 600))
def test_every_heart_is_served_once_per_ping(hearts, ping, batch):
    assert sorted(fan_out_order(range(hearts), ping, batch)) == list(range(hearts))

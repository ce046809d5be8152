"""In what order a fleet answers each ping: a decision, so that falling behind is fair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

#: hearts served per turn of the fan-out greenlet before it lets others run
FANOUT_BATCH = 512


def fan_out_order(hearts: Sequence[T], ping: int, batch: int = FANOUT_BATCH) -> list[T]:
    """``hearts`` in the order ping number ``ping`` is fanned out in: each ping starts one
    ``batch`` further on, so that when a fleet falls behind it is never the same hearts that
    answer last (and late) again and again, which a monitor would then rightly fail."""
    if len(hearts) <= batch:
        return list(hearts)
    batches = -(-len(hearts) // batch)
    start = (ping % batches) * batch
    return [*hearts[start:], *hearts[:start]]

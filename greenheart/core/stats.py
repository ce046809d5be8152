"""The one percentile, for every figure greenheart reports: the benchmarks', the live page's and
``greenheart tune``'s."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) by the nearest-rank method: the smallest value with at
    least ``q`` of all values at or below it (of 1 to 100, p99 is 99 and p50 is 50). None
    for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]

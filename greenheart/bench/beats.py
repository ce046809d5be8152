"""The one schema of what a benchmark's monitor says about each beat.

Every monitor a benchmark runs (greenheart's, ipyparallel's, the bare loop) prints one JSON
line per beat, made by :func:`beat_report`; the benchmarks read nothing else. Times are in
milliseconds, but ``at`` and ``cpu``, which are seconds (the shared monotonic clock, and the
monitor process's CPU time, every thread included):

``beat``, ``at``, ``cpu``; ``hearts`` known after it, ``responded`` (answered the round),
``on_probation``, ``new`` and ``failed`` hearts; ``on_time``, ``late`` and ``bad`` pongs;
``rtt_ms`` (a sample of at most :data:`RTT_SAMPLE` round trips), ``rtt_max_ms``,
``round_ms`` (ping sent to its last on-time pong); ``judged`` (False if the beat charged
nobody a miss); ``lag_ms`` (how long after its grid time the beat's ping left).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence

#: round trips reported per beat; a random sample when more hearts answered
RTT_SAMPLE = 200


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def beat_report(
    *,
    beat: int,
    hearts: int,
    responded: int,
    on_probation: int,
    new: int,
    failed: int,
    on_time: int,
    late: int,
    bad: int,
    round_trips: Sequence[float],
    round_s: float | None,
    judged: bool = True,
    lag: float = 0.0,
) -> str:
    """One beat as a JSON line."""
    sample = (
        round_trips
        if len(round_trips) <= RTT_SAMPLE
        else random.sample(list(round_trips), RTT_SAMPLE)
    )
    return json.dumps(
        {
            "beat": beat,
            "at": time.monotonic(),
            "cpu": time.process_time(),  # every thread; opens no file, at the fd limit too
            "hearts": hearts,
            "responded": responded,
            "on_probation": on_probation,
            "new": new,
            "failed": failed,
            "on_time": on_time,
            "late": late,
            "bad": bad,
            "rtt_ms": [_ms(rtt) for rtt in sample],
            "rtt_max_ms": _ms(max(round_trips)) if round_trips else None,
            "round_ms": _ms(round_s),
            "judged": judged,
            "lag_ms": _ms(lag),
        }
    )


def is_beat(line: dict[str, object]) -> bool:
    """Whether a line a monitor printed is a beat report (not a ready line or an event)."""
    return "beat" in line and "responded" in line

"""Sharing the gevent hub politely."""

from __future__ import annotations

import gevent

#: a timer this short fires at the loop's next turn, after the timers already due
_NEXT_TURN = 1e-6


def yield_to_others() -> None:
    """Let every other greenlet, timers included, run before this one goes on.

    Not ``gevent.sleep(0)``: that goes through gevent's callback queue, which runs up to 50
    callbacks in a row before it looks at the clock, so a loop of batches a few
    milliseconds long that yields with it holds off every timer (a monitor's beat, say)
    for 100 ms and more.
    """
    gevent.sleep(_NEXT_TURN)

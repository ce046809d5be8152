"""Delayed sends from one greenlet: a heap of due times, not a greenlet per message."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

import gevent.event

from greenheart.green.hub import yield_to_others


class DelayQueue:
    """Calls ``send(*item)`` for each pushed item once its due time (on ``clock``) has come.

    One greenlet, running :meth:`run` and owned by whoever owns the queue, sleeps until the
    earliest due time; a push that becomes the earliest wakes it to sleep less. Items due at
    the same moment are sent in the order they were pushed.
    """

    def __init__(self, send: Callable[..., Any], clock: Callable[[], float] = time.monotonic):
        self._send = send
        self._clock = clock
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._wake = gevent.event.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, *item: Any) -> None:
        heapq.heappush(self._heap, (due, next(self._order), item))
        if self._heap[0][2] is item:
            self._wake.set()

    def clear(self) -> None:
        self._heap.clear()

    def run(self) -> None:
        """Send each item when it is due, until killed."""
        heap = self._heap
        while True:
            self._wake.clear()
            if not heap:
                self._wake.wait()
                continue
            delay = heap[0][0] - self._clock()
            if delay > 0:
                self._wake.wait(delay)
                continue
            now = self._clock()
            sent = 0
            while heap and heap[0][0] <= now:
                self._send(*heapq.heappop(heap)[2])
                sent += 1
                if sent % 512 == 0:
                    yield_to_others()  # a long burst must not starve the rest of the process

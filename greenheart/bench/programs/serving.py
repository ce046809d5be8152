"""How a benchmark program that runs on gevent waits: the one ``wait_for_signal``."""

from __future__ import annotations

import sys
from collections.abc import Callable

import attrs

from greenheart.green.lifecycle import Service, wait_for_signal


@attrs.define(eq=False)
class Chores(Service):
    """A program's greenlets beside the services it runs (reporters, readers of orders):
    owned and supervised like any other; one that returns stops them all."""

    work: tuple[Callable[[], object], ...]

    def _open(self) -> None:
        for chore in self.work:
            self._spawn(self._until_done, chore)

    def _until_done(self, chore: Callable[[], object]) -> None:
        chore()
        self.stop()


def serve(*services: Service, chores: tuple[Callable[[], object], ...] = ()) -> int:
    """Run until SIGTERM or SIGINT, or until one of ``services`` stops by itself, with
    ``chores`` beside them: a chore that returns ends the program as a signal would. The exit
    status: 1, saying why on stderr (where the benchmark reads a child's last words) if a
    service or a chore stopped by itself, else 0."""
    with Chores(chores) as helpers:
        stopped = wait_for_signal(*services, helpers)
    if stopped is None or (stopped is helpers and stopped.exception is None):
        return 0
    why = stopped.exception if stopped.exception is not None else "it stopped"
    sys.stderr.write(f"{type(stopped).__name__} stopped: {why!r}\n")
    return 1

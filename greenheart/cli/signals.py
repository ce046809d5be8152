"""Running until Ctrl-C or SIGTERM, or until something the command runs stops by itself.

:func:`~greenheart.green.lifecycle.wait_for_signal` is re-exported for the commands."""

from __future__ import annotations

import sys
from collections.abc import Callable

import gevent

from greenheart.green.lifecycle import Service, wait_for_signal

__all__ = ["exit_status", "serve", "wait_for_signal"]


def exit_status(command: str, stopped: Service | None) -> int:
    """0 after a signal; 1, saying why on stderr, when ``stopped`` stopped by itself."""
    if stopped is None:
        return 0
    cause = stopped.exception
    why = f"{type(cause).__name__}: {cause}" if cause is not None else "it stopped"
    print(f"greenheart {command}: {type(stopped).__name__} stopped: {why}", file=sys.stderr)
    return 1


def serve(
    command: str,
    service: Service,
    banner: str,
    status_line: Callable[[], str] | None = None,
    every: float = 5.0,
    *,
    last_status: bool = False,
) -> int:
    """Run ``service`` until a signal or its own stop, printing ``banner`` first and
    ``status_line()``, if given, every ``every`` seconds (and once more at the end with
    ``last_status``); the exit status."""
    with service:
        print(banner, file=sys.stderr, flush=True)
        reporter = gevent.spawn(_report, status_line, every) if status_line else None
        try:
            stopped = wait_for_signal(service)
        finally:
            if reporter is not None:
                reporter.kill()
        if last_status and status_line:
            print(status_line(), flush=True)
    return exit_status(command, stopped)


def _report(status_line: Callable[[], str], every: float) -> None:
    while True:
        gevent.sleep(every)
        print(status_line(), flush=True)

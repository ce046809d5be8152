"""Running until Ctrl-C or SIGTERM, or until something the command runs stops by itself."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import gevent
import gevent.event

from greenheart.green.lifecycle import Service


def wait_for_signal(*services: Service) -> Service | None:
    """Return when SIGINT or SIGTERM arrives (None), or when one of ``services`` stops by
    itself (that one); other greenlets run meanwhile."""
    stop = gevent.event.Event()

    def stopped(service: Service, error: BaseException | None) -> None:
        stop.set()

    for service in services:
        service.add_stop_handler(stopped)
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        if all(service.running for service in services):
            stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        for service in services:
            service.remove_stop_handler(stopped)
    return next((service for service in services if not service.running), None)


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
    status_line: Callable[[], str],
    every: float,
    *,
    last_status: bool = False,
) -> int:
    """Run ``service`` until a signal or its own stop, printing ``status_line()`` every
    ``every`` seconds (and once more at the end with ``last_status``); the exit status."""
    with service:
        print(banner, file=sys.stderr, flush=True)
        reporter = gevent.spawn(_report, status_line, every)
        try:
            stopped = wait_for_signal(service)
        finally:
            reporter.kill()
        if last_status:
            print(status_line(), flush=True)
    return exit_status(command, stopped)


def _report(status_line: Callable[[], str], every: float) -> None:
    while True:
        gevent.sleep(every)
        print(status_line(), flush=True)

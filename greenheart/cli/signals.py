"""Running until Ctrl-C or SIGTERM, from the gevent hub."""

from __future__ import annotations

import signal

import gevent
import gevent.event


def wait_for_signal() -> None:
    """Return when SIGINT or SIGTERM arrives; other greenlets run meanwhile."""
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()

"""One life for every long-lived object: made, running, stopped; and nothing dies silently.

:class:`~greenheart.green.monitor.HeartMonitor`, :class:`~greenheart.green.heart.Heart`,
:class:`~greenheart.green.fleet.HeartFleet`, the event stream, the ZAP authenticator and the
metrics server all live it, so they all behave alike:

- :meth:`Service.start` opens what the object owns, spawns its greenlets and returns at once;
- :meth:`Service.stop` ends every greenlet the object spawned and closes what it owns; it is
  safe to call twice, before :meth:`~Service.start`, and from one of the object's own
  greenlets (a handler called by it), which is left to return by itself;
- :attr:`Service.running` says which; the object is a context manager;
- every greenlet is spawned into the object's :class:`gevent.pool.Group` by
  :meth:`Service._spawn`, and :meth:`Service._greenlet_died` is the one place where the
  death of one is seen.

Supervision: when an owned greenlet dies with an exception, its owner stops itself (closing
what it owns), :attr:`~Service.running` becomes False, :attr:`~Service.exception` holds the
cause, one ERROR record is logged, and the stop handlers run. Stop handlers
(:meth:`~Service.add_stop_handler`) run exactly once for each stop, with the object and the
exception that stopped it (None after a plain :meth:`~Service.stop`).

A subclass says what starting and stopping mean in :meth:`~Service._open` and
:meth:`~Service._close`. :func:`wait_for_signal` runs services until SIGINT or SIGTERM, or until
one of them stops by itself: the main loop of a command, or of a process of its own.
"""

from __future__ import annotations

import enum
import logging
import signal
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
import gevent
import gevent.event
import gevent.pool

from greenheart.core.errors import GreenheartError

log = logging.getLogger("greenheart.lifecycle")

S = TypeVar("S", bound="Service")

#: called as ``handler(service, exception)`` when a service stops
StopHandler = Callable[[Any, BaseException | None], Any]


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@attrs.define(eq=False)
class Service:
    """The life cycle shared by greenheart's long-lived objects."""

    #: whether :meth:`start` may be called again after :meth:`stop`
    restartable: ClassVar[bool] = False

    #: what stopped this object, if an owned greenlet died; None while it runs, and after a
    #: plain :meth:`stop`
    exception: BaseException | None = attrs.field(default=None, init=False)
    _state: State = attrs.field(default=State.NEW, init=False)
    _group: gevent.pool.Group = attrs.field(factory=gevent.pool.Group, init=False, repr=False)
    _stop_handlers: list[StopHandler] = attrs.field(factory=list, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._state is State.RUNNING

    def start(self: S) -> S:
        """Open what this object owns and start its greenlets; returns at once, with ``self``."""
        name = type(self).__name__
        if self._state is State.RUNNING:
            raise RuntimeError(f"this {name} is already running")
        if self._state is State.STOPPED and not self.restartable:
            raise RuntimeError(f"this {name} was stopped; make a new one")
        self._state = State.RUNNING
        self.exception = None
        try:
            self._open()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every greenlet this object spawned and close what it owns. Safe to call twice,
        and from a handler."""
        self._stop(None)

    def add_stop_handler(self, handler: StopHandler) -> None:
        """Call ``handler(self, exception)`` each time this object stops: ``exception`` is
        what killed it, or None after a plain :meth:`stop`."""
        if not callable(handler):
            raise TypeError(f"a handler must be callable, got {handler!r}")
        self._stop_handlers.append(handler)

    def remove_stop_handler(self, handler: StopHandler) -> None:
        self._stop_handlers.remove(handler)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every greenlet of this object has ended; False if ``timeout`` passed."""
        return bool(self._group.join(timeout))

    def __enter__(self: S) -> S:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- for subclasses ----------------------------------------------------------------------

    def _open(self) -> None:
        """Open sockets and spawn greenlets; on an exception :meth:`_close` cleans up."""

    def _close(self) -> None:
        """Close what :meth:`_open` opened, even if it opened only part of it."""

    def _spawn(self, run: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        """Run ``run(*args)`` in a greenlet this object owns and supervises."""
        return self._group.spawn(self._supervised, run, *args)

    def _supervised(self, run: Callable[..., Any], *args: Any) -> None:
        try:
            run(*args)
        except gevent.GreenletExit:
            raise
        except BaseException as error:  # whatever it was, the object cannot go on
            self._greenlet_died(run, error)

    def _greenlet_died(self, run: Callable[..., Any], error: BaseException) -> None:
        """The one place where the death of an owned greenlet is seen: the owner stops."""
        self._fail(f"its greenlet {getattr(run, '__qualname__', run)} died", error)

    def _fail(self, why: str, error: BaseException) -> None:
        """Stop because of ``error``: log it once, keep it in :attr:`exception`, tell the stop
        handlers. Nothing if this object is not running (it died of its own stop)."""
        if self._state is not State.RUNNING:
            return
        # an error raised on purpose says what happened; a traceback is for a bug
        trace = None if isinstance(error, GreenheartError) else error
        log.error("%s stopped: %s: %r", type(self).__name__, why, error, exc_info=trace)
        self._stop(error)

    def _stop(self, error: BaseException | None) -> None:
        if self._state is State.STOPPED:
            return
        self._state = State.STOPPED
        self.exception = error
        current = gevent.getcurrent()
        # A handler that stops its caller runs in one of the caller's greenlets: that one
        # ends by itself when the handler returns, and killing it here would cut it short.
        gevent.killall([greenlet for greenlet in self._group if greenlet is not current])
        try:
            self._close()
        finally:
            for handler in tuple(self._stop_handlers):
                try:
                    handler(self, error)
                except Exception:
                    log.exception("stop handler %r of %s raised", handler, type(self).__name__)


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

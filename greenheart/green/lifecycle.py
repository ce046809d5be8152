"""One life for every long-lived object: made, running, stopped.

:class:`~greenheart.green.monitor.HeartMonitor`, :class:`~greenheart.green.heart.Heart`,
:class:`~greenheart.green.fleet.HeartFleet`, the event stream, the ZAP authenticator and the
metrics server all live it, so they all behave alike:

- :meth:`Service.start` opens what the object owns, spawns its greenlets and returns at once;
- :meth:`Service.stop` ends every greenlet the object spawned and closes what it owns; it is
  safe to call twice, before :meth:`~Service.start`, and from one of the object's own
  greenlets (a handler called by it), which is left to return by itself;
- :attr:`Service.running` says which; the object is a context manager;
- every greenlet is spawned into the object's :class:`gevent.pool.Group`, and
  :meth:`Service._greenlet_ended` is the one place where the end of one is seen.

A subclass says what starting and stopping mean in :meth:`~Service._open` and
:meth:`~Service._close`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
import gevent
import gevent.pool

log = logging.getLogger("greenheart.lifecycle")

S = TypeVar("S", bound="Service")


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@attrs.define(eq=False)
class Service:
    """The life cycle shared by greenheart's long-lived objects."""

    #: whether :meth:`start` may be called again after :meth:`stop`
    restartable: ClassVar[bool] = False

    _state: State = attrs.field(default=State.NEW, init=False)
    _group: gevent.pool.Group = attrs.field(factory=gevent.pool.Group, init=False, repr=False)

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
        try:
            self._open()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every greenlet this object spawned and close what it owns. Safe to call twice,
        and from a handler."""
        if self._state is State.STOPPED:
            return
        self._state = State.STOPPED
        current = gevent.getcurrent()
        # A handler that stops its caller runs in one of the caller's greenlets: that one
        # ends by itself when the handler returns, and killing it here would cut it short.
        gevent.killall([greenlet for greenlet in self._group if greenlet is not current])
        self._close()

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
        """Run ``run(*args)`` in a greenlet this object owns."""
        greenlet = self._group.spawn(run, *args)
        greenlet.link(self._greenlet_ended)
        return greenlet

    def _greenlet_ended(self, greenlet: gevent.Greenlet) -> None:
        """Called once for every owned greenlet that ends, however it ends."""
        if greenlet.exception is not None:
            log.error("%s: greenlet %s died: %r", type(self).__name__, greenlet, greenlet.exception)

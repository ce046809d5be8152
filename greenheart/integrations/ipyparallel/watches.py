"""What simulated engines watch, and when they stop: the hub's answers and the controller's pings.

Two greenlets of :class:`~greenheart.integrations.ipyparallel.engines.SimulatedEngines` look
every so often. One looks at the registrations: it gives up on requests the hub left
unanswered, and stops the engines when none could register (``RegistrationFailed``) or when
every engine that was beating has left (``ControllerSilent``). The other is ipengine's check
on its controller: an engine whose heart heard no ping for ``max_heartbeat_misses`` checks in
a row asks the hub to unregister it (:mod:`~greenheart.integrations.ipyparallel.registrar`),
and dies.

Every decision is the :class:`~greenheart.core.registrations.Registry`'s and the
:class:`~greenheart.core.pingwatch.PingWatch`'s; these loops keep time and act.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import gevent

from greenheart.core.errors import GreenheartError
from greenheart.core.pingwatch import PingWatch
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.registrations import UNANSWERED_WARNING, RegistrationStatus, Registry
from greenheart.green.fleet import HeartFleet
from greenheart.integrations.ipyparallel.connection import ControllerConnection
from greenheart.integrations.ipyparallel.registrar import Registrar

log = logging.getLogger("greenheart.engines")

#: seconds between looks for requests gone unanswered and registrations purged
CHECK_INTERVAL = 0.5

#: ipengine checks for its controller's pings every heart period plus this, in ms
PING_CHECK_SLACK_MS = 500.0


class RegistrationFailed(GreenheartError):
    """Every engine that asked was refused or went unanswered: none could register."""


class ControllerSilent(GreenheartError):
    """Every engine left, hearing no ping from the controller: there is nobody left to run."""


@attrs.define(eq=False)
class Watches:
    """The watches of the engines whose records are in ``registry`` and hearts in ``fleet``:
    greenlets of the engines (:meth:`spawn`) that end them by raising."""

    registry: Registry
    fleet: HeartFleet
    registrar: Registrar
    connection: ControllerConnection
    limited: RateLimitedLog
    clock: Callable[[], float]
    #: as ipengine's trait; 0 never gives up
    max_heartbeat_misses: int

    def spawn(self, spawn: Callable[..., object]) -> None:
        """Run the watches as greenlets of ``spawn``'s owner: ipengine's check only when an
        engine may give up."""
        spawn(self.registrations)
        if self.max_heartbeat_misses:
            spawn(self.controller)

    def registrations(self) -> None:
        """Give up on requests unanswered in time; stop when no engine could register, or
        when every engine left."""
        while True:
            gevent.sleep(CHECK_INTERVAL)
            look = self.registry.look(self.clock(), beating=bool(self.fleet.alive))
            for uuid in look.unanswered:
                self.limited(
                    logging.ERROR,
                    "unanswered",
                    "no answer from the hub at %s to engine %s in %g s",
                    self.connection.registration_url,
                    uuid,
                    self.registry.reply_timeout,
                )
            if look.warn_unanswered:
                log.error(
                    "no answer yet from the hub at %s, %g s after the first request: is the"
                    " key right? (the hub answers nothing it cannot verify)",
                    self.connection.registration_url,
                    UNANSWERED_WARNING,
                )
            if look.none_registered:
                raise RegistrationFailed(self._why_none_registered(look.status))
            if look.everyone_left:
                raise ControllerSilent(
                    f"all {look.status.left} engines that were beating left, hearing no ping"
                    f" from the controller at {self.connection.ping_url} in"
                    f" {self.max_heartbeat_misses} checks: is it still running?"
                )

    def _why_none_registered(self, status: RegistrationStatus) -> str:
        url = self.connection.registration_url
        if status.refused:
            return f"the hub at {url} refused all {status.asked} engines: {status.last_error}"
        return (
            f"no answer from a hub at {url} to any of {status.asked} engines in"
            f" {self.registry.reply_timeout:g} s: either no controller listens there, or its"
            " hub cannot verify the requests because the key is wrong (ipyparallel's hub then"
            " logs 'Invalid Signature' and answers nothing)"
        )

    def controller(self) -> None:
        """ipengine's check on the controller: an engine whose heart heard no ping for
        ``max_heartbeat_misses`` checks in a row leaves."""
        watch = PingWatch(self.max_heartbeat_misses)
        while True:
            period = self.registry.period_ms  # known from the first acceptance on
            gevent.sleep(((period or 1000.0) + PING_CHECK_SLACK_MS) / 1000)
            if period is None:
                continue
            beating = {heart.decode() for heart in self.fleet.alive}
            pings = {
                uuid: self.fleet.counters(uuid.encode()).pings
                for uuid in self.registry.watched(beating)
            }
            for uuid in watch.check(pings):
                self._leave(uuid, period + PING_CHECK_SLACK_MS)

    def _leave(self, uuid: str, check_ms: float) -> None:
        """As ipengine does when its controller has gone silent: ask to be unregistered, and
        die."""
        self.registry.left(uuid, self.clock())
        self.limited(
            logging.WARNING,
            "left",
            "engine %s heard no ping from the controller in %d checks of %g ms: it asks to be"
            " unregistered and dies, as ipengine does",
            uuid,
            self.max_heartbeat_misses,
            check_ms,
        )
        self.registrar.ask_to_leave(self.registry[uuid].engine_id)
        self.fleet.kill([uuid.encode()])

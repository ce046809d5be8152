"""greenheart's monitor as an ipyparallel controller's heart monitor.

``IPController`` starts its heart monitor as ``Process(target=start_heartmonitor, kwargs=...)``;
:func:`start_heartmonitor` takes the same arguments, so
:mod:`~greenheart.integrations.ipyparallel.controller` can put it in the stock one's place.
It binds the PUB and ROUTER the engines' hearts connect to, and tells the hub who joined and
who stopped through :class:`HubReporter`, in the hub's own messages: Session-signed
``new_heart`` and ``stopped_heart``, content ``{"hearts": [...]}``, on an XPUB connected to
the hub's monitor address.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

import attrs
import gevent
import gevent.event
import zmq
import zmq.green

from greenheart.green.curve import ClientCurve, KeyPair, ServerCurve
from greenheart.green.lifecycle import Service, wait_for_signal
from greenheart.green.limits import raise_open_file_limit
from greenheart.green.monitor import HeartMonitor
from greenheart.green.orphans import die_with_parent
from greenheart.green.sockets import close_sockets, connect, default_context

log = logging.getLogger("greenheart.ipyparallel")

NEW_HEART = "new_heart"
STOPPED_HEART = "stopped_heart"

#: the hub's SUB sorts its monitor traffic by the first frame; the empty frame ends the
#: identities (without it the hub cannot find the message's signature)
HUB_TOPIC = [b"heartmonitor", b""]

#: seconds between warnings while the hub has not subscribed to the monitor's reports
SUBSCRIPTION_WARNING_INTERVAL = 10.0

#: seconds the monitor's process may take to stop once a signal asked it to (the state's last
#: write), before SIGALRM ends it
STOP_SECONDS = 5.0


@attrs.define(eq=False)
class HubReporter(Service):
    """Tells an ipyparallel hub of ``monitor``'s new and failed hearts.

    Events are held until the hub has subscribed (an XPUB drops what nobody subscribed to
    yet), and those that happen together (a beat's, or a batch of closed connections') go
    in one message per kind, in the order they happened: a heart that failed and came back
    is reported stopped, then new.
    """

    monitor: HeartMonitor
    monitor_url: str
    #: a ``jupyter_client.session.Session`` with the cluster's key: it signs every message
    session: Any
    #: the hub's SUB is a CURVE server when the cluster uses CURVE, with the controller's keys
    curve: ClientCurve | None = None
    context: zmq.green.Context | None = None
    #: reports sent, and hearts named in them
    messages: int = attrs.field(default=0, init=False)
    reported: dict[str, int] = attrs.field(
        factory=lambda: {NEW_HEART: 0, STOPPED_HEART: 0}, init=False
    )
    #: whether the hub has subscribed
    subscribed: bool = attrs.field(default=False, init=False)
    _socket: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _events: list[tuple[str, bytes]] = attrs.field(factory=list, init=False)
    _wake: gevent.event.Event = attrs.field(factory=gevent.event.Event, init=False)

    def _open(self) -> None:
        context = self.context or default_context()
        socket = self._socket = context.socket(zmq.XPUB)
        socket.linger = 0
        socket.setsockopt(zmq.SNDHWM, 0)  # as the hub's SUB: a report is never dropped
        if self.curve is not None:
            self.curve.apply(socket)
        connect(socket, self.monitor_url, "hub reports")
        self.monitor.add_new_heart_handler(self._new_heart)
        self.monitor.add_heart_failure_handler(self._heart_failure)
        self._spawn(self._report)

    def _close(self) -> None:
        for remove, handler in (
            (self.monitor.remove_new_heart_handler, self._new_heart),
            (self.monitor.remove_heart_failure_handler, self._heart_failure),
        ):
            with contextlib.suppress(ValueError):  # removed already
                remove(handler)
        close_sockets(self._socket)

    def _new_heart(self, heart: bytes) -> None:
        self._events.append((NEW_HEART, heart))
        self._wake.set()

    def _heart_failure(self, heart: bytes) -> None:
        self._events.append((STOPPED_HEART, heart))
        self._wake.set()

    def _report(self) -> None:
        socket = self._socket
        assert socket is not None
        log.debug("waiting for the hub's subscription on %s", self.monitor_url)
        while not socket.poll(round(SUBSCRIPTION_WARNING_INTERVAL * 1000), zmq.POLLIN):
            log.warning(
                "the hub has not subscribed to heart reports on %s yet; %d events held",
                self.monitor_url,
                len(self._events),
            )
        socket.recv()
        self.subscribed = True
        log.info("the hub subscribed to heart reports on %s", self.monitor_url)
        while True:
            self._wake.wait()
            self._wake.clear()
            events, self._events = self._events, []
            for kind, hearts in _runs(events):
                self.session.send(
                    socket,
                    kind,
                    content={"hearts": [heart.decode("utf8", "replace") for heart in hearts]},
                    ident=HUB_TOPIC,
                )
                self.messages += 1
                self.reported[kind] += len(hearts)


def _runs(events: list[tuple[str, bytes]]) -> list[tuple[str, list[bytes]]]:
    """Consecutive events of one kind, grouped, in order."""
    runs: list[tuple[str, list[bytes]]] = []
    for kind, heart in events:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(heart)
        else:
            runs.append((kind, [heart]))
    return runs


def controller_log_level(passed: int | str) -> int | str:
    """The controller's ``--log-level``. ipyparallel passes its logger's effective level, which
    traitlets leaves at DEBUG whatever was asked (its handlers filter); a forked child still
    has the controller app itself, and its ``log_level``. Under spawn, the level passed."""
    try:
        from ipyparallel.controller.app import IPController

        if IPController.initialized():
            return IPController.instance().log_level
    except Exception:  # no app to ask: keep what was passed
        pass
    return passed


def _configure_logging(log_level: int | str) -> None:
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s.%(msecs)03d [%(name)s] %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    logging.getLogger("greenheart").setLevel(log_level)


def start_heartmonitor(
    ping_url: str,
    pong_url: str,
    monitor_url: str,
    log_level: int | str = logging.INFO,
    curve_publickey: bytes | None = None,
    curve_secretkey: bytes | None = None,
    *,
    fail_on_disconnect: bool = False,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
    record: str | None = None,
    **heart_monitor_kwargs: Any,
) -> None:
    """ipyparallel's ``start_heartmonitor``, with greenheart's monitor: runs until SIGTERM.

    For a process of its own (``Process(target=start_heartmonitor, kwargs=...)``), under any
    start method. ``config`` (a traitlets ``Config``) gives the period, the misses allowed and
    the Session key; with ``curve_secretkey`` the monitor is a CURVE server with the
    controller's keys and its reports go to the hub encrypted.
    """
    die_with_parent()
    _shield_stop()
    raise_open_file_limit()  # a descriptor for every engine's connection
    _configure_logging(controller_log_level(log_level))
    config = heart_monitor_kwargs.pop("config", None)
    for name in heart_monitor_kwargs:
        log.warning("start_heartmonitor: ignoring %s: greenheart's monitor does not use it", name)
    status = run_heartmonitor(
        ping_url,
        pong_url,
        monitor_url,
        config=config,
        curve_publickey=curve_publickey,
        curve_secretkey=curve_secretkey,
        fail_on_disconnect=fail_on_disconnect,
        http_port=http_port,
        http_host=http_host,
        record=record,
    )
    raise SystemExit(status)


def _shield_stop() -> None:
    """ipcontroller terminates its heart monitor twice: at the signal that stops it, and again
    as it exits, a few milliseconds later. Without a handler left for the second (the
    first's are gone once the stop begins) it would kill the process mid-stop, the state's
    last write lost. These handlers take every SIGINT and SIGTERM of the process's life; the
    first arms a timer, so that a stop that hangs still ends, by SIGALRM, in STOP_SECONDS."""

    def stopping() -> None:
        if not signal.getitimer(signal.ITIMER_REAL)[0]:
            signal.setitimer(signal.ITIMER_REAL, STOP_SECONDS)

    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping)


def run_heartmonitor(
    ping_url: str,
    pong_url: str,
    monitor_url: str,
    *,
    config: Any = None,
    curve_publickey: bytes | None = None,
    curve_secretkey: bytes | None = None,
    fail_on_disconnect: bool = False,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
    record: str | None = None,
) -> int:
    """Run the monitor and its reporter (and, with ``http_port``, its live page: see
    :mod:`greenheart.integrations.live`; with ``record``, recording to that file) until SIGTERM
    or SIGINT; the exit status.

    1 if the monitor or the reporter died (the cause is logged), else 0.
    """
    from jupyter_client.session import Session
    from traitlets.config import Config

    from greenheart.integrations.ipyparallel.traits import monitor_settings

    config = config if config is not None else Config()
    settings = monitor_settings(config)
    keys = KeyPair(curve_publickey, curve_secretkey) if curve_secretkey else None
    monitor = HeartMonitor.bind(
        ping_url,
        pong_url,
        curve=ServerCurve(keys, allowed=None) if keys is not None else None,
        fail_on_disconnect=fail_on_disconnect,
        record=record,
        log=logging.getLogger("greenheart.monitor"),
        **settings,
    )
    # the controller is the hub's CURVE server and this process its client, with one key pair
    curve = ClientCurve(keys.public, keys) if keys is not None else None
    reporter = HubReporter(monitor, monitor_url, Session(config=config), curve=curve)
    with monitor, reporter:
        rule = monitor.rules.mass_silence
        log.info(
            "greenheart heart monitor: every %g ms, %d misses allowed%s%s, %s; pings %s, pongs %s",
            monitor.period,
            monitor.rules.max_misses,
            ", a CURVE server" if keys is not None else "",
            ", failing hearts whose connection closes" if fail_on_disconnect else "",
            "no mass-silence rule"
            if rule is None
            else f"holding more than {rule.share:g} of the hearts (at least {rule.min_hearts})"
            f" silent at once for up to {rule.hold} beats",
            monitor.ping_addr,
            monitor.pong_addr,
        )
        services: list[Service] = [monitor, reporter]
        if http_port is not None:
            from greenheart.integrations.live import LiveServer

            page = LiveServer(monitor, http_port, http_host).start()
            services.append(page)
            log.info("greenheart heart monitor: the live page on %s", page.url)
        try:
            stopped = wait_for_signal(*services)
        finally:
            for service in services[2:]:
                service.stop()
    return 1 if stopped is not None and stopped.exception is not None else 0

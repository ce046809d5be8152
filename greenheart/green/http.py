"""The monitor's HTTP servers (its page, its metrics), which never compete with the hearts for
file descriptors.

Every HTTP connection costs a descriptor, as every heart's does: without a cap, idle
connections to the page (a request line and a header, then nothing, as slowloris sends) took
all of them, and no new heart could connect. An :class:`HttpServer` holds at most
``connections`` at once (by default :func:`~greenheart.core.refusal.connection_cap` of the
open-file limit): one more is answered 503 and closed as soon as it is accepted, so the
connections past the cap never hold a descriptor. A connection must send a request's head
whole within ``request_timeout`` seconds of its accept, and a kept-alive one its next request
within ``idle_timeout`` of the last answer (then whole within ``request_timeout``), or it is
closed. Refused and timed-out connections are counted and logged, rate-limited.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import attrs
import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer

from greenheart.core.errors import UsageError
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.refusal import IDLE_SECONDS, REQUEST_SECONDS, ConnectionCap, connection_cap
from greenheart.green.lifecycle import Service

log = logging.getLogger("greenheart.http")

#: what a connection past the cap is told before it is closed
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
    b"Connection: close\r\nRetry-After: 10\r\n\r\ntoo many connections\r\n"
)


class _Handler(WSGIHandler):
    """pywsgi's handler, with a deadline on each request's head and on the wait for the next."""

    server: _Server
    _served = 0
    _timer: gevent.Timeout | None = None
    _idle = False

    def _arm(self, seconds: float, idle: bool) -> None:
        self._timer, self._idle = gevent.Timeout.start_new(seconds), idle

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def read_requestline(self) -> str:
        owner = self.server.owner
        if self._served:  # kept alive: wait for the next request's first byte
            self._arm(owner.idle_timeout, idle=True)
            self.rfile.peek(1)
            self._disarm()
        self._arm(owner.request_timeout, idle=False)
        line: str = super().read_requestline()
        return line

    def read_request(self, raw_requestline: str) -> bool:
        try:
            return bool(super().read_request(raw_requestline))
        finally:
            self._disarm()

    def handle_one_request(self) -> Any:
        try:
            result = super().handle_one_request()
        except gevent.Timeout as timeout:
            if timeout is not self._timer:
                raise
            self.server.owner._timed_out(self.client_address, idle=self._idle)
            return None
        finally:
            self._disarm()
        self._served += 1
        return result


class _Server(WSGIServer):
    """pywsgi's server, holding at most its owner's cap of connections."""

    handler_class = _Handler

    def __init__(self, owner: HttpServer, address: tuple[str, int], app: Any) -> None:
        super().__init__(address, app, log=None, spawn=owner._group.spawn)
        self.owner = owner

    def do_handle(self, sock: Any, address: Any) -> None:
        cap = self.owner.cap
        assert cap is not None
        if not cap.admit():
            _refuse(sock)
            self.owner._refused(address)
            return
        try:
            super().do_handle(sock, address)
        except BaseException:
            cap.closed()
            raise

    def handle(self, sock: Any, address: Any) -> None:
        try:
            super().handle(sock, address)
        finally:
            cap = self.owner.cap
            if cap is not None:
                cap.closed()


def _refuse(sock: Any) -> None:
    """Tell a connection past the cap so, and close it, without waiting for it."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # what it sent, read so that closing sends no RST
            sock.recv(65536)
        sock.send(REFUSED)
    sock.close()


@attrs.define(eq=False)
class HttpServer(Service):
    """A WSGI application served from greenlets, capped: the base of the monitor's page and
    metrics servers, which say what they serve (:meth:`_app`) and where."""

    #: what it serves, for errors, the log and the metrics: ``page``, ``metrics``
    role: ClassVar[str] = "http"

    #: connections held at most; None for :func:`~greenheart.core.refusal.connection_cap` of
    #: the open-file limit when it starts
    connections: int | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(
            [attrs.validators.instance_of(int), attrs.validators.gt(0)]
        ),
    )
    #: seconds a connection has to send a request's head whole
    request_timeout: float = attrs.field(
        default=REQUEST_SECONDS, kw_only=True, validator=attrs.validators.gt(0)
    )
    #: seconds a kept-alive connection may wait for its next request
    idle_timeout: float = attrs.field(
        default=IDLE_SECONDS, kw_only=True, validator=attrs.validators.gt(0)
    )
    #: the cap and its counts (connections held, refused), once started
    cap: ConnectionCap | None = attrs.field(default=None, init=False)
    #: connections closed for a request not whole in time, and kept-alive ones closed idle
    timed_out: int = attrs.field(default=0, init=False)
    idle_closed: int = attrs.field(default=0, init=False)
    _server: _Server | None = attrs.field(default=None, init=False)
    _limited: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    @property
    def server_port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_port)

    def _app(self) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        raise NotImplementedError

    def _serve(self, host: str, port: int) -> None:
        """Serve :meth:`_app` on ``host:port``."""
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.cap = ConnectionCap(self.connections or connection_cap(limit))
        # requests run in this object's group, killed on stop() but not supervised: pywsgi
        # answers a failing request itself, and one bad client must not stop the server
        self._server = _Server(self, (host, port), self._app())
        try:
            self._server.start()
        except OSError as error:
            raise UsageError(f"cannot serve the {self.role} on {host}:{port}: {error}") from error

    def _close(self) -> None:
        if self._server is not None:
            self._server.stop()

    def _refused(self, address: Any) -> None:
        assert self.cap is not None
        self._limited(
            logging.WARNING,
            "refused",
            "the %s server holds %d connections, its cap: refused one from %s",
            self.role,
            self.cap.most,
            address,
        )

    def _timed_out(self, address: Any, *, idle: bool) -> None:
        if idle:
            self.idle_closed += 1
            self._limited(
                logging.DEBUG,
                "idle",
                "the %s server closed a kept-alive connection idle for %g s",
                self.role,
                self.idle_timeout,
            )
            return
        self.timed_out += 1
        self._limited(
            logging.WARNING,
            "timed out",
            "the %s server closed a connection from %s that sent no whole request within %g s",
            self.role,
            address,
            self.request_timeout,
        )

"""Reading pongs: what the monitor's ROUTER received, into its ledger.

The pong greenlet (:meth:`PongReader.run`) drains the socket in batches of
:data:`~greenheart.core.judging.PONG_BATCH`, yielding between them, so that a flood cannot
starve the beat; after a drain that read answers it lets more gather for a moment
(:func:`~greenheart.core.judging.gather_seconds`), since being woken for every few answers
costs ZeroMQ's signalling for each. The beat drains too, before it judges
(:meth:`PongReader.drain`, as :class:`~greenheart.core.judging.CatchUp` asks).

A drain reads each message once, through the plain pyzmq methods (the green wrapper would poll
the socket's state after every frame, and nothing here can block), and hands it on one of two
ways. Without CURVE keys or phi's arrival times, a drain's answers go to the ledger together
(:meth:`Ledger.pongs <greenheart.core.ledger.Ledger.pongs>`), read at one time, when every
heart answered on the connection it is tied to; anything else goes message by message, with
the descriptor it came in on and the key it was sent with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import gevent
import zmq

from greenheart.core.errors import SocketClosed
from greenheart.core.judging import PONG_BATCH, gather_seconds
from greenheart.core.values import ANSWERS
from greenheart.green.connections import ConnectionWatch
from greenheart.green.hub import yield_to_others
from greenheart.green.monitor.logs import MonitorLog
from greenheart.green.monitor.sockets import sender_key
from greenheart.green.sockets import green_watcher_paused, wait_for_messages

if TYPE_CHECKING:
    from greenheart.green.monitor.monitor import HeartMonitor

#: seconds the pong greenlet sleeps at most before it looks at the queue again, in case
#: an edge on ZeroMQ's descriptor was missed
WAKE_INTERVAL = 1.0

# the plain pyzmq method, for the drain (see the module's docstring)
_recv = zmq.Socket.recv


@attrs.define(eq=False)
class PongReader:
    """Reads ``monitor``'s pong socket into its ledger."""

    monitor: HeartMonitor
    log: MonitorLog
    #: the pong socket's connection events: read before a heart is tied to a new connection
    watch: ConnectionWatch
    #: the socket is a CURVE server: every message says which key sent it
    authenticated: bool

    def run(self) -> None:
        """The pong greenlet: drain, wait, drain, while the monitor runs."""
        monitor = self.monitor
        socket, gather = monitor.pongstream, gather_seconds(monitor.period / 1000.0)
        # the monitor reads it without blocking and waits on it here: a green socket's own
        # watcher would only cost a callback at every edge
        with green_watcher_paused(socket):
            while monitor.running:
                if socket.closed:
                    raise SocketClosed("the pong socket was closed while the monitor was running")
                read = self.drain(PONG_BATCH)
                if read == PONG_BATCH:
                    yield_to_others()  # more is queued; let the beat and the program run
                    continue
                if read:  # answers are coming: let them gather, and read them in one drain
                    gevent.sleep(gather)
                    if socket.closed:  # while they gathered; the loop's head says so
                        continue
                wait_for_messages(socket, WAKE_INTERVAL)

    def drain(self, limit: int) -> int:
        """Read up to ``limit`` messages that are already queued, without waiting, and account
        for them; how many were read."""
        monitor = self.monitor
        socket, noblock, authenticated = monitor.pongstream, zmq.NOBLOCK, self.authenticated
        together = not authenticated and monitor.rules.phi is None
        identities: list[bytes] = []
        payloads: list[bytes] = []
        fds: list[int] = []
        key = None
        read = 0
        while read < limit:
            if socket.closed:  # a handler may close it
                break
            try:
                identity = _recv(socket, noblock)
            except zmq.Again:
                break
            read += 1
            # A ROUTER delivers whole messages: the identity, then at least one frame. That
            # frame, uncopied, says whether more follow (cheaper than asking RCVMORE), which key
            # sent it, and which connection it came in on.
            frame = _recv(socket, noblock, copy=False)
            if authenticated:
                key = sender_key(frame)
            try:
                fd = frame.get(zmq.SRCFD)
            except zmq.ZMQError:  # libzmq knows no descriptor for some of a flood's messages
                fd = -1
            if together and not frame.more:
                identities.append(identity)
                payloads.append(frame.bytes)
                fds.append(fd)
                continue
            frames = [identity, frame.bytes]
            while frame.more:
                frame = _recv(socket, noblock, copy=False)
                frames.append(frame.bytes)
            self.account(frames, fd, key)
        if identities:
            self._account_together(identities, payloads, fds)
        return read

    def _account_together(
        self, identities: list[bytes], payloads: list[bytes], fds: list[int]
    ) -> None:
        ledger = self.monitor.ledger
        if not ledger.connections.all_tied(identities, fds):
            for identity, payload, fd in zip(identities, payloads, fds, strict=True):
                self.account([identity, payload], fd, None)
            return
        try:
            odd = ledger.pongs(identities, payloads, self.monitor.clock())
        except Exception:
            self.log.error("pong", "handling a pong failed")
            return
        for pong in odd:
            self.log.bad_pong(pong, None)

    def account(self, frames: list[bytes], fd: int, key: str | None) -> None:
        """One message, with the descriptor it came in on and the key it was sent with."""
        monitor = self.monitor
        ledger, identity = monitor.ledger, frames[0]
        untied = fd >= 0 and not ledger.connections.tied(identity, fd)
        if untied:
            # the one case where a connection event may matter: let the ledger know every
            # connection accepted and closed before this message
            self.watch.read_queued()
            if ledger.connections.gone(fd):  # sent before its connection closed
                ledger.stale(identity, monitor.clock())
                return
        try:
            pong = monitor.handle_pong(frames, key)
            if untied and pong.kind in ANSWERS:
                ledger.tie(pong.heart, fd, monitor.clock())
        except Exception:
            self.log.error("pong", "handling a pong failed")

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

A connection's close is taken after what it sent before it closed (:meth:`PongReader.settle`):
libzmq queues a connection's last messages before it reports the close, so reading what is
queued first takes a heart's leave as a leave, not its close as a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import gevent
import zmq

from greenheart.core.errors import SocketClosed
from greenheart.core.judging import PONG_BATCH, gather_seconds
from greenheart.core.values import ANSWERS, Pong, PongKind
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

#: messages read at most to settle a closed connection: a leave queued behind more may be read
#: after its close (then it still fails its heart as left, unless the close failed it first:
#: ``fail_on_disconnect``)
SETTLE_LIMIT = 16 * PONG_BATCH

# the plain pyzmq method, for the drain (see the module's docstring)
_recv = zmq.Socket.recv

#: a message as :meth:`PongReader.account` takes it: its frames, descriptor and key
_Message = tuple[list[bytes], int, "str | None"]


@attrs.define(eq=False)
class PongReader:
    """Reads ``monitor``'s pong socket into its ledger."""

    monitor: HeartMonitor
    log: MonitorLog
    #: the pong socket's connection events: read before a heart is tied to a new connection
    watch: ConnectionWatch
    #: the socket is a CURVE server: every message says which key sent it
    authenticated: bool
    #: a close is being settled: its connection's events are not read in the middle of it
    _settling: bool = attrs.field(default=False, init=False)
    #: messages read while settling that came in on a connection their heart is not tied to:
    #: handed on at the next drain, once the events before them have been read
    _held: list[_Message] = attrs.field(factory=list, init=False)
    #: the answers the drain under way has read and not yet handed on
    _pending: tuple[list[bytes], list[bytes], list[int]] | None = attrs.field(
        default=None, init=False
    )

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
        for them (those held first); how many were read."""
        if self._held and not self._settling:
            self._release()
        together = not (self.authenticated or self._settling or self.monitor.rules.phi)
        identities: list[bytes] = []
        payloads: list[bytes] = []
        fds: list[int] = []
        outer, self._pending = self._pending, (identities, payloads, fds)
        try:
            read = self._read(limit, together, identities, payloads, fds)
        finally:
            self._pending = outer
        if identities:
            self._account_together(identities, payloads, fds)
        return read

    def settle(self) -> bool:
        """Before a closed connection is taken as closed: hand on what was read, then read what
        is queued, in which is all it sent. A message from a heart not tied to the connection it
        came in on is held, since the events before it cannot be read now; whether any is."""
        if self._settling:
            return bool(self._held)
        self._settling = True
        try:
            if self._pending is not None and self._pending[0]:
                identities, payloads, fds = self._pending
                batch = identities[:], payloads[:], fds[:]
                del identities[:], payloads[:], fds[:]
                self._account_together(*batch)
            self.drain(SETTLE_LIMIT)
        finally:
            self._settling = False
        return bool(self._held)

    def _release(self) -> None:
        """Hand on the messages held while settling, in order."""
        while self._held:
            held, self._held = self._held, []
            for frames, fd, key in held:
                self.account(frames, fd, key)

    def _read(
        self,
        limit: int,
        together: bool,
        identities: list[bytes],
        payloads: list[bytes],
        fds: list[int],
    ) -> int:
        """Read up to ``limit`` messages: answers that may go together into the lists, the rest
        accounted for one by one."""
        socket, noblock, authenticated = self.monitor.pongstream, zmq.NOBLOCK, self.authenticated
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
            self.not_an_answer(pong, None)

    def account(self, frames: list[bytes], fd: int, key: str | None) -> None:
        """One message, with the descriptor it came in on and the key it was sent with."""
        monitor = self.monitor
        ledger, identity = monitor.ledger, frames[0]
        untied = fd >= 0 and not ledger.connections.tied(identity, fd)
        if untied:
            if self._settling:
                self._held.append((frames, fd, key))
                return
            # the one case where a connection event may matter: let the ledger know every
            # connection accepted and closed before this message
            self.watch.read_queued()
            if ledger.connections.gone(fd):  # sent before its connection closed
                payload = frames[1] if len(frames) == 2 else b""
                pong = ledger.stale(identity, monitor.clock(), payload, key, fd)
                if pong.kind is PongKind.LEFT:  # a leave read after the close: still a leave
                    self.not_an_answer(pong, frames)
                return
        try:
            pong = monitor.handle_pong(frames, key, fd)
            if untied and pong.kind in ANSWERS:
                ledger.tie(pong.heart, fd, monitor.clock())
        except Exception:
            self.log.error("pong", "handling a pong failed")

    def not_an_answer(self, pong: Pong, msg: Sequence[bytes] | None) -> None:
        """A heart's leave has failed it (the ledger counted it out): tell the failure handlers.
        Anything else that is not an answer is logged, with its frames if they are at hand."""
        if pong.kind is not PongKind.LEFT:
            self.log.bad_pong(pong, msg)
            return
        # its certificate: the newest of its heart's (a drain's leaves are taken together)
        failures = reversed(self.monitor.ledger.failures)
        failure = next((f for f in failures if f.heart == pong.heart), None)
        if failure is not None:
            self.log.left(failure)
        self.monitor.handle_heart_failure(pong.heart, failure)

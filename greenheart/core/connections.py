"""Which connection each heart answers on, so that a connection that closes names its hearts.

When a heart's process dies, its kernel closes its connection at once, and libzmq tells the
monitor: its socket monitor reports each connection the ROUTER accepts and each that closes,
by file descriptor, and every message says which descriptor it came in on. Descriptor
numbers are reused, so a descriptor alone cannot name a connection. The book gives each
connection a serial number, in the order the connections were accepted (the socket
monitor's ACCEPTED events arrive in that order, each one before the first message of its
connection and after the close of the connection its descriptor had before).

A connection that has closed may still deliver what it sent before it closed (libzmq hands
on a pipe's queued messages after its peer is gone): the book remembers the descriptors
whose connection closed, until a new connection is accepted on one, so that such a leftover
answer is not taken for a heart answering on a connection of its own.

A heart is tied to the newest connection it has answered on; an answer on an older one (a
connection that ``ROUTER_HANDOVER`` replaced, still draining) does not tie it back. When a
connection closes, the hearts still tied to it died with it. A heart that has already
answered on a new connection is not among them.

The driver must have handed the book every event queued before a message it ties, which it
does only when a heart answers on a descriptor other than the one it is tied to: that is
the one case where an event may matter (a new connection), and the fast path costs a
dictionary lookup: for a whole drain, :meth:`ConnectionBook.all_tied`.

A known heart whose connection closed, without being failed for it, is *down* until it
answers on another connection (or fails): a heart that is down is never held in a mass
silence, since its silence is its own, and its certificate says its connection closed. One
whose connection timed out (:mod:`greenheart.core.transport`) is down too, and marked so: its
certificate says it is unreachable.
"""

from __future__ import annotations

import itertools
from collections.abc import Container

import attrs


@attrs.define
class ConnectionBook:
    """Connections by serial number, and the hearts tied to them."""

    #: descriptor -> the serial of the connection open on it now
    _serial_at: dict[int, int] = attrs.field(factory=dict, init=False)
    #: heart -> (descriptor, serial) of the newest connection it answered on
    _tie: dict[bytes, tuple[int, int]] = attrs.field(factory=dict, init=False)
    #: heart -> the descriptor it is tied to (``_tie``'s, for a drain to look up in bulk)
    fd_of: dict[bytes, int] = attrs.field(factory=dict, init=False)
    #: serial -> the hearts tied to that connection
    _hearts_on: dict[int, set[bytes]] = attrs.field(factory=dict, init=False)
    _serials: itertools.count[int] = attrs.field(factory=itertools.count, init=False)
    #: descriptors whose connection closed, with none accepted on them since
    _gone: set[int] = attrs.field(factory=set, init=False)
    #: known hearts whose connection closed, until they answer on another or fail
    _down: set[bytes] = attrs.field(factory=set, init=False)
    #: of those, the ones whose connection timed out
    _timed_out: set[bytes] = attrs.field(factory=set, init=False)

    def __len__(self) -> int:
        """Hearts tied to a connection."""
        return len(self._tie)

    def accepted(self, fd: int) -> None:
        """A connection was accepted on descriptor ``fd``."""
        self._serial_at[fd] = next(self._serials)
        self._gone.discard(fd)

    def closed(self, fd: int, known: Container[bytes] = ()) -> tuple[bytes, ...]:
        """The connection on ``fd`` closed: the hearts that were tied to it, now untied; those
        of them ``known`` are down."""
        serial = self._serial_at.pop(fd, None)
        self._gone.add(fd)
        if serial is None:
            return ()
        hearts = self._hearts_on.pop(serial, set())
        for heart in hearts:
            del self._tie[heart]
            del self.fd_of[heart]
            if heart in known:
                self._down.add(heart)
        return tuple(sorted(hearts))

    def time_out(self, heart: bytes) -> None:
        """``heart``, down, went down because its connection timed out."""
        if heart in self._down:
            self._timed_out.add(heart)

    def timed_out(self, heart: bytes) -> bool:
        """Whether ``heart`` is down because its connection timed out."""
        return heart in self._timed_out

    def is_down(self, heart: bytes) -> bool:
        """Whether ``heart``'s connection closed under it, and it has not answered on another
        since."""
        return heart in self._down

    @property
    def down_count(self) -> int:
        """Known hearts that are down."""
        return len(self._down)

    def connected(self, heart: bytes) -> bool | None:
        """Whether ``heart``'s connection is up: True if it is tied to an open one (a failed
        heart stays tied), False if it is down, None if the book knows neither (it never
        answered on a connection the book saw, or it failed while down)."""
        if heart in self._tie:
            return True
        return False if heart in self._down else None

    def failed(self, heart: bytes) -> None:
        """``heart`` failed: it is no longer down. It stays tied, if it is: an answer on that
        connection again is how a false failure is told."""
        self._down.discard(heart)
        self._timed_out.discard(heart)

    def all_tied(self, hearts: list[bytes], fds: list[int]) -> bool:
        """Whether each heart is tied to the descriptor beside it (a drain's common case, in C)."""
        return list(map(self.fd_of.get, hearts)) == fds

    def gone(self, fd: int) -> bool:
        """Whether the connection on ``fd`` has closed (none accepted on it since): what comes
        in on it now was sent before it closed."""
        return fd in self._gone

    def serial_of(self, heart: bytes) -> int | None:
        """The serial of the connection ``heart`` is tied to; None if it is tied to none (its
        connection closed, or it never answered)."""
        tie = self._tie.get(heart)
        return None if tie is None else tie[1]

    def tied(self, heart: bytes, fd: int) -> bool:
        """Whether ``heart`` is tied to the connection on ``fd`` already (the fast path)."""
        tie = self._tie.get(heart)
        return tie is not None and tie[0] == fd

    def own(self, heart: bytes, fd: int) -> bool:
        """Whether what ``heart`` sent on descriptor ``fd`` (-1: not known) may be its own: it is
        tied to that connection, or to none (it never answered on one the book saw)."""
        tie = self._tie.get(heart)
        return fd < 0 or tie is None or tie[0] == fd

    def answered(self, heart: bytes, fd: int) -> None:
        """``heart`` answered on descriptor ``fd``; every event before the answer has been
        handed in. Ties it to that connection, unless it is tied to a newer one."""
        serial = self._serial_at.get(fd)
        if serial is None:
            # a connection accepted before the book was watching
            serial = self._serial_at[fd] = next(self._serials)
        tie = self._tie.get(heart)
        if tie is not None:
            if tie[1] >= serial:
                return
            self._untie(heart, tie[1])
        self._tie[heart] = (fd, serial)
        self.fd_of[heart] = fd
        self._hearts_on.setdefault(serial, set()).add(heart)
        self._down.discard(heart)
        self._timed_out.discard(heart)

    def _untie(self, heart: bytes, serial: int) -> None:
        del self._tie[heart]
        del self.fd_of[heart]
        self._untie_serial(heart, serial)

    def _untie_serial(self, heart: bytes, serial: int) -> None:
        hearts = self._hearts_on.get(serial)
        if hearts is not None:
            hearts.discard(heart)
            if not hearts:
                del self._hearts_on[serial]


def backlog_is_short(backlog: int, endpoint: str, wanted: int) -> bool:
    """Whether a socket listening on ``endpoint`` queues fewer new connections than
    ``wanted`` (its ``backlog``, as it was when it bound): when more hearts connect at once
    than the kernel queues, the rest wait for SYN retries or come in through SYN cookies. An
    inproc socket has no such queue, and one not bound yet (``endpoint`` empty) none to
    judge."""
    return endpoint.startswith(("tcp://", "ipc://")) and backlog < wanted


def listen_address(endpoint: str) -> tuple[str, int] | str | None:
    """What ``getsockname`` says of the listener ZeroMQ made for ``endpoint``: ``(host,
    port)`` for TCP, the path for IPC; None for an endpoint without one (inproc, abstract
    IPC, an address that does not parse)."""
    transport, _, address = endpoint.partition("://")
    if transport == "ipc":
        return address if address and not address.startswith("@") else None
    if transport != "tcp":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)

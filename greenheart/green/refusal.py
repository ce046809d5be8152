"""Refusing new connections while the process is out of descriptors, keeping those made.

:class:`~greenheart.core.refusal.Refusal` decides when; a :class:`ConnectionGuard` looks at the
descriptors a few times a second, and while refusing it makes each of the monitor's TCP
listening sockets drop new connections: a socket filter (BPF) that drops every packet,
attached to the listener, discards the SYN of a new connection (its peer retries, as TCP
does) and leaves every connection already made alone, since each has a socket of its own.
The queue of connections waiting for ``accept`` then only empties (libzmq takes them as the
descriptors of unfinished handshakes come free, within its handshake interval), and once it
is empty the listener is no longer readable and ZeroMQ's I/O thread stops spinning on it.
The kernel counts the packets a listener dropped (``SO_MEMINFO``), which tells the rule when
the storm is over.

libzmq offers nothing better (docs/bench.md has the measurements): unbinding and binding the
endpoint again closes every connection accepted through it, hearts included; a lower
backlog leaves the listener readable; and a descriptor kept in reserve, freed to accept and
reset a queued connection from Python, is taken by libzmq's spinning ``accept`` before
Python's can use it. This is Linux only (the filter, and /proc to find the listeners);
elsewhere the guard still says that the monitor is out of descriptors, and does nothing else.

The same filter keeps the event stream's sockets under their
:class:`~greenheart.core.refusal.ConnectionCap`: :class:`CappedListeners` counts their
connections by their socket monitors, and filters their listeners while the cap is full.
"""

from __future__ import annotations

import _socket
import contextlib
import ctypes
import logging
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator

import attrs
import gevent
import zmq

from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.refusal import Change, ConnectionCap, Refusal, headroom
from greenheart.green.connections import ConnectionWatch
from greenheart.green.sockets import endpoint, listener_descriptor

log = logging.getLogger("greenheart.refusal")

#: seconds between two looks at the descriptors
LOOK_EVERY = 0.25

# <asm-generic/socket.h>
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_MEMINFO = 55
#: <linux/sock_diag.h>: the index of the drop count in SO_MEMINFO's array of u32, and room
#: for the whole array
SK_MEMINFO_DROPS = 8
MEMINFO_BYTES = 64


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


#: one classic BPF instruction, BPF_RET | BPF_K with 0: keep no byte of any packet. The kernel
#: copies the program when it is attached; these stay alive for the pointer in _DROP_ALL.
_DROP_ALL_CODE = (_SockFilter * 1)(_SockFilter(0x06, 0, 0, 0))
_DROP_ALL = bytes(_SockFprog(1, _DROP_ALL_CODE))


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed meanwhile, or the directory's own descriptor
        return ""


def _free_descriptors(wanted: int) -> int:
    """How many descriptors could be opened now, counted up to ``wanted``."""
    opened: list[int] = []
    try:
        for _ in range(wanted):
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    finally:
        for fd in opened:
            os.close(fd)
    return len(opened)


@attrs.define(eq=False)
class Listeners:
    """The TCP listeners libzmq made for some sockets' endpoints (Linux only: found through
    /proc), which a drop-all filter closes to new connections and leaves every connection made
    alone."""

    #: descriptor -> what /proc says it is, for each listener found
    _found: dict[int, str] = attrs.field(factory=dict, init=False)
    _limited: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    def find(self, sockets: Iterable[zmq.Socket]) -> None:
        if sys.platform.startswith("linux"):
            for socket_ in sockets:
                address = endpoint(socket_)
                # a storm of new connections comes over TCP
                fd = listener_descriptor(address) if address.startswith("tcp://") else None
                if fd is not None:
                    self._found[fd] = _link(str(fd))

    def clear(self) -> None:
        self._found.clear()

    def dropped(self) -> int:
        """Packets the listeners dropped so far: SYNs their filter refused, and connections
        their full accept queues turned away (the kernel's SK_MEMINFO_DROPS)."""
        dropped = 0
        for listener in self._borrowed():
            with contextlib.suppress(OSError, struct.error):  # an older kernel
                meminfo = listener.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, MEMINFO_BYTES)
                dropped += struct.unpack_from("I", meminfo, SK_MEMINFO_DROPS * 4)[0]
        return dropped

    def filter(self, drop: bool) -> None:
        """Drop every new connection (``drop``), or none."""
        option, program = (SO_ATTACH_FILTER, _DROP_ALL) if drop else (SO_DETACH_FILTER, 0)
        for listener in self._borrowed():
            try:
                listener.setsockopt(socket.SOL_SOCKET, option, program)
            except OSError as error:  # no BPF here: say so once in a while, go on
                self._limited(logging.WARNING, "filter", "cannot filter a listener: %s", error)

    def _borrowed(self) -> Iterator[_socket.socket]:
        """Each listener still ours, as a socket object over its descriptor, which it leaves
        open (libzmq owns it); the listeners libzmq closed meanwhile are forgotten."""
        for fd in list(self._found):
            if _link(str(fd)) != self._found.get(fd):  # libzmq closed it
                del self._found[fd]
                continue
            listener = _socket.socket(fileno=fd)
            try:
                yield listener
            finally:
                listener.detach()


@attrs.define(eq=False)
class ConnectionGuard:
    """Refuses new connections to ``sockets``' TCP listeners while the process is out of
    descriptors; its owner runs :meth:`run` in a greenlet, between :meth:`open` and
    :meth:`close`."""

    sockets: tuple[zmq.Socket, ...]
    refusal: Refusal = attrs.field(
        factory=lambda: Refusal(headroom(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    )
    _listeners: Listeners = attrs.field(factory=Listeners, init=False)

    @property
    def refusing(self) -> bool:
        return self.refusal.refusing

    def open(self) -> None:
        self._listeners.find(self.sockets)

    def close(self) -> None:
        if self.refusing:
            self._listeners.filter(drop=False)
        self._listeners.clear()

    def run(self) -> None:
        while True:
            self.look()
            gevent.sleep(LOOK_EVERY)

    def look(self) -> None:
        """Count the free descriptors, and refuse or admit connections as the rule says."""
        change = self.refusal.look(
            free=_free_descriptors(self.refusal.wanted()),
            dropped=self._listeners.dropped(),
            now=time.monotonic(),
        )
        if change is Change.REFUSE:
            self._listeners.filter(drop=True)
            log.warning(
                "out of file descriptors: refusing new connections until %d are free; the"
                " connections made, hearts included, are kept",
                self.refusal.headroom,
            )
        elif change is Change.ADMIT:
            self._listeners.filter(drop=False)
            log.warning("file descriptors free again and the storm over: admitting new connections")


@attrs.define(eq=False)
class CappedListeners:
    """Closes ``sockets``' TCP listeners to new connections while ``cap`` is full, counting
    their connections by their socket monitors (:class:`ConnectionWatch`); the owner runs each
    of :attr:`watches`' ``run`` in a greenlet, between :meth:`open` and :meth:`close`. ``role``
    names the sockets for the log."""

    sockets: tuple[zmq.Socket, ...]
    cap: ConnectionCap
    role: str
    watches: list[ConnectionWatch] = attrs.field(factory=list, init=False)
    #: the descriptors of the connections held
    _held: set[int] = attrs.field(factory=set, init=False)
    _listeners: Listeners = attrs.field(factory=Listeners, init=False)

    def open(self) -> None:
        self._listeners.find(self.sockets)
        for socket_ in self.sockets:
            watch = ConnectionWatch(
                socket_, self.role, on_accepted=self._accepted, on_closed=self._closed
            )
            self.watches.append(watch)
            watch.open()

    def close(self) -> None:
        for watch in self.watches:
            watch.close()
        self.watches.clear()
        if self.cap.full:
            self._listeners.filter(drop=False)
        self._listeners.clear()

    def _accepted(self, fd: int) -> None:
        self._held.add(fd)
        if self.cap.opened() is Change.REFUSE:
            self._listeners.filter(drop=True)
            log.warning(
                "the %s sockets hold %d connections, their cap: refusing new ones until one closes",
                self.role,
                self.cap.open,
            )

    def _closed(self, fd: int) -> None:
        if fd not in self._held:  # accepted before the watch began
            return
        self._held.discard(fd)
        if self.cap.closed() is Change.ADMIT:
            self._listeners.filter(drop=False)
            log.info("the %s sockets are under their cap again: admitting connections", self.role)

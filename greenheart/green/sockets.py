"""Small ZeroMQ helpers shared by the monitor and the hearts."""

from __future__ import annotations

import _socket
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import gevent.socket
import zmq
import zmq.green

from greenheart.core.checks import endpoint_problem
from greenheart.core.connections import listen_address
from greenheart.core.errors import UsageError
from greenheart.core.transport import Keepalive

#: the plain pyzmq option getter, which does not poll the socket's state as the green one does
_base_get = zmq.Socket.get


def socket_type_name(kind: object) -> str:
    """``PUB``, ``ROUTER`` and so on, for a ZeroMQ socket type."""
    try:
        return zmq.SocketType(int(kind)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return repr(kind)


def default_context() -> zmq.green.Context:
    """The process-wide green context, made on first use."""
    return zmq.green.Context.instance()


def require_green_socket(
    socket: object, socket_type: int, role: str, *, plain_ok: bool = False
) -> None:
    """Refuse sockets that would block the gevent hub, or that are of the wrong type; a
    plain socket is accepted with ``plain_ok``, for a caller that never blocks on it."""
    if not isinstance(socket, zmq.green.Socket if not plain_ok else zmq.Socket):
        raise TypeError(
            f"{role} must be a zmq.green socket (one that yields to gevent), got {socket!r}"
        )
    if socket.closed:
        raise ValueError(f"{role} is closed")
    if socket.type != socket_type:
        expected, actual = socket_type_name(socket_type), socket_type_name(socket.type)
        raise ValueError(f"{role} must be a {expected} socket, got {actual}")


def socket_type_in(allowed: set[int], name: str) -> Callable[[object, object, int], None]:
    """An attrs validator refusing socket types outside ``allowed``, naming the ones allowed."""

    def check(instance: object, attribute: object, value: int) -> None:
        if value not in allowed:
            names = " or ".join(sorted(map(socket_type_name, allowed)))
            raise UsageError(f"{name} must be {names}, not {socket_type_name(value)}")

    return check


@contextlib.contextmanager
def green_watcher_paused(socket: zmq.Socket) -> Iterator[None]:
    """Stop a ``zmq.green`` socket's own watcher on its descriptor for the block, and start it
    again after (if the socket is still open).

    The green wrapper watches the descriptor so that its blocking calls can wait; at every
    edge (thousands a second on a busy ROUTER) it runs a callback that reads EVENTS and wakes
    nobody. A reader that never blocks through the wrapper (the monitor reads its ROUTER with
    the plain pyzmq methods and waits on the descriptor itself) has no use for it. A plain
    socket has no such watcher, and passes through.
    """
    watcher: Any = None
    if isinstance(socket, zmq.green.Socket):
        watcher = getattr(socket, "_state_event", None)
    callback = getattr(watcher, "callback", None)
    if watcher is None or callback is None:
        yield
        return
    start = watcher.start
    watcher.stop()
    try:
        yield
    finally:
        if not socket.closed and getattr(socket, "_state_event", None) is watcher:
            start(callback)


def close_sockets(*sockets: zmq.Socket | None) -> None:
    """Close sockets at once, dropping unsent messages; safe to call twice."""
    for socket in sockets:
        if socket is not None and not socket.closed:
            socket.close(linger=0)


def bind(socket: zmq.Socket, addr: str, role: str) -> None:
    """Bind ``socket`` to ``addr``; an address ZeroMQ refuses, or would take for another
    (:func:`~greenheart.core.checks.endpoint_problem`), is a :class:`UsageError`."""
    problem = endpoint_problem(addr, bind=True)
    if problem is not None:
        raise UsageError(f"cannot bind {role} to {addr!r}: {problem}")
    try:
        socket.bind(addr)
    except zmq.ZMQError as error:
        raise UsageError(f"cannot bind {role} to {addr!r}: {error}") from error


def connect(socket: zmq.Socket, addr: str, role: str) -> None:
    """Connect ``socket`` to ``addr``; an address ZeroMQ refuses, or would take for another,
    is a :class:`UsageError`."""
    problem = endpoint_problem(addr, bind=False)
    if problem is not None:
        raise UsageError(f"cannot connect {role} to {addr!r}: {problem}")
    try:
        socket.connect(addr)
    except zmq.ZMQError as error:
        raise UsageError(f"cannot connect {role} to {addr!r}: {error}") from error


def endpoint(socket: zmq.Socket) -> str:
    """The address a socket last bound to, with the real port when it bound to port 0."""
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def raise_listen_backlog(socket: zmq.Socket, backlog: int) -> bool:
    """Let the listener of the endpoint ``socket`` last bound queue ``backlog`` new
    connections; whether it could.

    ZeroMQ passes the socket's BACKLOG to ``listen()`` when it binds, and a later BACKLOG
    changes nothing for that listener; but Linux lets ``listen()`` be called again on a
    listening socket to change its queue.
    """
    with listener_of(socket) as found:
        if found is None:
            return False
        found.listen(backlog)
        return True


def keep_listener_alive(socket: zmq.Socket, keepalive: Keepalive) -> bool:
    """Give the listener of the endpoint ``socket`` last bound ``keepalive``, which the
    connections it accepts from now on inherit (libzmq leaves them as they come when its own
    keepalive options are unset); whether it could."""
    with listener_of(socket) as found:
        if found is None:
            return False
        found.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
        found.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE, keepalive.idle)
        found.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL, keepalive.interval)
        found.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT, keepalive.count)
        found.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, keepalive.user_timeout_ms)
        return True


def listener_descriptor(address: str) -> int | None:
    """The descriptor of this process's socket listening on ``address`` (a ``tcp://`` or
    ``ipc://`` endpoint as ``LAST_ENDPOINT`` gives it), or None. ZeroMQ does not hand out
    the listeners it makes, so it is found among the process's descriptors by what the
    kernel says it is bound to (``/proc/self/fd``: None off Linux)."""
    with _listener(address) as found:
        return None if found is None else found[0]


@contextlib.contextmanager
def listener_of(socket: zmq.Socket) -> Iterator[_socket.socket | None]:
    """A duplicate of the listening descriptor ZeroMQ made for the endpoint ``socket`` last
    bound (:func:`listener_descriptor`), or None."""
    with _listener(endpoint(socket)) as found:
        yield None if found is None else found[1]


@contextlib.contextmanager
def _listener(address: str) -> Iterator[tuple[int, _socket.socket] | None]:
    """The descriptor listening on ``address``, and a duplicate of it, or None."""
    wanted = listen_address(address)
    try:
        descriptors = os.listdir("/proc/self/fd") if wanted is not None else []
    except OSError:
        descriptors = []
    for name in descriptors:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            # a duplicate, so that closing it leaves ZeroMQ's descriptor open; the C socket
            # module's, so that gevent's patching has no say
            candidate = _socket.socket(fileno=os.dup(int(name)))
        except (OSError, ValueError):
            continue  # closed meanwhile, or not a socket Python knows
        with contextlib.closing(candidate):
            try:
                found = candidate.getsockopt(
                    _socket.SOL_SOCKET, _socket.SO_ACCEPTCONN
                ) and _bound_to(candidate.getsockname(), wanted)
            except OSError:
                continue
            if found:
                yield int(name), candidate
                return
    yield None


def _bound_to(name: Any, address: tuple[str, int] | str | None) -> bool:
    if isinstance(address, str):
        return bool(name == address)
    return isinstance(name, tuple) and tuple(name[:2]) == address


def wait_for_messages(socket: zmq.Socket, timeout: float) -> None:
    """Wait until ``socket`` may have a message queued, or ``timeout`` seconds pass.

    ZeroMQ's descriptor signals edges, not levels, and reading EVENTS can consume one; so
    wait on the descriptor only once EVENTS says nothing is queued. The timeout is the
    safety net for an edge missed anyway.
    """
    if int(_base_get(socket, zmq.EVENTS)) & zmq.POLLIN:
        return
    with contextlib.suppress(_TimedOut):
        gevent.socket.wait_read(socket.FD, timeout, _TIMED_OUT)


class _TimedOut(Exception):
    pass


_TIMED_OUT = _TimedOut()

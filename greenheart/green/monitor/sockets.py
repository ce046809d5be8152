"""A heart monitor's two sockets: made and tuned by :meth:`HeartMonitor.bind
<greenheart.HeartMonitor.bind>`, or checked and prepared when a caller made them.

Every option here is paid per connection, not per pong, and each buys something against a
peer that misbehaves or a fleet that arrives at once: message-size and high-water limits
bound what a flood can make the monitor hold, a short handshake bounds what a storm of
connections that never speak ZeroMQ can hold, a long listen backlog lets thousands of hearts
connect at once, handover lets a restarted heart take its identity back, and TCP keepalive
closes the connections of a host that vanished (:mod:`greenheart.core.transport`).
"""

from __future__ import annotations

import logging

import zmq
import zmq.green

from greenheart.core.connections import backlog_is_short
from greenheart.core.refusal import HANDSHAKE_SECONDS
from greenheart.core.transport import Keepalive
from greenheart.core.wire import MAX_IDENTITY_BYTES, MAX_PAYLOAD_BYTES
from greenheart.green.curve import ServerCurve
from greenheart.green.sockets import (
    bind,
    close_sockets,
    endpoint,
    keep_listener_alive,
    raise_listen_backlog,
)

#: how many new connections each socket's listener queues (the kernel caps it at
#: net.core.somaxconn): every heart connects to both, and thousands connect at once when a
#: fleet starts or the monitor restarts; with ZeroMQ's default of 100 most would wait for
#: SYN retries
LISTEN_BACKLOG = 4096

#: pongs queued per heart before ZeroMQ stops reading from its connection. An honest heart
#: has one or two in flight; this bounds what a flooding peer can make the monitor hold
#: (with the message size limit, at most 64 KiB per connection).
PONG_RCVHWM = 64

#: pings queued per heart before the PUB drops them for that heart: a heart that far behind
#: would only answer pings that have expired
PING_SNDHWM = 16

#: ms a connection may take to finish its ZMTP handshake before libzmq hangs up on it (its own
#: default is 30 s). A heart on loopback or a LAN takes well under one; a connection that never
#: speaks ZeroMQ (a port scanner, a storm) holds a descriptor for this long, so at 20,000
#: descriptors a storm must come at more than 4,000 connections a second to take them all.
HANDSHAKE_IVL_MS = int(HANDSHAKE_SECONDS * 1000)

#: with CURVE (and so no ROUTER_HANDOVER) and no transport liveness, ZMTP heartbeats close
#: half-open connections so a heart restarted under its identity gets it back (keepalive does
#: it otherwise). A dead process's connection is closed by the kernel at once; these are for
#: crashed machines and cut cables, so they can be rare: every period, they doubled the
#: encrypted traffic and cut CURVE's capacity by half.
CURVE_HEARTBEAT_IVL_MS = 10_000

#: the smallest limit on a message's size that lets every pong through
SMALLEST_MESSAGE = MAX_PAYLOAD_BYTES + MAX_IDENTITY_BYTES


def make_sockets(
    context: zmq.Context[zmq.Socket[bytes]],
    ping_addr: str,
    pong_addr: str,
    *,
    max_message_size: int,
    curve: ServerCurve | None,
    keepalive: Keepalive | None,
) -> tuple[zmq.green.Socket, zmq.Socket[bytes]]:
    """The PUB bound to ``ping_addr`` and the ROUTER bound to ``pong_addr``, tuned, dropping
    messages over ``max_message_size`` bytes (at least :data:`SMALLEST_MESSAGE`).

    The ROUTER is a plain socket on the green context: the monitor only ever reads it without
    blocking, and waits on its descriptor through gevent itself, so the green wrapper's own
    watcher on that descriptor would run a callback at every edge for nothing, thousands a
    second."""
    ping = pong = None
    try:
        ping = context.socket(zmq.PUB)
        ping.linger = 0
        pong = zmq.Socket(context, zmq.ROUTER)
        pong.linger = 0
        pong.setsockopt(zmq.MAXMSGSIZE, max_message_size)
        pong.setsockopt(zmq.RCVHWM, PONG_RCVHWM)
        ping.setsockopt(zmq.SNDHWM, PING_SNDHWM)
        # a PUB only receives subscriptions (and handshakes: CURVE's are a few hundred bytes)
        ping.setsockopt(zmq.MAXMSGSIZE, max_message_size)
        for socket in (ping, pong):
            socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
            socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
            if keepalive is not None:
                keep_alive(socket, keepalive)
        if curve is not None:
            for socket in (ping, pong):
                curve.apply(socket)
            if keepalive is None:
                pong.setsockopt(zmq.HEARTBEAT_IVL, CURVE_HEARTBEAT_IVL_MS)
                pong.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2 * CURVE_HEARTBEAT_IVL_MS)
        bind(ping, ping_addr, "pings")
        bind(pong, pong_addr, "pongs")
    except BaseException:
        close_sockets(ping, pong)
        raise
    return ping, pong


def keep_alive(socket: zmq.Socket[bytes], keepalive: Keepalive) -> None:
    """Have the kernel close ``socket``'s TCP connections (those it accepts from now on) whose
    peer says nothing, not even an acknowledgement, for ``keepalive.timeout`` seconds."""
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, keepalive.idle)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, keepalive.interval)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, keepalive.count)
    socket.setsockopt(zmq.TCP_MAXRT, keepalive.user_timeout_ms)  # TCP_USER_TIMEOUT on Linux


def prepare(
    ping: zmq.Socket[bytes],
    pong: zmq.Socket[bytes],
    keepalive: Keepalive | None,
    log: logging.Logger,
) -> bool:
    """Set what the monitor needs of its sockets, whoever made them; whether the pong socket is
    a CURVE server (every message then says which key sent it)."""
    authenticated = bool(pong.getsockopt(zmq.CURVE_SERVER))
    # Without handover a heart that reconnects under its old identity, before the ROUTER
    # noticed the old connection died, would be silently ignored. With CURVE, handover would
    # let any allowed peer take a live heart's identity away from it; ZMTP heartbeats (set by
    # make_sockets) notice dead connections instead.
    pong.setsockopt(zmq.ROUTER_HANDOVER, 0 if authenticated else 1)
    for role, socket in (("ping", ping), ("pong", pong)):
        _lengthen_listen_queue(role, socket, log)
        if keepalive is not None and socket.getsockopt(zmq.TCP_MAXRT) != keepalive.user_timeout_ms:
            _keep_alive_after_bind(role, socket, keepalive, log)
    return authenticated


def _keep_alive_after_bind(
    role: str, socket: zmq.Socket[bytes], keepalive: Keepalive, log: logging.Logger
) -> None:
    """Give a caller's socket the keepalive :func:`make_sockets` gives its own."""
    keep_alive(socket, keepalive)  # for the endpoints it binds later
    if not endpoint(socket).startswith("tcp://") or keep_listener_alive(socket, keepalive):
        return
    log.warning(
        "the %s socket was bound without TCP keepalive: a host that vanishes keeps its"
        " connections open; set zmq.TCP_KEEPALIVE* and TCP_MAXRT before binding it, or make"
        " the sockets with HeartMonitor.bind()",
        role,
    )


def _lengthen_listen_queue(role: str, socket: zmq.Socket[bytes], log: logging.Logger) -> None:
    """Give a caller's socket the listen backlog :func:`make_sockets` gives its own."""
    backlog = int(socket.getsockopt(zmq.BACKLOG))
    if not backlog_is_short(backlog, endpoint(socket), LISTEN_BACKLOG):
        return
    socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)  # for the endpoints it binds later
    if raise_listen_backlog(socket, LISTEN_BACKLOG):
        log.info(
            "the %s socket's listener now queues %d connections, not %d",
            role,
            LISTEN_BACKLOG,
            backlog,
        )
        return
    log.warning(
        "the %s socket listens with a backlog of %d: when thousands of hearts connect at"
        " once, most wait for SYN retries; set zmq.BACKLOG to %d before binding it, or"
        " make the sockets with HeartMonitor.bind()",
        role,
        backlog,
        LISTEN_BACKLOG,
    )


def sender_key(frame: zmq.Frame) -> str | None:
    """The public key the authenticator admitted the frame's connection with."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:  # a CURVE socket with no authenticator: nobody vouched for a key
        return None

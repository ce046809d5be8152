"""Heart: answers a HeartMonitor from a greenlet.

IPython.parallel's Heart is a zmq FORWARDER device in a thread; this one is a
greenlet forwarding SUB to DEALER, so it beats only while the gevent hub runs. In
a gevent server that is the point: a hub stuck in CPU work or a blocking call
serves nobody, and its heart should stop answering too.
"""

from __future__ import annotations

import logging
import uuid

import attrs
import gevent
import zmq
import zmq.green

from greenheart.curve import ClientCurve
from greenheart.sockets import close_sockets, default_context
from greenheart.wire import MAX_IDENTITY_BYTES

log = logging.getLogger("greenheart.heart")


def _identity(heart_id: bytes | str | None) -> bytes:
    if heart_id is None:
        return uuid.uuid4().bytes
    if isinstance(heart_id, str):
        heart_id = heart_id.encode("utf-8")
    if not isinstance(heart_id, bytes):
        raise TypeError(f"heart_id must be bytes or str, got {heart_id!r}")
    if not 0 < len(heart_id) <= MAX_IDENTITY_BYTES:
        raise ValueError(f"heart_id must be 1 to {MAX_IDENTITY_BYTES} bytes, got {len(heart_id)}")
    if heart_id.startswith(b"\0"):
        raise ValueError("heart_id must not start with a zero byte (ZeroMQ reserves those)")
    return heart_id


@attrs.define(eq=False)
class Heart:
    """Echoes every ping from ``in_addr`` back to the monitor at ``out_addr``.

    ``heart_id`` (bytes or str) is the DEALER identity the monitor knows this heart by;
    a random UUID when not given. A heart stopped and started again, or a new Heart
    with the same id, is heard again under the same identity.
    """

    in_addr: str
    out_addr: str
    in_type: int = zmq.SUB
    out_type: int = zmq.DEALER
    heart_id: bytes | str | None = None
    context: zmq.green.Context | None = None
    #: the monitor's public key and this heart's key pair, for a monitor that uses CURVE
    curve: ClientCurve | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(ClientCurve))
    )

    id: bytes = attrs.field(init=False)
    #: the forwarding greenlet, while the heart runs
    device: gevent.Greenlet | None = attrs.field(default=None, init=False)
    #: pongs dropped because the monitor's connection was not up
    dropped: int = attrs.field(default=0, init=False)
    _sockets: tuple[zmq.green.Socket, zmq.green.Socket] | None = attrs.field(
        default=None, init=False
    )

    def __attrs_post_init__(self) -> None:
        self.id = _identity(self.heart_id)

    @property
    def running(self) -> bool:
        return self.device is not None

    def start(self) -> None:
        """Connect and start answering pings; returns at once."""
        if self.running:
            raise RuntimeError("this Heart is already running")
        context = self.context or default_context()
        inbound = outbound = None
        try:
            inbound = context.socket(self.in_type)
            inbound.linger = 0
            if self.in_type == zmq.SUB:
                inbound.setsockopt(zmq.SUBSCRIBE, b"")
            outbound = context.socket(self.out_type)
            outbound.linger = 0
            outbound.setsockopt(zmq.IDENTITY, self.id)
            # Queue pongs only on a live connection: one held while connecting would
            # reach the monitor after its ping has expired, as noise.
            outbound.setsockopt(zmq.IMMEDIATE, 1)
            if self.curve is not None:
                self.curve.apply(inbound)
                self.curve.apply(outbound)
            inbound.connect(self.in_addr)
            outbound.connect(self.out_addr)
        except BaseException:
            close_sockets(inbound, outbound)
            raise
        self._sockets = (inbound, outbound)
        self.device = gevent.spawn(self._forward, inbound, outbound)

    def stop(self) -> None:
        """Stop answering and close the sockets. Safe to call twice."""
        device, self.device = self.device, None
        if device is not None:
            device.kill()
        if self._sockets is not None:
            close_sockets(*self._sockets)
            self._sockets = None

    def __enter__(self) -> Heart:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _forward(self, inbound: zmq.green.Socket, outbound: zmq.green.Socket) -> None:
        try:
            while True:
                frames = inbound.recv_multipart()
                try:
                    outbound.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    self.dropped += 1
        except zmq.ZMQError as error:
            log.error("heart %r stopped beating: %s", self.id, error)

"""A recording: every input of a monitor's ledger, in order, so that it can be replayed.

The ledger is a pure state machine, so what it decided is a function of what it was fed: the
ping times, each answer's heart, ping and arrival time, the connections accepted, tied and
closed, and each beat's time, lag and whether it judged. A :class:`RecordingLedger` is a
ledger that writes each of those calls to a :class:`Writer` as it takes it; :func:`read`
turns the bytes back into :data:`Event` tuples, which :mod:`greenheart.core.replay` feeds to a
ledger under any :class:`~greenheart.core.ledger.Rules`.

An answer is recorded by which ping it echoed (the current one, the previous one, the one
published ahead of the beat, or none of them), not by its bytes: ping payloads are a function
of the ping times, so a replay under other rules publishes the same pings and an answer means
the same thing. Times are kept to the microsecond, as differences from the event before.

The format: :data:`MAGIC`, then one zlib stream. The writer flushes the stream (a zlib sync
point) at every beat, so a file cut off anywhere (a process killed, a disk filled) replays up
to its last complete event. The stream is a sequence of events, each an operation byte and
varints; the first is a header (JSON: the settings, the clock's origin, the segment), and a
segment starts a new ledger with ``START`` (a monitor started, or a file rotated).
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Iterator
from typing import Any

import attrs

from greenheart.core.connections import ConnectionBook
from greenheart.core.ledger import ANSWERS, Beat, Ledger, Pong, Rules
from greenheart.core.phi import PhiAccrual
from greenheart.core.silence import MassSilence

MAGIC = b"GHREC1\n"
VERSION = 1


class Op(enum.IntEnum):
    HEADER = 1
    #: a new ledger, its first round opening at the event's time
    START = 2
    PUBLISH = 3
    BEAT = 4
    #: an answer; the operation's low bits say which ping it echoed, and whether a key follows
    PONG = 0x10
    MALFORMED = 0x20
    #: an answer from a connection already closed
    STALE = 0x21
    ACCEPTED = 0x30
    #: a heart answered on a descriptor it was not tied to
    ANSWERED = 0x31
    CLOSED = 0x32


#: which ping an answer echoed, as :meth:`Ledger.answers_to` says
CURRENT, PREVIOUS, UPCOMING, OTHER = range(4)
_KEYED = 4

#: the beat's flags
_JUDGED = 1
_NO_CPU = 255

#: a decoded event: (op, time, heart or None, a number, a number, key or None). For PONG the
#: first number is which ping it echoed; for BEAT, judged and lag; for ACCEPTED, ANSWERED
#: and CLOSED, the descriptor.
Event = tuple[int, float, bytes | None, float, float, object]


def rules_as_json(rules: Rules) -> dict[str, Any]:
    return {
        "max_misses": rules.max_misses,
        "max_hearts": rules.max_hearts,
        "phi": attrs.asdict(rules.phi) if rules.phi is not None else None,
        "mass_silence": attrs.asdict(rules.mass_silence) if rules.mass_silence else None,
        "fail_on_disconnect": rules.fail_on_disconnect,
    }


def rules_from_json(value: dict[str, Any]) -> Rules:
    phi, silence = value.get("phi"), value.get("mass_silence")
    return Rules(
        max_misses=value["max_misses"],
        max_hearts=value.get("max_hearts"),
        phi=PhiAccrual(**phi) if phi is not None else None,
        mass_silence=MassSilence(**silence) if silence is not None else None,
        fail_on_disconnect=value.get("fail_on_disconnect", False),
    )


@attrs.frozen
class Header:
    """What a recording says about itself."""

    #: the monitor's period, in ms
    period: float
    rules: Rules
    #: the monitor clock's reading that the recording's times count from
    origin: float
    #: wall-clock time of the start, for people (ISO 8601)
    started: str = ""
    #: 0 for a recording's first file, then one more for each rotation
    segment: int = 0
    source: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "period": self.period,
            "rules": rules_as_json(self.rules),
            "origin": self.origin,
            "started": self.started,
            "segment": self.segment,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Header:
        return cls(
            period=float(value["period"]),
            rules=rules_from_json(value["rules"]),
            origin=float(value["origin"]),
            started=str(value.get("started", "")),
            segment=int(value.get("segment", 0)),
            source=str(value.get("source", "")),
        )


def _varint(buf: bytearray, n: int) -> None:
    while n >= 0x80:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


class Writer:
    """Encodes ledger inputs into a recording's bytes; :meth:`take` hands them out, compressed.

    Not an attrs class: one method call per answer, on the monitor's hot path."""

    __slots__ = ("_buf", "_hearts", "_keys", "_us", "_z", "header", "written")

    def __init__(self, header: Header) -> None:
        self.header = header
        self._z = zlib.compressobj(6)
        self._buf = bytearray()
        self._hearts: dict[bytes, int] = {}
        self._keys: dict[object, int] = {}
        self._us = 0
        #: compressed bytes handed out so far, the magic included
        self.written = 0
        body = json.dumps(header.as_json()).encode()
        self._buf.append(Op.HEADER)
        _varint(self._buf, len(body))
        self._buf += body

    def _time(self, at: float) -> None:
        us = round((at - self.header.origin) * 1e6)
        step, self._us = us - self._us, us
        _varint(self._buf, step << 1 if step >= 0 else ((-step) << 1) - 1)

    def _heart(self, heart: bytes) -> None:
        index = self._hearts.get(heart)
        if index is None:
            index = self._hearts[heart] = len(self._hearts)
            _varint(self._buf, index)
            _varint(self._buf, len(heart))
            self._buf += heart
        else:
            _varint(self._buf, index)

    def _key(self, key: object) -> None:
        index = self._keys.get(key)
        if index is None:
            index = self._keys[key] = len(self._keys)
            text = str(key).encode()
            _varint(self._buf, index)
            _varint(self._buf, len(text))
            self._buf += text
        else:
            _varint(self._buf, index)

    def start(self, at: float) -> None:
        self._buf.append(Op.START)
        self._time(at)

    def publish(self, at: float) -> None:
        self._buf.append(Op.PUBLISH)
        self._time(at)

    def beat(self, at: float, judged: bool, lag: float, cpu_share: float | None) -> None:
        buf = self._buf
        buf.append(Op.BEAT)
        self._time(at)
        buf.append(_JUDGED if judged else 0)
        _varint(buf, max(0, round(lag * 1e6)))
        buf.append(_NO_CPU if cpu_share is None else min(254, max(0, round(cpu_share * 254))))

    def pong(self, at: float, heart: bytes, echoed: int, key: object) -> None:
        if key is None:
            self._buf.append(Op.PONG + echoed)
            self._time(at)
            self._heart(heart)
        else:
            self._buf.append(Op.PONG + _KEYED + echoed)
            self._time(at)
            self._heart(heart)
            self._key(key)

    def malformed(self, at: float) -> None:
        self._buf.append(Op.MALFORMED)
        self._time(at)

    def stale(self, at: float, heart: bytes) -> None:
        self._buf.append(Op.STALE)
        self._time(at)
        self._heart(heart)

    def accepted(self, at: float, fd: int) -> None:
        self._buf.append(Op.ACCEPTED)
        self._time(at)
        _varint(self._buf, fd)

    def answered(self, at: float, heart: bytes, fd: int) -> None:
        self._buf.append(Op.ANSWERED)
        self._time(at)
        self._heart(heart)
        _varint(self._buf, fd)

    def closed(self, at: float, fd: int) -> None:
        self._buf.append(Op.CLOSED)
        self._time(at)
        _varint(self._buf, fd)

    def take(self) -> bytes:
        """The bytes encoded since the last call, compressed up to a sync point (the magic first,
        on the first call): what a file needs to replay everything recorded so far."""
        head = MAGIC if not self.written else b""
        data = head + self._z.compress(bytes(self._buf)) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self._buf.clear()
        self.written += len(data)
        return data

    def discard(self) -> None:
        """Drop what was encoded since the last :meth:`take` (the file is gone)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes encoded and not yet taken, before compression."""
        return len(self._buf)


@attrs.define
class _RecordedBook(ConnectionBook):
    """A connection book that records what the driver tells it."""

    writer: Writer | None = None
    clock: Any = None

    def accepted(self, fd: int) -> None:
        if self.writer is not None:
            self.writer.accepted(self.clock(), fd)
        super().accepted(fd)

    def answered(self, heart: bytes, fd: int) -> None:
        if self.writer is not None:
            self.writer.answered(self.clock(), heart, fd)
        super().answered(heart, fd)


@attrs.define
class RecordingLedger(Ledger):
    """A ledger that records every input it takes into ``writer``.

    The connection book's calls carry no time; ``clock`` (the driver's) dates them."""

    writer: Writer = attrs.field(kw_only=True)
    clock: Any = attrs.field(kw_only=True)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.connections = _RecordedBook(writer=self.writer, clock=self.clock)
        self.restart(self.writer)

    def restart(self, writer: Writer) -> None:
        """Record into ``writer`` (a new file's) from now, from the start of the current round:
        a segment of its own, which replays as if its monitor had started then."""
        self.writer = writer
        assert isinstance(self.connections, _RecordedBook)
        self.connections.writer = writer
        writer.start(self.tic)
        # the answers to the current ping already read, read before the round opened
        for heart, rtt in self._on_time.items():
            writer.pong(self.tic + rtt, heart, CURRENT, self._owners.get(heart))

    def pong(self, heart: bytes, payload: bytes, now: float, key: object = None) -> Pong:
        self.writer.pong(now, heart, self.answers_to(payload), key)
        return super().pong(heart, payload, now, key)

    def pongs(self, hearts: list[bytes], payloads: list[bytes], now: float) -> list[Pong]:
        for heart, payload in zip(hearts, payloads, strict=True):
            self.writer.pong(now, heart, self.answers_to(payload), None)
        # message by message, so that each is recorded once
        return [
            answer
            for answer in map(super().pong, hearts, payloads, [now] * len(hearts))
            if answer.kind not in ANSWERS
        ]

    def malformed(self, heart: bytes = b"") -> Pong:
        self.writer.malformed(self.clock())
        return super().malformed(heart)

    def stale(self, heart: bytes) -> Pong:
        self.writer.stale(self.clock(), heart)
        return super().stale(heart)

    def publish(self, now: float) -> bytes:
        if self._upcoming is None:
            self.writer.publish(now)
        return super().publish(now)

    def beat(
        self, now: float, judge: bool = True, lag: float = 0.0, cpu_share: float | None = None
    ) -> Beat:
        self.publish(now)
        self.writer.beat(now, judge, lag, cpu_share)
        return super().beat(now, judge, lag, cpu_share)

    def closed(self, fd: int, now: float) -> tuple[Any, ...]:
        self.writer.closed(now, fd)
        return super().closed(fd, now)


class Truncated(Exception):
    """Raised inside :func:`read` when the bytes end in the middle of an event."""


@attrs.define
class Recording:
    """A recording read back: its header and events, and whether it was cut off."""

    header: Header
    events: list[Event]
    #: the bytes ended inside an event (or the stream was damaged) and the rest was dropped
    truncated: bool = False
    #: bytes of the file(s) it was read from
    size: int = 0

    @property
    def start(self) -> float:
        return self.events[0][1] if self.events else self.header.origin

    @property
    def end(self) -> float:
        return self.events[-1][1] if self.events else self.header.origin

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def hearts(self) -> set[bytes]:
        """Every identity that answered."""
        return {event[2] for event in self.events if event[0] == Op.PONG and event[2]}

    def beats(self) -> int:
        return sum(1 for event in self.events if event[0] == Op.BEAT)


def read(data: bytes) -> Recording:
    """The recording in ``data``, up to its last complete event."""
    if not data.startswith(MAGIC):
        raise ValueError("not a greenheart recording (no magic at its start)")
    decompressor = zlib.decompressobj()
    truncated = False
    try:
        raw = decompressor.decompress(data[len(MAGIC) :])
    except zlib.error:
        # a damaged stream: what decompresses cleanly, chunk by chunk, is kept
        raw, truncated = _salvage(data[len(MAGIC) :]), True
    header: Header | None = None
    events: list[Event] = []
    for item in _events(raw):
        if item is None:
            truncated = True
            break
        if isinstance(item, Header):
            if header is None:
                header = item
            continue
        events.append(item)
    if header is None:
        raise ValueError("a greenheart recording cut off before its header")
    return Recording(header, events, truncated, len(data))


def _salvage(body: bytes) -> bytes:
    decompressor, out = zlib.decompressobj(), bytearray()
    for at in range(0, len(body), 4096):
        try:
            out += decompressor.decompress(body[at : at + 4096])
        except zlib.error:
            break
    return bytes(out)


def _events(raw: bytes) -> Iterator[Event | Header | None]:
    """The events in ``raw``, then None if it ends inside one."""
    hearts: list[bytes] = []
    keys: list[str] = []
    origin = 0.0
    pos, size, us = 0, len(raw), 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= size:
                raise Truncated
            byte = raw[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def time() -> float:
        nonlocal us
        step = varint()
        us += (step >> 1) if not step & 1 else -((step + 1) >> 1)
        return origin + us / 1e6

    def interned(table: list[Any], decode: bool) -> Any:
        nonlocal pos
        index = varint()
        if index < len(table):
            return table[index]
        if index != len(table):
            raise Truncated  # damaged
        length = varint()
        if pos + length > size:
            raise Truncated
        value = raw[pos : pos + length]
        pos += length
        table.append(value.decode() if decode else value)
        return table[-1]

    while pos < size:
        try:
            op = raw[pos]
            pos += 1
            if op == Op.HEADER:
                length = varint()
                if pos + length > size:
                    raise Truncated
                header = Header.from_json(json.loads(raw[pos : pos + length]))
                pos += length
                origin, us = header.origin, 0
                hearts, keys = [], []
                yield header
            elif op & 0xF0 == Op.PONG:
                at = time()
                heart = interned(hearts, False)
                key = interned(keys, True) if op & _KEYED else None
                yield (Op.PONG, at, heart, op & 3, 0.0, key)
            elif op == Op.BEAT:
                at = time()
                if pos + 1 > size:
                    raise Truncated
                flags = raw[pos]
                pos += 1
                lag = varint() / 1e6
                if pos + 1 > size:
                    raise Truncated
                cpu = raw[pos]
                pos += 1
                yield (
                    Op.BEAT,
                    at,
                    None,
                    float(bool(flags & _JUDGED)),
                    lag,
                    None if cpu == _NO_CPU else cpu / 254,
                )
            elif op in (Op.START, Op.PUBLISH, Op.MALFORMED):
                yield (op, time(), None, 0.0, 0.0, None)
            elif op == Op.STALE:
                at = time()
                yield (Op.STALE, at, interned(hearts, False), 0.0, 0.0, None)
            elif op in (Op.ACCEPTED, Op.CLOSED):
                at = time()
                yield (op, at, None, float(varint()), 0.0, None)
            elif op == Op.ANSWERED:
                at = time()
                heart = interned(hearts, False)
                yield (Op.ANSWERED, at, heart, float(varint()), 0.0, None)
            else:
                yield None  # damaged: nothing after this can be trusted
                return
        except Truncated:
            yield None
            return

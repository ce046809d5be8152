"""A recording: every input of a monitor's ledger, in order, in a compact file.

A monitor's ledger, observed (:meth:`Ledger.observe <greenheart.core.ledger.Ledger.observe>`),
hands each input it takes (:mod:`greenheart.core.inputs`) to a :class:`Writer`, which encodes
it; :func:`read` turns the bytes back into the same inputs, which :mod:`greenheart.core.replay`
feeds to a ledger under any rules.

The format: :data:`MAGIC`, then one zlib stream. The writer's bytes are taken (a zlib sync
point) at every beat, so a file cut off anywhere (a process killed, a disk filled) replays up
to its last complete input. The stream is a sequence of inputs, each an operation byte and
varints, times to the microsecond as differences from the input before; the first is a header
(JSON: the settings, the clock's origin, the segment), and each segment starts a new ledger
with a ``START`` (a monitor started, or a file rotated).
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Iterator
from typing import Any

import attrs

from greenheart.core.inputs import (
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionTied,
    Echoed,
    Input,
    Left,
    Malformed,
    RoundClosed,
    RoundOpened,
    Stale,
    Started,
)
from greenheart.core.rounds import Echo
from greenheart.core.rules import Rules

MAGIC = b"GHREC1\n"
VERSION = 1


class Op(enum.IntEnum):
    HEADER = 1
    START = 2
    PUBLISH = 3
    BEAT = 4
    #: an answer; the operation's low bits say which ping it echoed, and whether a key follows
    PONG = 0x10
    MALFORMED = 0x20
    STALE = 0x21
    #: a heart's leave; the operation's key bit says whether a key follows
    LEFT = 0x40
    ACCEPTED = 0x30
    TIED = 0x31
    CLOSED = 0x32


#: the bit of a PONG operation that says a key follows
_KEYED = 4
#: a beat's flags, and its CPU share's byte when it was not measured
_JUDGED = 1
_NO_CPU = 255


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
            "rules": self.rules.as_json(),
            "origin": self.origin,
            "started": self.started,
            "segment": self.segment,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Header:
        return cls(
            period=float(value["period"]),
            rules=Rules.from_json(value["rules"]),
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
    """Encodes a ledger's inputs (:meth:`write`, its observer); :meth:`take` hands the bytes
    out, compressed.

    Not an attrs class: one call per answer, on the monitor's hot path."""

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

    def write(self, given: Input) -> None:
        """Encode one input."""
        buf = self._buf
        if isinstance(given, Echoed):
            keyed = given.key is not None
            buf.append(Op.PONG + (_KEYED if keyed else 0) + given.echo)
            self._time(given.at)
            self._heart(given.heart)
            if keyed:
                self._key(given.key)
        elif isinstance(given, RoundClosed):
            buf.append(Op.BEAT)
            self._time(given.at)
            buf.append(_JUDGED if given.judged else 0)
            _varint(buf, max(0, round(given.lag * 1e6)))
            share = given.cpu_share
            buf.append(_NO_CPU if share is None else min(254, max(0, round(share * 254))))
        elif isinstance(given, (Started, RoundOpened, Malformed)):
            buf.append(_SIMPLE[type(given)])
            self._time(given.at)
        elif isinstance(given, Stale):
            buf.append(Op.STALE)
            self._time(given.at)
            self._heart(given.heart)
        elif isinstance(given, Left):
            keyed = given.key is not None
            buf.append(Op.LEFT + (_KEYED if keyed else 0))
            self._time(given.at)
            self._heart(given.heart)
            _varint(buf, given.fd + 1)
            if keyed:
                self._key(given.key)
        elif isinstance(given, (ConnectionAccepted, ConnectionClosed)):
            buf.append(Op.ACCEPTED if isinstance(given, ConnectionAccepted) else Op.CLOSED)
            self._time(given.at)
            _varint(buf, given.fd)
        elif isinstance(given, ConnectionTied):
            buf.append(Op.TIED)
            self._time(given.at)
            self._heart(given.heart)
            _varint(buf, given.fd)
        else:
            raise TypeError(f"not a ledger's input: {given!r}")

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


_SIMPLE: dict[type, Op] = {Started: Op.START, RoundOpened: Op.PUBLISH, Malformed: Op.MALFORMED}


class Truncated(Exception):
    """Raised inside :func:`read` when the bytes end in the middle of an input."""


@attrs.define
class Recording:
    """A recording read back: its header and inputs, and whether it was cut off."""

    header: Header
    inputs: list[Input]
    #: the bytes ended inside an input (or the stream was damaged) and the rest was dropped
    truncated: bool = False
    #: bytes of the file(s) it was read from
    size: int = 0

    @property
    def start(self) -> float:
        return self.inputs[0].at if self.inputs else self.header.origin

    @property
    def end(self) -> float:
        return self.inputs[-1].at if self.inputs else self.header.origin

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def hearts(self) -> set[bytes]:
        """Every identity that answered."""
        return {event.heart for event in self.inputs if isinstance(event, Echoed) and event.heart}

    def beat_count(self) -> int:
        return sum(isinstance(event, RoundClosed) for event in self.inputs)


def read(data: bytes) -> Recording:
    """The recording in ``data``, up to its last complete input."""
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
    inputs: list[Input] = []
    for item in _decode(raw):
        if item is None:
            truncated = True
            break
        if isinstance(item, Header):
            header = header or item
            continue
        inputs.append(item)
    if header is None:
        raise ValueError("a greenheart recording cut off before its header")
    return Recording(header, inputs, truncated, len(data))


def _salvage(body: bytes) -> bytes:
    decompressor, out = zlib.decompressobj(), bytearray()
    for at in range(0, len(body), 4096):
        try:
            out += decompressor.decompress(body[at : at + 4096])
        except zlib.error:
            break
    return bytes(out)


def _decode(raw: bytes) -> Iterator[Input | Header | None]:
    """The inputs in ``raw`` (and the headers), then None if it ends inside one."""
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

    def byte() -> int:
        nonlocal pos
        if pos >= size:
            raise Truncated
        pos += 1
        return raw[pos - 1]

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
            op = byte()
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
                yield Echoed(at, heart, Echo(op & 3), key)
            elif op == Op.BEAT:
                at = time()
                judged, lag, cpu = bool(byte() & _JUDGED), varint() / 1e6, byte()
                yield RoundClosed(at, judged, lag, None if cpu == _NO_CPU else cpu / 254)
            elif op == Op.START:
                yield Started(time())
            elif op == Op.PUBLISH:
                yield RoundOpened(time())
            elif op == Op.MALFORMED:
                yield Malformed(time())
            elif op == Op.STALE:
                at = time()
                yield Stale(at, interned(hearts, False))
            elif op & ~_KEYED == Op.LEFT:
                at = time()
                heart, fd = interned(hearts, False), varint() - 1
                yield Left(at, heart, fd, interned(keys, True) if op & _KEYED else None)
            elif op == Op.ACCEPTED:
                at = time()
                yield ConnectionAccepted(at, varint())
            elif op == Op.CLOSED:
                at = time()
                yield ConnectionClosed(at, varint())
            elif op == Op.TIED:
                at = time()
                heart = interned(hearts, False)
                yield ConnectionTied(at, heart, varint())
            else:
                yield None  # damaged: nothing after this can be trusted
                return
        except Truncated:
            yield None
            return

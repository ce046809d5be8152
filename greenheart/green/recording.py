"""A recording's file: a monitor's ledger observed, its inputs written down.

:meth:`RecordingFile.attach` has the ledger hand every input to a
:class:`~greenheart.core.recording.Writer`; the monitor calls :meth:`RecordingFile.flush`
at every beat: a write of the beat's compressed inputs, a zlib sync point, so a file cut off
at any moment replays up to its last beat. When a file passes ``max_bytes`` it is rotated
(``FILE`` to ``FILE.1``, and so on, ``keep`` of them kept) and the next begins a segment of
its own. A write that fails (a full disk) stops the recording, logged, and never the monitor.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import IO

import attrs

from greenheart.core.checks import writable_file
from greenheart.core.ledger import Ledger
from greenheart.core.recording import Header, Writer

log = logging.getLogger("greenheart.recording")

#: a file's size before it is rotated: about two days of 1,000 hearts at a 1 s period (a
#: recording costs about 2 bytes an answer: 5.7 KB per heart-hour at 1 s, 2.2 KB at 3 s)
MAX_BYTES = 256 * 1024 * 1024
#: rotated files kept beside the current one
KEEP = 3


def _path(value: str | os.PathLike[str]) -> Path:
    return Path(value)


@attrs.define(eq=False)
class RecordingFile:
    """A recording written to ``path``, rotated past ``max_bytes``, ``keep`` old files kept;
    its directory must exist (it is never made)."""

    path: Path = attrs.field(converter=_path, validator=writable_file)
    max_bytes: int = attrs.field(default=MAX_BYTES, validator=attrs.validators.gt(0))
    keep: int = attrs.field(default=KEEP, validator=attrs.validators.ge(0))
    source: str = "greenheart"
    #: compressed bytes written, over every file
    written: int = attrs.field(default=0, init=False)
    #: why the recording stopped, if it did
    error: OSError | None = attrs.field(default=None, init=False)
    _file: IO[bytes] | None = attrs.field(default=None, init=False)
    _writer: Writer | None = attrs.field(default=None, init=False)
    _segment: int = attrs.field(default=0, init=False)
    _period: float = attrs.field(default=0.0, init=False)
    _ledger: Ledger | None = attrs.field(default=None, init=False)

    def attach(self, ledger: Ledger, period: float) -> None:
        """Record ``ledger``'s inputs into this file from now (opened now, if it is not), for a
        monitor beating every ``period`` ms."""
        if self._file is None and self._writer is not None:
            # a monitor started again: a new file, a new segment
            self._shift()
            self._segment += 1
        self._ledger, self._period = ledger, period
        if self._file is None:
            self._open()
        elif self._writer is not None:  # the file is open: the new ledger's segment goes on in it
            ledger.observe(self._writer.write)

    def _open(self) -> None:
        """Open the file for a new segment, and have the ledger write into it."""
        assert self._ledger is not None
        self._writer = Writer(
            Header(
                period=self._period,
                rules=self._ledger.rules,
                origin=self._ledger.tic,
                started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                segment=self._segment,
                source=self.source,
            )
        )
        try:
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed in close())
        except OSError as error:
            self._stopped(error)
            return
        self._ledger.observe(self._writer.write)

    @property
    def recording(self) -> bool:
        return self._file is not None

    def flush(self) -> None:
        """Write what the ledger recorded since the last flush; rotate if the file is full.
        Call it right after a beat: a new file's segment starts from the ledger's round."""
        if self._writer is None or self._file is None:
            return
        data = self._writer.take()
        try:
            self._file.write(data)
        except OSError as error:
            self._stopped(error)
            return
        self.written += len(data)
        if self._writer.written >= self.max_bytes:
            self._file.close()
            self._file = None
            if self._shift():
                self._segment += 1
                self._open()

    def _shift(self) -> bool:
        """Move the files along by one, ``FILE`` to ``FILE.1``; False if that failed."""
        try:
            for n in range(self.keep, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                newer = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
                if n == self.keep:
                    older.unlink(missing_ok=True)
                if newer.exists():
                    newer.rename(older)
            if self.keep == 0:
                self.path.unlink(missing_ok=True)
        except OSError as error:
            self._stopped(error)
            return False
        return True

    def _stopped(self, error: OSError) -> None:
        self.error = error
        log.error("recording to %s stopped: %s", self.path, error)
        self.close()

    def close(self) -> None:
        """Stop recording (what is written stays); idempotent."""
        if self._ledger is not None:
            self._ledger.observe(None)
        if self._file is not None:
            try:
                if self._writer is not None and self._writer.pending:
                    self._file.write(self._writer.take())
            except OSError as error:
                self.error = error
            self._file.close()
            self._file = None

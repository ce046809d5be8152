"""A monitor's state on disk, so that a restart remembers who was beating.

:class:`StateFile` keeps, in an SQLite database (the standard library's), the hearts the
monitor knows and, for each on probation, when it last answered, with the time of the last
beat (the last answer of every heart not on probation). It is written once a beat, in one
transaction, by a thread of its own, so the hub never waits on the disk; a write that fails
(a full disk, a file removed) is logged, counted and retried with the next beat's, never
stopping the monitor. SQLite's write-ahead log makes each transaction whole or absent, so a
monitor killed at any instant leaves a state that loads.

It keeps an event stream's latest events too (:mod:`greenheart.integrations.events`), for
subscribers catching up across a restart, and beside the database, in ``PATH-seq``, the last
``seq`` the stream published: a mark written (into a mapped page, a store, not a system call)
before each event leaves, so that a restarted stream goes on from the number after it
(:func:`~greenheart.core.sequence.resume_seq`) even when the events of the last beat were not
written yet.

Times on disk are Unix times: the next process's monotonic clock starts elsewhere.
:meth:`StateFile.open` reads a state back as :class:`~greenheart.core.restart.Remembered`
hearts on the caller's clock. A file that is not a state, is damaged, or was written by a
newer greenheart raises :class:`StateError`, and is left as it is.
"""

from __future__ import annotations

import logging
import mmap
import os
import sqlite3
import struct
import time
from collections.abc import Sequence

import attrs
import gevent.event
import gevent.threadpool

from greenheart.core.errors import UsageError
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.restart import Remembered
from greenheart.core.sequence import TAIL, resume_seq
from greenheart.core.values import Beat

log = logging.getLogger("greenheart.state")

#: the layout this greenheart writes; a file with a larger one is refused
VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS hearts (heart BLOB PRIMARY KEY, last_answer REAL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, kind BLOB, heart BLOB, body BLOB);
"""

#: the mark's layout: the last ``seq`` published, or 0 before the first
_MARK = struct.Struct("<Q")

#: an event as kept: its ``seq`` and its frames
Event = tuple[int, Sequence[bytes]]


class StateError(UsageError):
    """A state file that cannot be used: what is wrong, and that it was left as it is."""


@attrs.frozen
class Changes:
    """What one beat changed of the state, Unix times."""

    at: float
    joined: tuple[bytes, ...] = ()
    left: tuple[bytes, ...] = ()
    #: hearts gone on probation, with their last answer
    silent: tuple[tuple[bytes, float | None], ...] = ()
    #: hearts back from probation
    answering: tuple[bytes, ...] = ()
    #: events published since
    events: tuple[Event, ...] = ()


@attrs.define(eq=False)
class StateFile:
    """The state at ``path``: :meth:`open` it, :meth:`beat` it, :meth:`close` it."""

    path: str
    #: failed writes since opened
    errors: int = attrs.field(default=0, init=False)
    writes: int = attrs.field(default=0, init=False)
    _db: sqlite3.Connection | None = attrs.field(default=None, init=False)
    _pool: gevent.threadpool.ThreadPool | None = attrs.field(default=None, init=False)
    #: changes not written yet, and the write under way with what it writes
    _pending: list[Changes] = attrs.field(factory=list, init=False)
    _writing: tuple[gevent.event.AsyncResult, list[Changes]] | None = attrs.field(
        default=None, init=False
    )
    _on_probation: set[bytes] = attrs.field(factory=set, init=False)
    #: the events published since the last beat, and what the stream resumes from
    _events: list[Event] = attrs.field(factory=list, init=False)
    _stream: tuple[int, list[Event]] | None = attrs.field(default=None, init=False)
    _mark: mmap.mmap | None = attrs.field(default=None, init=False)
    _last_beat: float | None = attrs.field(default=None, init=False)
    _lines: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    def open(self, now: float, wall: float | None = None) -> list[Remembered]:
        """Open (or make) the state; the hearts it remembers, their last answers on the
        clock that says ``now`` (Unix time ``wall``)."""
        wall = time.time() if wall is None else wall
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise StateError(f"cannot open the state {self.path!r}: {error}") from None
        try:
            remembered = _read(db, self.path, now, wall)
            rows = db.execute("SELECT * FROM events ORDER BY seq DESC LIMIT ?", (TAIL,))
            tail: list[Event] = [
                (seq, (bytes(kind), bytes(heart), bytes(body)))
                for seq, kind, heart, body in reversed(rows.fetchall())
            ]
        except sqlite3.Error as error:
            db.close()
            raise StateError(f"the state {self.path!r} cannot be read ({error})") from None
        except BaseException:
            db.close()
            raise
        mark, self._mark = _map_mark(f"{self.path}-seq")
        self._stream = (resume_seq(mark, tail[-1][0] if tail else None, wall), tail)
        self._events = []
        self._db = db
        self._pool = gevent.threadpool.ThreadPool(1)
        self._on_probation = set()  # every remembered heart is awaited, not on probation
        self._last_beat = wall
        # Until it answers, an awaited heart's last answer is the one before the restart, not
        # the last beat's time, which moves on: written with the first beat.
        self._pending = [
            Changes(
                at=wall,
                silent=tuple((r.heart, _on_wall(r.last_answer, now, wall)) for r in remembered),
            )
        ]
        return remembered

    def stream(self) -> tuple[int, list[Event]]:
        """For the event stream that keeps its events here (one, once): the ``seq`` it goes on
        from and the events it had published latest."""
        if self._stream is None:
            raise UsageError(
                f"the state {self.path!r} is not open, or already has its event stream: start"
                " the monitor before its event stream, and give it one"
            )
        stream, self._stream = self._stream, None
        return stream

    def published(self, seq: int, frames: Sequence[bytes]) -> None:
        """Mark ``seq`` published (before it leaves) and keep its event, written with the
        next beat's changes."""
        if self._mark is not None:
            _MARK.pack_into(self._mark, 0, seq)
        self._events.append((seq, frames))
        if len(self._events) > TAIL:  # writes failing for long: only the tail is kept anyway
            del self._events[: len(self._events) - TAIL]

    def beat(self, beat: Beat) -> None:
        """Write what ``beat`` changed, in the writer's thread; what failed before is written
        with it. A heart gone on probation last answered in the round before: by the beat
        before, which is the time kept."""
        wall = time.time()
        probation = set(beat.missed)
        left = {failure.heart for failure in beat.failures}
        changes = Changes(
            at=wall,
            joined=beat.new_hearts,
            left=tuple(sorted(left)),
            silent=tuple(
                (heart, self._last_beat) for heart in sorted(probation - self._on_probation)
            ),
            answering=tuple(sorted((self._on_probation - probation - left) | set(beat.resumed))),
            events=tuple(self._events),
        )
        self._events = []
        self._on_probation, self._last_beat = probation, wall
        self._pending.append(changes)
        if self._pool is None or not self._settled(wait=False):
            return  # one transaction at a time: these go with the next
        batch, self._pending = self._pending, []
        self._writing = self._pool.spawn(self._write, batch), batch

    def close(self) -> None:
        """Write what is pending and close; again is nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._settled(wait=True)
            if self._events:
                self._pending.append(Changes(at=time.time(), events=tuple(self._events)))
                self._events = []
            if self._pending:
                pool.apply(self._write, (self._pending,))
                self._pending = []
            pool.kill()
        db, self._db = self._db, None
        if db is not None:
            db.close()
        mark, self._mark = self._mark, None
        if mark is not None:
            mark.close()
        self._stream = None

    def _settled(self, wait: bool) -> bool:
        """Whether the write under way, if any, is over (once it is, with ``wait``); what it
        failed to write goes back ahead of what is pending."""
        if self._writing is not None:
            result, batch = self._writing
            if not wait and not result.ready():
                return False
            self._writing = None
            if not result.get():
                self._pending[:0] = batch
        return True

    def _write(self, batch: list[Changes]) -> bool:
        """Write ``batch`` in one transaction (in the writer's thread); whether it could."""
        db = self._db
        if db is None:
            return True
        try:
            with db:
                db.execute("BEGIN")
                for changes in batch:
                    db.executemany(
                        "INSERT OR REPLACE INTO hearts VALUES (?, NULL)",
                        ((heart,) for heart in changes.joined),
                    )
                    db.executemany(
                        "DELETE FROM hearts WHERE heart = ?", ((heart,) for heart in changes.left)
                    )
                    db.executemany(
                        "UPDATE hearts SET last_answer = ? WHERE heart = ?",
                        ((at, heart) for heart, at in changes.silent),
                    )
                    db.executemany(
                        "UPDATE hearts SET last_answer = NULL WHERE heart = ?",
                        ((heart,) for heart in changes.answering),
                    )
                    db.executemany(
                        "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)",
                        ((seq, *frames) for seq, frames in changes.events),
                    )
                last = max((seq for changes in batch for seq, _ in changes.events), default=None)
                if last is not None:
                    db.execute("DELETE FROM events WHERE seq <= ?", (last - TAIL,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_beat', ?)", (batch[-1].at,))
            self.writes += 1
            return True
        except sqlite3.Error as error:
            self.errors += 1
            self._lines(
                logging.ERROR,
                "write",
                "cannot write the state %s (%d failed writes; the monitor goes on): %s",
                self.path,
                self.errors,
                error,
            )
            return False  # written again with the next beat's


def _map_mark(path: str) -> tuple[int | None, mmap.mmap | None]:
    """The last ``seq`` the mark at ``path`` says was published (None if it says nothing),
    and the mark mapped for writing (None, and a warning, if it cannot be)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        log.warning("no mark of the event stream's seq at %s (%s): a restart jumps", path, error)
        return None, None
    try:
        data = os.pread(fd, _MARK.size, 0)
        mark = _MARK.unpack(data)[0] if len(data) == _MARK.size else 0
        if len(data) != _MARK.size:
            # written, not only sized: a store into the map never needs a block then (on a
            # full disk, a page that needed one would kill the process with SIGBUS)
            os.pwrite(fd, _MARK.pack(0), 0)
        return mark or None, mmap.mmap(fd, _MARK.size)
    except OSError as error:
        log.warning("no mark of the event stream's seq at %s (%s): a restart jumps", path, error)
        return None, None
    finally:
        os.close(fd)


def _durable(db: sqlite3.Connection) -> None:
    """Each transaction whole or absent after a crash of the process (not of the machine:
    that would cost an fsync a beat)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")


def _read(db: sqlite3.Connection, path: str, now: float, wall: float) -> list[Remembered]:
    """The state's hearts, after checking it is one this greenheart can use (or making it)."""
    try:
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("the integrity check failed")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not tables:
            _durable(db)
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))
            return []
        if not {"meta", "hearts"} <= tables:
            raise sqlite3.DatabaseError("it has no hearts or no meta table")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        version = int(meta.get("version", 0))
        if version > VERSION:
            raise StateError(
                f"the state {path!r} was written by a newer greenheart (layout {version}, this"
                f" one reads {VERSION}); it was left as it is"
            )
        if "events" not in tables:  # written before it kept events
            db.executescript(_SCHEMA)
        last_beat = meta.get("last_beat")
        rows = db.execute("SELECT heart, last_answer FROM hearts ORDER BY heart").fetchall()
    except sqlite3.Error as error:
        raise StateError(
            f"the state {path!r} cannot be read ({error}); it was left as it is: move it away"
            " to start without it"
        ) from None
    _durable(db)
    return [
        Remembered(bytes(heart), _on_clock(last if last is not None else last_beat, now, wall))
        for heart, last in rows
    ]


def _on_clock(at: float | None, now: float, wall: float) -> float | None:
    """A Unix time ``at`` on the clock that says ``now`` at Unix time ``wall``."""
    return None if at is None else now - (wall - float(at))


def _on_wall(at: float | None, now: float, wall: float) -> float | None:
    """The other way: a time on the clock that says ``now`` as a Unix time."""
    return None if at is None else wall - (now - at)

"""The one way a benchmark runs a process: a child that speaks lines on its stdout.

A :class:`Child` is a Python process started from the benchmark's own interpreter: one of the
benchmark's programs (:mod:`greenheart.bench.programs`), or the ``greenheart`` command run
through them. A thread reads its stdout, keeping each line that is one of
:mod:`greenheart.bench.lines`, as a value. What it writes on stderr is kept in a file (so that
it cannot scramble the benchmark's display): the ``greenheart`` command says there where it is
bound, and the last line explains a child that died. Children are terminated when their
benchmark is done with them, whatever happens, and die with the benchmark if it is killed:
each asks for ``PR_SET_PDEATHSIG`` itself, first thing, since a ``preexec_fn`` is not safe in
a process with threads (the readers), and can hang the child between fork and exec.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from greenheart.bench.lines import Line, read

#: seconds a child may take to start (importing ipyparallel is slow on a busy machine)
STARTUP_SECONDS = 60.0

L = TypeVar("L", bound=Line)


def terminate(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ChildFailed(RuntimeError):
    """A child exited while the benchmark still needed it."""


class Child:
    """``python -m greenheart.bench.programs ARGS...`` in a child process, read as lines.

    :meth:`program` and :meth:`command` make one; with ``stdin=True`` the benchmark can
    :meth:`say` lines to it.
    """

    def __init__(self, role: str, args: Sequence[str], *, stdin: bool = False) -> None:
        self.role = role
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenheart.bench.programs", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=self.stderr,
            text=True,
        )
        #: what the reader read: lines, a line it could not read, and None at the end
        self._lines: queue.Queue[Line | ValueError | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"read {role}").start()

    @classmethod
    def program(cls, role: str, kind: str, *args: str, stdin: bool = False) -> Child:
        """One of the benchmark's own programs (:mod:`greenheart.bench.programs`)."""
        return cls(role, [kind, *args], stdin=stdin)

    @classmethod
    def command(cls, role: str, *args: str) -> Child:
        """The ``greenheart`` command with ``args``, as a child of the benchmark."""
        return cls(role, ["cli", *args])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        with stdout:  # closed here, by its reader: closing it from stop() could wait on a read
            for text in stdout:
                try:
                    line = read(text)
                except ValueError as error:  # a bug in a program: said once, read no further
                    self._lines.put(error)
                    return
                if line is not None:
                    self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float) -> Line:
        """The next line, waiting at most ``timeout`` seconds for it."""
        try:
            line = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError(f"{self.role} said nothing for {timeout:.0f} s") from None
        if line is None or isinstance(line, ValueError):
            self._lines.put(line)  # every later read fails too
            if line is not None:
                raise ChildFailed(f"{self.role} said what no benchmark reads: {line}")
            raise ChildFailed(
                f"{self.role} exited with status {self.proc.wait()}: {self.last_words()}"
            )
        return line

    def expect(self, kind: type[L], timeout: float) -> L:
        """The next line, which must be a ``kind`` (:class:`ChildFailed` if it is not)."""
        line = self.next(timeout)
        if not isinstance(line, kind):
            raise ChildFailed(f"{self.role} said {line!r}, not a {kind.__name__}")
        return line

    def said(self) -> list[Line]:
        """Every line already read, without waiting; :class:`ChildFailed` if the child exited."""
        lines = []
        while True:
            try:
                lines.append(self.next(0))
            except TimeoutError:
                return lines

    def expect_on_stderr(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` (``^`` and ``$`` match at each line) in what the
        child has written on stderr, waiting at most ``timeout`` seconds for it;
        :class:`ChildFailed` if the child exits first."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None  # before the read, so that no last line is lost
            fd = self.stderr.fileno()
            # pread, not seek and read: the child writes at this file's offset, which it shares
            written = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
            match = re.search(pattern, written, re.MULTILINE)
            if match is not None:
                return match
            if exited:
                self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.role} wrote no {pattern!r} in {timeout:.0f} s")
            time.sleep(0.05)

    def check(self) -> None:
        """:class:`ChildFailed`, with its last words, if the child has exited."""
        status = self.proc.poll()
        if status is not None:
            raise ChildFailed(f"{self.role} exited with status {status}: {self.last_words()}")

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None, "started without stdin=True"
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def last_words(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else "(nothing on stderr)"

    def stop(self) -> list[Line]:
        """Stop the child (SIGTERM, as at Ctrl-C; SIGKILL if it lingers): the lines it said that
        were not read yet, to its last."""
        terminate(self.proc)
        unread: list[Line] = []
        try:
            while (line := self._lines.get(timeout=STARTUP_SECONDS)) is not None:
                if isinstance(line, ValueError):  # the reader read no further
                    break
                unread.append(line)
        except queue.Empty:
            pass
        self._lines.put(None)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.stderr.close()
        return unread


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put children in; every one of them is stopped on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()

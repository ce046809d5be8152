"""The one way a benchmark runs a process: a child that speaks JSON lines on its stdout.

A :class:`Child` is a Python process started from the benchmark's own interpreter. A thread
reads its stdout, keeping each line that is a JSON object; what it writes on stderr is kept
in a file (so that it cannot scramble the benchmark's display) and its last line explains a
child that died. Children are terminated when their benchmark is done with them, whatever
happens, and die with the benchmark if it is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

#: seconds a child may take to start (importing ipyparallel is slow on a busy machine)
STARTUP_SECONDS = 60.0

_PR_SET_PDEATHSIG = 1

Line = dict[str, Any]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
    """``python ARGV...`` in a child process, read as JSON lines.

    ``Child("monitor", ["-m", "greenheart.bench.children", "greenheart"])``; with
    ``stdin=True`` the benchmark can :meth:`say` lines to it.
    """

    def __init__(self, role: str, argv: Sequence[str], *, stdin: bool = False) -> None:
        self.role = role
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=self.stderr,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self._lines: queue.Queue[Line | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"read {role}").start()

    @classmethod
    def program(cls, role: str, kind: str, *args: str, stdin: bool = False) -> Child:
        """One of the benchmark's own child programs (:mod:`greenheart.bench.children`)."""
        return cls(role, ["-m", "greenheart.bench.children", kind, *args], stdin=stdin)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        with stdout:  # closed here, by its reader: closing it from stop() could wait on a read
            for line in stdout:
                if line.startswith("{"):
                    self._lines.put(json.loads(line))
        self._lines.put(None)

    def next(self, timeout: float) -> Line:
        """The next line, waiting at most ``timeout`` seconds for it."""
        try:
            line = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError(f"{self.role} said nothing for {timeout:.0f} s") from None
        if line is None:
            self._lines.put(None)  # every later read fails too
            raise ChildFailed(
                f"{self.role} exited with status {self.proc.wait()}: {self.last_words()}"
            )
        return line

    def said(self) -> list[Line]:
        """Every line already read, without waiting; :class:`ChildFailed` if the child exited."""
        lines = []
        while True:
            try:
                lines.append(self.next(0))
            except TimeoutError:
                return lines

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None, "started without stdin=True"
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def last_words(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else "(nothing on stderr)"

    def stop(self) -> None:
        terminate(self.proc)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.stderr.close()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put children in; every one of them is stopped on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()

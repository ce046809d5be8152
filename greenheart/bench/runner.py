"""Running a step: a monitor process, fleet processes, and what they report.

Every step starts from nothing: a fresh monitor process (ours, ipyparallel's, or the
bare pyzmq loop) bound to free loopback ports, and fresh fleet processes sized to the
step. So monitors compared step by step never share a fleet, nor inherit each
other's backlog. Children are terminated when the step ends, whatever happens, and
die with the benchmark if it is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import attrs

from greenheart.bench.proc import cpu_seconds, rss_kib
from greenheart.bench.ramp import Step, StepResult, summarise, unsettled
from greenheart.green.curve import write_key_pair

#: seconds a child may take to start (importing ipyparallel is slow on a busy machine)
STARTUP_SECONDS = 60.0

#: beats skipped after every heart first answered, before the hold starts
WARMUP_BEATS = 2

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ChildFailed(RuntimeError):
    pass


class Child:
    """A benchmark process that speaks JSON lines on its stdout."""

    def __init__(self, role: str, *args: str):
        self.role = role
        # What a child logs (late pongs under overload, say) would scramble the progress
        # display; it is kept, and its last line explains a child that died.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenheart.bench.children", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=self.stderr,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.lines: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"read {role}").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError(f"{self.role} said nothing for {timeout:.0f} s") from None
        if line is None:
            self.lines.put(None)  # every later read fails too
            raise ChildFailed(
                f"{self.role} exited with status {self.proc.wait()}: {self.last_words()}"
            )
        return line

    def last_words(self) -> str:
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else "(nothing on stderr)"

    def stop(self) -> None:
        terminate(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
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


#: called with (monitor, step, beats held so far, the latest beat)
Progress = Callable[[str, Step, int, dict], None]


@attrs.define
class StepRunner:
    """Runs steps; ``hold`` seconds of measurement each, after the hearts settle."""

    hold: float
    processes: int = 1
    max_misses: int = 3
    progress: Progress | None = None

    def settle_seconds(self, step: Step) -> float:
        # Connecting thousands of hearts takes a few seconds, and registration a beat.
        return max(20.0, 10 * step.period_ms / 1000)

    def run(self, monitor: str, step: Step) -> StepResult:
        with children() as started, tempfile.TemporaryDirectory() as keys:
            curve = []
            if monitor == "greenheart-curve":
                write_key_pair(keys, "server")
                write_key_pair(os.path.join(keys, "allowed"), "fleet")
                curve = [f"--curve={keys}"]
            target = Child(
                monitor,
                monitor,
                f"--period={step.period_ms:g}",
                f"--max-misses={self.max_misses}",
                *curve,
            )
            started.append(target)
            ready = target.next(STARTUP_SECONDS)
            fleets = []
            shares = _split(step.hearts, self.processes)
            for number, size in enumerate(shares):
                fleet = Child(
                    f"fleet {number}",
                    "fleet",
                    f"--ping={ready['ping']}",
                    f"--pong={ready['pong']}",
                    f"--size={size}",
                    f"--prefix=bench{number}",
                    *curve,
                )
                started.append(fleet)
                fleets.append(fleet)
            rss_before = sum(fleet.next(STARTUP_SECONDS)["rss_before_kib"] for fleet in fleets)
            for fleet in fleets:
                fleet.next(STARTUP_SECONDS)  # every socket is open
            return self._measure(monitor, step, target, fleets, rss_before)

    def _measure(
        self, monitor: str, step: Step, target: Child, fleets: list[Child], rss_before: int
    ) -> StepResult:
        deadline = time.monotonic() + self.settle_seconds(step)
        beat_timeout = 10 + 5 * step.period_ms / 1000
        while True:
            # a beat at least: a monitor still settling near the deadline may beat late
            beat = target.next(max(0.0, deadline - time.monotonic()) + beat_timeout)
            if beat["hearts"] >= step.hearts and beat["responded"] >= step.hearts:
                break
            if time.monotonic() > deadline:
                return unsettled(
                    monitor,
                    step,
                    f"heard at most {beat['responded']} of {step.hearts} hearts in one beat"
                    f" within {self.settle_seconds(step):.0f} s",
                )
        for _ in range(WARMUP_BEATS):
            target.next(beat_timeout)
        first = target.next(beat_timeout)
        fleet_cpu = sum(cpu_seconds(fleet.pid) for fleet in fleets)
        beats = [first]
        while beats[-1]["at"] - first["at"] < self.hold or len(beats) < 3:
            beats.append(target.next(beat_timeout))
            if self.progress:
                self.progress(monitor, step, len(beats) - 1, beats[-1])
        fleet_cpu = sum(cpu_seconds(fleet.pid) for fleet in fleets) - fleet_cpu
        fleet_rss = sum(rss_kib(fleet.pid) for fleet in fleets) - rss_before
        return summarise(monitor, step, beats, fleet_cpu_seconds=fleet_cpu, fleet_rss_kib=fleet_rss)


def _split(hearts: int, processes: int) -> list[int]:
    """``hearts`` shared as evenly as can be among at most ``processes`` fleets."""
    processes = max(1, min(processes, hearts))
    share, extra = divmod(hearts, processes)
    return [share + (1 if n < extra else 0) for n in range(processes)]

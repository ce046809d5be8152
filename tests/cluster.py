"""Real ipyparallel processes for the cluster tests: controllers and engines on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent

#: how long a controller or engine may take to start on a busy 2-core machine
START_SECONDS = 60.0


def terminate_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process's whole session (its children too), then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def controller(
    profile_dir: Path, *, greenheart: bool = True, args: Sequence[str] = (), run: str = "controller"
) -> Iterator[subprocess.Popen]:
    """``greenheart ipcontroller`` (or the stock ``ipcontroller``) on loopback, until the end
    of the block; it is ready when it has written its connection files, or, started on those
    of one before (``--reuse``, ``--restore``: it does not write them), when it listens on
    their ports. It logs to ``PROFILE-RUN.log``."""
    if greenheart:
        command = [sys.executable, "-m", "greenheart", "ipcontroller"]
    else:
        command = [str(BIN / "ipcontroller")]
    security = profile_dir / "security"
    files = [security / name for name in ("ipcontroller-engine.json", "ipcontroller-client.json")]
    before = [_written(path) for path in files]
    log = open(profile_dir.parent / f"{profile_dir.name}-{run}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*command, f"--profile-dir={profile_dir}", "--ip=127.0.0.1", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (
            all(_written(path) not in (None, old) for path, old in zip(files, before, strict=True))
            or (None not in before and _listening(files[1]))
        ):
            assert proc.poll() is None, f"the controller exited: {controller_log(profile_dir, run)}"
            assert time.monotonic() < deadline, "the controller did not start"
            time.sleep(0.1)
        yield proc
    finally:
        terminate_group(proc)
        log.close()


def _written(path: Path) -> int | None:
    """When ``path`` was last written (ns), or None if it is not there."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _listening(client_file: Path) -> bool:
    """Whether the hub listens on the registration port of ``client_file``."""
    try:
        port = json.loads(client_file.read_text())["registration"]
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except (OSError, ValueError, KeyError):
        return False
    return True


def controller_log(profile_dir: Path, run: str = "controller") -> str:
    return (profile_dir.parent / f"{profile_dir.name}-{run}.log").read_text()


@contextlib.contextmanager
def engines(profile_dir: Path, count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` real ``ipengine`` processes, without their nanny processes: a crash must be
    found by the heart monitor, not reported by a nanny."""
    procs = [
        subprocess.Popen(
            [
                str(BIN / "ipengine"),
                f"--profile-dir={profile_dir}",
                "--IPEngine.enable_nanny=False",
                "--log-level=WARN",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            terminate_group(proc, grace=5.0)

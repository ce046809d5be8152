"""What Linux's /proc says of a process: its CPU time, its memory, its descendants."""

from __future__ import annotations

import os
from pathlib import Path


def proc_status(field: str, pid: int | str = "self") -> int:
    """A number from /proc/PID/status: VmRSS (KiB), Threads (libzmq's included), ..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory, in KiB."""
    return proc_status("VmRSS", pid)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU of a process, all its threads included."""
    return _cpu(Path(f"/proc/{pid}/stat").read_text())


def _cpu(stat: str) -> float:
    """User + system CPU, in seconds, from a /proc stat line (a process's or a thread's)."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU of a process's threads, summed by role: ``python`` (the main thread,
    where gevent's hub and every greenlet run), ``zmq io`` (libzmq's I/O threads) and
    ``other`` (libzmq's reaper, a reader thread)."""
    found = {"python": 0.0, "zmq io": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if task.name == str(pid):
            role = "python"
        elif name.startswith("ZMQbg/IO"):
            role = "zmq io"
        else:
            role = "other"
        found[role] += _cpu(stat)
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: its children, theirs, and so on."""
    found, parents = [], [pid]
    while parents:
        for task in Path(f"/proc/{parents.pop()}/task").glob("*/children"):
            try:
                kids = [int(kid) for kid in task.read_text().split()]
            except OSError:  # the task ended meanwhile
                continue
            found.extend(kids)
            parents.extend(kids)
    return found


def established(ports: set[int]) -> int:
    """TCP connections this network namespace's kernel holds established on ``ports`` (IPv4:
    what a monitor binds here)."""
    count = 0
    for fields in (row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]):
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) in ports:  # ESTABLISHED
            count += 1
    return count


def listening_descendant(root: int, port: int) -> int | None:
    """The process below ``root`` that holds a TCP socket listening on ``port``, if any."""
    wanted = f":{port:04X}"
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for fields in (row.split() for row in rows):
            if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    for pid in descendants(root):
        try:
            links = {link.readlink().as_posix() for link in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if sockets & links:
            return pid
    return None

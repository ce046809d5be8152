"""What Linux's /proc says of a process: its CPU time and its memory."""

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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

"""Other hosts, made on this machine: network namespaces joined to ours by veth pairs; for the
tests (tests/test_network.py) and ``greenheart bench hosts``.

Each :class:`Host` is a namespace with one address, its end of a veth pair, whose other end
sits on a bridge in our namespace with the gateway address (the only one a monitor binds). A
fault is applied on our end, so that the host's processes never know: ``vanish()`` sets the
link down (no FIN, no RST: the host is gone as a powered-off machine is), ``heal()`` up
again, ``shape()`` slows it with ``tbf`` (this kernel has no ``netem``: no loss or delay by
rule, only a rate), ``delete()`` deletes the namespace with its processes' sockets. Nothing
leaves the machine: the addresses exist only here.

:class:`Network` makes the bridge and the hosts, and always tears them down, processes first,
even when the test fails; :func:`hosts` makes a few at once. It needs root and ``ip``:
:func:`missing` says which is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import attrs

_PREFIX = f"gh{os.getpid() % 100000}"
#: a /24 of our own for this process's hosts (10.231.0.0/16 is used by nothing here)
_SUBNET = f"10.231.{os.getpid() % 250}"
#: hosts on one network at once (the /24's addresses, the gateway's and the broadcast aside)
MAX_HOSTS = 253


def missing() -> str | None:
    """What this machine lacks to make hosts; None if nothing."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network namespaces need {tool} (iproute2)"
    return None


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=10)


@attrs.define(eq=False)
class Host:
    """A host: a namespace, its address, and our end of its link."""

    name: str
    address: str
    link: str
    processes: list[subprocess.Popen[bytes]] = attrs.field(factory=list)

    def run(self, *argv: str, **popen: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the host (a Python module with ``-m``: the test's interpreter)."""
        command = ["ip", "netns", "exec", self.name, *argv]
        process = subprocess.Popen(command, **popen)  # type: ignore[call-overload]
        self.processes.append(process)
        return process

    def python(self, *argv: str, **popen: object) -> subprocess.Popen[bytes]:
        return self.run(sys.executable, *argv, **popen)

    def vanish(self) -> None:
        """The host is gone: its link is down, and nothing it sent or would send arrives."""
        _ip("link", "set", self.link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.link, "up")

    def shape(self, rate: str) -> None:
        """Limit what we send the host to ``rate`` (``tc``'s words: ``100kbit``)."""
        subprocess.run(
            ["tc", "qdisc", "replace", "dev", self.link, "root", "tbf", "rate", rate,
             "burst", "4kb", "latency", "400ms"],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip

    def delete(self) -> None:
        """The namespace goes, and with it the host's side of every connection."""
        self.stop()
        _ip("netns", "del", self.name, check=False)

    def stop(self) -> None:
        """Kill the host's processes (``ip netns exec`` becomes the command it runs)."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # a stopped process too
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@attrs.define(eq=False)
class Network:
    """A bridge in our namespace with the gateway address, and the hosts on it."""

    bridge: str = f"{_PREFIX}br"
    gateway: str = f"{_SUBNET}.1"
    hosts: dict[str, Host] = attrs.field(factory=dict)
    _made: int = 0

    def __enter__(self) -> Network:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add(self) -> Host:
        """A new host on the bridge, at an address no host on it has now."""
        used = {host.address for host in self.hosts.values()}
        address = next(a for n in range(2, MAX_HOSTS + 2) if (a := f"{_SUBNET}.{n}") not in used)
        index, self._made = self._made, self._made + 1
        host = Host(f"{_PREFIX}h{index}", address, f"{_PREFIX}v{index}")
        self.hosts[host.name] = host
        _ip("netns", "add", host.name)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        _ip("link", "set", host.link, "master", self.bridge)
        _ip("link", "set", host.link, "up")
        _ip("-n", host.name, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", host.name, "link", "set", "eth0", "up")
        _ip("-n", host.name, "link", "set", "lo", "up")
        return host

    def remove(self, host: Host) -> None:
        """The host and its link go, its processes killed first."""
        self.hosts.pop(host.name, None)
        host.delete()
        _ip("link", "del", host.link, check=False)

    def close(self) -> None:
        for host in list(self.hosts.values()):
            self.remove(host)
        _ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def hosts(count: int) -> Iterator[tuple[str, list[Host]]]:
    """``count`` hosts on one bridge, and the gateway address a monitor binds; all torn down
    at the end, whatever happened."""
    with Network() as network:
        yield network.gateway, [network.add() for _ in range(count)]

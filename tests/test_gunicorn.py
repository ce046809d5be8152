"""gunicorn's gevent workers with examples/gunicorn.conf.py: a heart in every worker, made after
the fork, watched by a ``greenheart monitor`` process that serves the live page."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import runpy
import shutil
import signal
import socket
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import gevent
import zmq.green
from gevent import subprocess

from greenheart.integrations.events import EventClient
from tests.helpers import RecordingMonitor, wait_until

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "examples" / "gunicorn.conf.py"
GUNICORN = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
#: the monitor's period, in seconds: long, so that a verdict within a fraction of it was the
#: closed connection's, not a beat's
PERIOD = 0.5


class Lines:
    """A child's output, read line by line into :attr:`lines` by a greenlet, so that its pipe
    never fills."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._greenlet = gevent.spawn(self._read, pipe)

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def find(self, pattern: str) -> list[re.Match[str]]:
        return [match for line in self.lines if (match := re.search(pattern, line))]

    def stop(self) -> None:
        self._greenlet.kill()


class Events:
    """The monitor's event stream, each event with the time it arrived here."""

    def __init__(self, address: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._client = EventClient(address, context=zmq.green.Context.instance())
        self._greenlet = gevent.spawn(self._follow)

    def _follow(self) -> None:
        for event in self._client.events():
            self.seen.append((time.monotonic(), event))

    def of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, event) for at, event in self.seen if event["event"] == kind]

    def hearts(self, kind: str) -> list[str]:
        return [event["heart"] for _, event in self.of(kind)]

    def close(self) -> None:
        self._greenlet.kill()
        self._client.close()


def pid_of(heart: str) -> int:
    return int(heart.rsplit("-", 1)[1])


def parent_of(pid: int) -> int:
    """A live process's parent, from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def http_get(url: str) -> bytes:
    # a blocking client, in a thread while the hub runs on
    return gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(url, timeout=10).read())


def test_each_gunicorn_worker_has_a_heart_a_killed_one_crashes_in_ms_and_sigterms_leave():
    assert GUNICORN, "gunicorn is a dev dependency"
    host = socket.gethostname()
    monitor = subprocess.Popen(
        [sys.executable, "-m", "greenheart", "monitor", "--ping", "tcp://127.0.0.1:0",
         "--pong", "tcp://127.0.0.1:0", "--period", str(PERIOD * 1000), "--fail-on-disconnect",
         "--http-port", "0", "--events", "tcp://127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    said = Lines(monitor.stderr)
    gunicorn = events = logged = None
    pids: set[int] = set()
    try:
        wait_until(lambda: said.find("Ctrl-C stops"), timeout=15)
        ping, pong = said.find(r"pinging on (\S+) .* pongs on ([^;]+);")[0].groups()
        page = said.find(r"the live page on (\S+)")[0][1]
        events = Events(said.find(r"events on ([^,]+),")[0][1])
        wait_until(lambda: events.of("hearts"), timeout=10)  # following, from no hearts
        assert events.of("hearts")[0][1]["hearts"] == []

        gunicorn = subprocess.Popen(
            [GUNICORN, "-c", str(CONF), "-k", "gevent", "-w", "3", "-b", "127.0.0.1:0",
             "--no-control-socket", "tests.gunicorn_app:app"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT),
                 "GREENHEART_PING": ping, "GREENHEART_PONG": pong},
        )  # fmt: skip
        logged = Lines(gunicorn.stderr)
        wait_until(lambda: len(events.hearts("new_heart")) == 3, timeout=30)
        first = events.hearts("new_heart")
        pids = {pid_of(heart) for heart in first}
        # readable identities: gunicorn-<host>-<pid>, each pid a worker of this gunicorn, as
        # gunicorn's own log names it
        assert sorted(first) == sorted(f"gunicorn-{host}-{pid}" for pid in pids)
        assert {parent_of(pid) for pid in pids} == {gunicorn.pid}
        assert {int(m[1]) for m in logged.find(r"Booting worker with pid: (\d+)")} == pids
        live = json.loads(http_get(f"{page}live.json"))
        assert sorted(live["hearts"]["set"]) == sorted(first) and live["counts"]["answering"] == 3
        wait_until(lambda: logged.find(r"Listening at: (\S+)"), timeout=10)
        served = http_get(logged.find(r"Listening at: (\S+)")[0][1]).decode()
        assert int(served.split()[1]) in pids  # the workers serve, their hearts beside them

        # SIGKILL one worker: failed as crashed when its connection closes, between beats
        victim = first[0]
        killed_at = time.monotonic()
        os.kill(pid_of(victim), signal.SIGKILL)
        wait_until(lambda: events.hearts("heart_failure"), timeout=5)
        heard_at, failure = events.of("heart_failure")[0]
        # ``at`` is the monitor's time.monotonic(): CLOCK_MONOTONIC, one clock for every
        # process of this machine
        verdict = failure["at"] - killed_at
        assert (failure["heart"], failure["cause"], failure["diagnosis"]) == (
            victim, "disconnected", "crashed",
        )  # fmt: skip
        assert 0 < verdict < PERIOD / 4, verdict
        # gunicorn's replacement registers, under its own pid: booted, it hears the next ping
        # and is registered by the beat after (here the kill came just after a beat)
        wait_until(lambda: len(events.hearts("new_heart")) == 4, timeout=15)
        registered_at, joined = events.of("new_heart")[3]
        assert registered_at - killed_at < 2 * PERIOD + 3
        replacement = pid_of(joined["heart"])
        assert replacement not in pids and parent_of(replacement) == gunicorn.pid
        pids.add(replacement)
        assert events.hearts("heart_failure") == [victim]

        # SIGTERM to gunicorn: every worker stops its heart in worker_exit, and exits
        alive = [heart for heart in events.hearts("new_heart") if heart != victim]
        terminated_at = time.monotonic()
        gunicorn.send_signal(signal.SIGTERM)
        assert gunicorn.wait(timeout=20) == 0
        wait_until(lambda: len(events.hearts("heart_failure")) == 4, timeout=5)
        stops = events.of("heart_failure")[1:]
        assert sorted(event["heart"] for _, event in stops) == sorted(alive)
        # each stopped heart said it leaves before its connection closed: failed at once, as
        # left, not as crashed; its close then failed nothing
        assert {(event["cause"], event["diagnosis"]) for _, event in stops} == {("left", "stopped")}
        assert all(event["at"] > terminated_at for _, event in stops)
        stopped = {m[1] for m in logged.find(r"greenheart: heart (\S+) stopped")}
        assert stopped == set(alive)  # by Heart.stop(), not by the process's end
        took = max(event["at"] for _, event in stops) - terminated_at
        # each heart joined once and failed once; no other events
        for heart in events.hearts("new_heart"):
            kinds = [event["event"] for _, event in events.seen if event.get("heart") == heart]
            assert kinds == ["new_heart", "heart_failure"], (heart, kinds)
        assert {event["event"] for _, event in events.seen} == {
            "hearts", "new_heart", "heart_failure",
        }  # fmt: skip
        # gunicorn's news, and no other word: no traceback, no warning from a heart
        expected = re.compile(r"\[\d+\] (\[INFO\] |\[ERROR\] Worker \(pid:\d+\) was sent SIGKILL)")
        assert all(expected.search(line) for line in logged.lines), "\n".join(logged.lines)
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        print(
            f"SIGKILL to verdict {verdict * 1000:.1f} ms (heard here after"
            f" {(heard_at - killed_at) * 1000:.1f} ms); replacement registered after"
            f" {registered_at - killed_at:.2f} s; SIGTERM: {len(stops)} hearts left (stopped), the"
            f" last {took:.2f} s after"
        )
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=10) == 0
    finally:
        if events is not None:
            events.close()
        for proc in (gunicorn, monitor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in pids:  # a worker outlives a killed master by a second at most; not here
            with contextlib.suppress(OSError):  # gone; and a pid reused since is left alone
                if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        for lines in (said, logged):
            if lines is not None:
                lines.stop()


def test_a_heart_that_dies_stops_its_worker_and_worker_exit_stops_a_heart(
    make_monitor, monkeypatch, caplog
):
    """The hooks in this process, with a stand-in for gunicorn's worker."""
    monitor = make_monitor(RecordingMonitor, period=50)
    monkeypatch.setenv("GREENHEART_PING", monitor.ping_addr)
    monkeypatch.setenv("GREENHEART_PONG", monitor.pong_addr)
    hooks = runpy.run_path(str(CONF))
    assert hooks["worker_class"] == "gevent"
    worker = types.SimpleNamespace(pid=os.getpid(), alive=True, log=logging.getLogger("worker"))
    hooks["post_worker_init"](worker)
    identity = f"gunicorn-{socket.gethostname()}-{os.getpid()}".encode()
    try:
        wait_until(lambda: identity in monitor.hearts)
        with caplog.at_level(logging.ERROR, "greenheart.lifecycle"):
            worker.greenheart.device.kill(RuntimeError("a bug"))
        assert not worker.greenheart.running and worker.alive is False
        assert "Heart stopped" in caplog.text
        wait_until(lambda: identity in monitor.failed)
        hooks["worker_exit"](None, worker)  # stopped already: nothing more
        hooks["worker_exit"](None, types.SimpleNamespace())  # the master's, with no heart
    finally:
        worker.greenheart.stop()

"""A busy monitor still detects deaths; a paused one blames nobody.

A busy hub (Python computing without yielding) and a paused process (SIGSTOP) both make
beats late, but only the paused process may have answers still sitting in the kernel."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time

import gevent
import pytest
from gevent import subprocess
from gevent.pywsgi import WSGIServer

from greenheart import Heart
from greenheart.bench import lines
from greenheart.fleet import HeartFleet
from tests.helpers import RecordingMonitor, wait_until

#: clients that ask for the server's page RATE times a second in all, each waiting for its
#: answer: with two of them the server always has a request waiting, and never a pile
LOAD = """
import sys, threading, time, urllib.request
url, rate, seconds, clients = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), 2
end = time.monotonic() + seconds
def client():
    while (asked := time.monotonic()) < end:
        urllib.request.urlopen(url, timeout=60).read()
        time.sleep(max(0.0, asked + clients / rate - time.monotonic()))
threads = [threading.Thread(target=client) for _ in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def burning_app(seconds: float):
    """A WSGI app whose every request computes for ``seconds`` without yielding to the hub."""

    def app(environ, start_response):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done\n"]

    return app


def read_kills(fleet: subprocess.Popen, killed: dict[bytes, float]) -> None:
    for text in fleet.stdout:
        line = lines.read(text)
        if isinstance(line, lines.Killed):
            for heart in line.hearts:
                killed[heart.encode()] = line.at


@pytest.mark.timeout(120)
def test_a_saturated_hub_still_fails_killed_hearts_within_the_bound_and_no_others(make_monitor):
    period, max_misses, hearts, load_seconds = 0.2, 1, 200, 32
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=max_misses)
    beats: list[float] = []
    monitor.add_beat_handler(lambda beat: beats.append(beat.at))
    server = WSGIServer(("127.0.0.1", 0), burning_app(2 * period), log=None)
    server.start()
    # 5 of the fleet's hearts die every 8 s (killed at the socket, as by their process's death)
    fleet = subprocess.Popen(
        [sys.executable, "-m", "greenheart.bench.programs", "soak-fleet",
         "--ping", monitor.ping_addr, "--pong", monitor.pong_addr, "--size", str(hearts),
         "--churn", str(5 * 60 / (hearts * 8)), "--every", "8", "--seed", "3"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed: dict[bytes, float] = {}
    reader = gevent.spawn(read_kills, fleet, killed)
    load = None
    try:
        wait_until(lambda: len(monitor.hearts) >= hearts, timeout=30)
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.server_port}/"
        load = subprocess.Popen([sys.executable, "-c", LOAD, url, "5", str(load_seconds)])
        wait_until(lambda: time.monotonic() - started > load_seconds, timeout=load_seconds + 30)
        loaded = [at for at in beats if at >= started]
        interval = max(later - earlier for earlier, later in itertools.pairwise(loaded))
        bound = (max_misses + 2) * interval + 1.0
        # the kills of the last moments may not have been judged yet
        judged = {heart: at for heart, at in killed.items() if at < time.monotonic() - bound}
        wait_until(lambda: all(heart in monitor.failed for heart in judged), timeout=bound + 5)
    finally:
        for proc in (load, fleet):
            if proc is not None:
                proc.kill()
                proc.wait()
        reader.kill()
        server.stop(timeout=1)
    assert len(judged) >= 15
    for heart, at in judged.items():
        assert monitor.failed[heart][0] - at <= bound, (heart, monitor.failed[heart][0] - at)
    assert set(monitor.failed) <= set(killed), "a healthy heart was failed"
    late = sum(b - a > 1.5 * period for a, b in itertools.pairwise(loaded))
    assert late >= len(loaded) / 2, "the hub was not saturated: the test would prove nothing"
    monitor.assert_events_alternate()


def test_a_monitor_paused_for_five_and_for_thirty_periods_fails_nobody(tmp_path):
    period = 0.1
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "greenheart", "monitor", "--ping", ping, "--pong", pong,
         "--period", str(period * 1000), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events: list[dict] = []
    reader = gevent.spawn(lambda: events.extend(json.loads(line) for line in monitor.stdout))
    hearts = [Heart(ping, pong, heart_id=f"steady-{n}") for n in range(2)]
    fleet = HeartFleet(ping, pong, size=20, prefix="paused-monitor")
    try:
        for heart in hearts:
            heart.start()
        fleet.start()
        wait_until(lambda: sum(e["event"] == "new_heart" for e in events) == 22, timeout=30)
        for periods in (5, 30):
            os.kill(monitor.pid, signal.SIGSTOP)
            gevent.sleep(periods * period)
            os.kill(monitor.pid, signal.SIGCONT)
            gevent.sleep(10 * period)  # beats judge again after the pause
        assert monitor.poll() is None
    finally:
        os.kill(monitor.pid, signal.SIGCONT)
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=10) == 0
        reader.join(timeout=5)  # the rest of its stdout
        stderr = monitor.stderr.read()
        fleet.stop()
        for heart in hearts:
            heart.stop()
    assert not [event for event in events if event["event"] == "failed_heart"]
    assert stderr.count("monitor stalled") >= 1  # (the second pause may be held back: rate limit)

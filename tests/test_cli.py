"""The greenheart command, run as a user would: in child processes, stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import signal
import socket
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
import zmq
import zmq.green
from gevent import subprocess

import greenheart.cli.heart as heart_command
from greenheart.cli import main
from greenheart.cli.args import PING, PONG
from greenheart.cli.demo import run_demo
from greenheart.core.errors import UsageError, require_extra
from greenheart.green.sockets import close_sockets


def greenheart(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "greenheart", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_json_until(proc: subprocess.Popen, wanted: dict, timeout: float = 15) -> list[dict]:
    """Read JSON lines from ``proc`` until one has every key/value of ``wanted``."""
    seen = []
    with gevent.Timeout(timeout, AssertionError(f"never printed {wanted}; printed {seen}")):
        for line in proc.stdout:
            event = json.loads(line)
            seen.append(event)
            if wanted.items() <= event.items():
                return seen
    raise AssertionError(f"exited before printing {wanted}; printed {seen}")


def interrupt(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=10)


def test_monitor_and_heart_commands(tmp_path):
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    monitor = greenheart(
        "monitor", "--ping", ping, "--pong", pong, "--period", "50", "--max-misses", "1",
        "--json", "--summary",
    )  # fmt: skip
    heart = greenheart("heart", "--ping", ping, "--pong", pong, "--id", "cli-heart")
    try:
        seen = read_json_until(monitor, {"event": "new_heart", "heart": "cli-heart"})
        assert interrupt(heart) == 0
        seen += read_json_until(monitor, {"event": "failed_heart", "heart": "cli-heart"})
        assert interrupt(monitor) == 0
    finally:
        for proc in (monitor, heart):
            proc.kill()
            proc.wait()
    summaries = [event for event in seen if event["event"] == "beat"]
    assert (
        summaries and {"hearts", "responded", "on_probation", "max_rtt_ms"} <= summaries[-1].keys()
    )
    assert any(event["hearts"] == 1 and event["responded"] == 1 for event in summaries)
    assert "pinging on ipc://" in monitor.stderr.read()
    # its certificate: stopped by Ctrl-C, it said it leaves, and failed at once as left, even
    # without --fail-on-disconnect
    failed = seen[-1]
    assert (failed["cause"], failed["diagnosis"]) == ("left", "stopped")
    assert failed["misses"] == 0 and failed["connected"] is True and failed["silent_ms"] < 500
    assert failed["last_rtt_ms"] > 0 and failed["failed_together"] == 1


def test_monitor_prints_text_lines_by_default(tmp_path):
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    monitor = greenheart("monitor", "--ping", ping, "--pong", pong, "--period", "50")
    heart = greenheart("heart", "--ping", ping, "--pong", pong, "--id", "0x01ff")
    try:
        with gevent.Timeout(15):
            line = monitor.stdout.readline()
        assert "new heart heart=0x01ff" in line
    finally:
        for proc in (monitor, heart):
            interrupt(proc)


@contextlib.contextmanager
def default_ports() -> Iterator[None]:
    """The default ping and pong ports, this test's alone: another run of it waits its turn (a
    lock file), and a port another program holds skips it."""
    with open(Path(tempfile.gettempdir()) / "greenheart-default-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for addr in (PING, PONG):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds
                try:
                    probe.bind(("127.0.0.1", int(addr.rpartition(":")[2])))
                except OSError:
                    pytest.skip(f"another program holds {addr}")
        yield


def test_monitor_heart_and_fleet_meet_on_the_default_loopback_addresses():
    assert PING.startswith("tcp://127.0.0.1:") and PONG.startswith("tcp://127.0.0.1:")
    with default_ports():
        monitor = greenheart("monitor", "--period", "100", "--json")
        fleet = greenheart("fleet", "--size", "3", "--prefix", "defaults")
        heart = greenheart("heart", "--id", "default-heart")
        try:
            wanted = {"defaults-0", "defaults-1", "defaults-2", "default-heart"}
            seen: set[str] = set()
            with gevent.Timeout(30, False):
                while seen != wanted and (line := monitor.stdout.readline()):
                    event = json.loads(line)
                    if event["event"] == "new_heart":
                        seen.add(event["heart"])
            assert seen == wanted, monitor.stderr.read() if monitor.poll() else seen
            for proc in (heart, fleet, monitor):
                assert interrupt(proc) == 0
        finally:
            for proc in (monitor, fleet, heart):
                proc.kill()
                proc.wait()


def test_bad_arguments_are_refused():
    for argv in (
        ["monitor", "--ping", "a", "--pong", "b", "--period", "0"],
        ["monitor", "--max-misses", "x"],
    ):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")


def test_errors_are_one_line_not_a_traceback(tmp_path):
    bad_id = greenheart("heart", "--ping", "ipc://x", "--pong", "ipc://y", "--id", "0x00ff")
    assert bad_id.wait(timeout=30) == 2
    assert bad_id.stderr.read().startswith("greenheart heart: error: heart_id must not start")
    bad_addr = greenheart("monitor", "--ping", "nonsense://", "--pong", f"ipc://{tmp_path}/p")
    assert bad_addr.wait(timeout=30) == 2
    assert "greenheart monitor: error:" in bad_addr.stderr.read()


def test_demo_detects_the_stopped_heart():
    out = io.StringIO()
    assert run_demo(hearts=3, period=50, max_misses=1, out=out) == 0
    text = out.getvalue()
    assert "heart failed: heart-1" in text and "demo OK" in text


def test_fleet_command_reports_status_and_stops_cleanly(make_monitor):
    monitor = make_monitor(period=50)
    fleet = greenheart(
        "fleet", "--ping", monitor.ping_addr, "--pong", monitor.pong_addr, "--size", "5",
        "--prefix", "cli", "--loss", "0.1", "--delay", "exp:2", "--seed", "3",
        "--status-every", "0.2", "--json",
    )  # fmt: skip
    try:
        seen = read_json_until(fleet, {"event": "status", "alive": 5})
        wait = read_json_until(fleet, {"event": "status"})[-1]
        assert monitor.hearts == {b"cli-%d" % n for n in range(5)}
        assert interrupt(fleet) == 0
    finally:
        fleet.kill()
        fleet.wait()
    assert {
        "hearts",
        "alive",
        "fleet_pings",
        "pongs",
        "dropped",
        "delayed",
        "unsent",
    } <= wait.keys()
    assert seen[-1]["hearts"] == 5


def test_fleet_command_refuses_an_impossible_size():
    fleet = greenheart("fleet", "--ping", "ipc://x", "--pong", "ipc://y", "--size", "100000")
    assert fleet.wait(timeout=30) == 2
    assert "open-file limit at" in fleet.stderr.read()


def test_keys_and_a_curve_monitor_from_the_command_line(tmp_path):
    for directory, name in (("server", "monitor"), ("allowed", "web"), ("others", "stranger")):
        done = subprocess.run(
            [sys.executable, "-m", "greenheart", "keys", str(tmp_path / directory), "--name", name],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0 and f"{name}.key_secret" in done.stdout
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    monitor = greenheart(
        "monitor", "--ping", ping, "--pong", pong, "--period", "50", "--json",
        "--curve-secret", str(tmp_path / "server/monitor.key_secret"),
        "--allow", str(tmp_path / "allowed"), "--max-hearts", "10",
    )  # fmt: skip
    server_key = str(tmp_path / "server/monitor.key")
    hearts = []
    for name, key in (("stranger", "others/stranger"), ("web", "allowed/web")):
        secret = str(tmp_path / f"{key}.key_secret")
        hearts.append(
            greenheart("heart", "--ping", ping, "--pong", pong, "--id", name,
                       "--server-key", server_key, "--curve-secret", secret)
        )  # fmt: skip
    try:
        seen = read_json_until(monitor, {"event": "new_heart", "heart": "web"})
        assert not any(event.get("heart") == "stranger" for event in seen)
    finally:
        for proc in (monitor, *hearts):
            proc.kill()
            proc.wait()


def test_curve_options_must_come_together(capsys):
    assert main(["monitor", "--ping", "inproc://a", "--pong", "inproc://b", "--allow", "x"]) == 2
    assert "need --curve-secret" in capsys.readouterr().err
    assert main(["heart", "--ping", "inproc://a", "--pong", "inproc://b", "--server-key", "k"]) == 2
    assert "both --server-key and --curve-secret" in capsys.readouterr().err


def test_monitor_serves_metrics_and_events(tmp_path):
    ping, pong, events = (f"ipc://{tmp_path}/{name}" for name in ("ping", "pong", "events"))
    monitor = greenheart(
        "monitor", "--ping", ping, "--pong", pong, "--period", "50", "--json",
        "--events", events, "--metrics-port", "0", "--http-port", "0", "--http-connections", "5",
    )  # fmt: skip
    subscriber = zmq.green.Context.instance().socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.setsockopt(zmq.SUBSCRIBE, b"new_heart")
    heart = None
    try:
        with gevent.Timeout(15, AssertionError("the monitor never said where its metrics are")):
            lines = []
            while not any("/metrics" in line for line in lines):
                lines.append(monitor.stderr.readline())
        url = next(line for line in lines if "/metrics" in line).split()[-1]
        subscriber.connect(events)
        gevent.sleep(0.2)  # the subscription reaches the monitor
        heart = greenheart("heart", "--ping", ping, "--pong", pong, "--id", "observed")
        with gevent.Timeout(15, AssertionError("no new_heart event")):
            assert subscriber.recv_multipart()[:2] == [b"new_heart", b"observed"]
        body = gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(url).read())
        assert b"greenheart_hearts 1.0" in body
        assert b'greenheart_http_connections{server="page"} 0.0' in body  # the page's, reported
    finally:
        close_sockets(subscriber)
        for proc in (monitor, heart):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_a_bug_inside_greenheart_is_a_traceback_not_bad_arguments(monkeypatch, capsys):
    def buggy(args):
        raise KeyError("a bug in greenheart")

    monkeypatch.setattr(heart_command, "run", buggy)
    with pytest.raises(KeyError, match="a bug in greenheart"):
        main(["heart", "--ping", "inproc://a", "--pong", "inproc://b"])
    assert "error:" not in capsys.readouterr().err


def test_what_a_user_can_fix_is_one_line_with_status_2(monkeypatch, capsys):
    def refused(args):
        raise UsageError("that cannot be done as asked")

    monkeypatch.setattr(heart_command, "run", refused)
    assert main(["heart", "--ping", "inproc://a", "--pong", "inproc://b"]) == 2
    assert capsys.readouterr().err == "greenheart heart: error: that cannot be done as asked\n"
    with pytest.raises(SystemExit) as exit:
        main(["fleet", "--ping", "a", "--pong", "b", "--size", "1", "--loss", "1.5"])
    assert exit.value.code == 2
    assert "must be from 0 to 1" in capsys.readouterr().err


def test_a_missing_optional_dependency_is_a_usage_error_naming_its_extra():
    require_extra("json", "none-needed")  # installed: nothing happens
    with pytest.raises(
        UsageError, match=r"no_such_module is not installed: pip install 'greenheart-zmq\[some\]'"
    ):
        require_extra("no_such_module", "some")

"""A monitor's state on disk: a restarted monitor awaits the hearts it knew, fails once those
that died while it was down, and a damaged, foreign or newer state is refused, never lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path

import gevent
import pytest
import zmq.green
from gevent import subprocess  # the fleet answers from this process's hub meanwhile

from greenheart import HeartMonitor
from greenheart.core.errors import UsageError
from greenheart.core.failures import Cause
from greenheart.core.ledger import Ledger
from greenheart.fleet import HeartFleet
from greenheart.green.state import StateError, StateFile
from greenheart.integrations.events import EventClient, EventStream
from tests.helpers import free_pair, free_port, wait_until

PERIOD = 100


def _monitor(ping: str, pong: str, state: str, **settings: object) -> HeartMonitor:
    """A monitor on ``ping`` and ``pong``, once libzmq has let go of the ports of the one
    before (it closes a listener in its own thread, a moment after the socket)."""
    made: list[HeartMonitor] = []

    def bound() -> bool:
        try:
            made.append(HeartMonitor.bind(ping, pong, period=PERIOD, state=state, **settings))
        except UsageError:
            return False
        return True

    wait_until(bound, timeout=5)
    return made[0]


def test_a_restart_awaits_the_hearts_it_knew_and_fails_once_those_that_died(tmp_path):
    state = str(tmp_path / "hearts.db")
    ping, pong = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    with HeartFleet(ping, pong, size=5, prefix="w") as fleet:
        with _monitor(ping, pong, state) as first:
            wait_until(lambda: len(first.hearts) == 5, timeout=10)
            wait_until(lambda: first.state.writes >= 2, timeout=5)
        dead = fleet.ids[:2]
        fleet.kill(dead)
        failures, new, resumed = [], [], []
        second = _monitor(ping, pong, state, restart_grace=1.0)
        second.add_failure_handler(failures.append)
        second.add_new_heart_handler(new.append)
        second.add_beat_handler(lambda beat: resumed.extend(beat.resumed))
        with second:
            assert second.hearts == set(fleet.ids)  # known from the start: awaited
            wait_until(lambda: len(failures) == 2, timeout=5)
            wait_until(lambda: second.ledger.counters.beats >= 15, timeout=5)
        assert sorted(f.heart for f in failures) == sorted(dead)
        assert all(f.cause is Cause.RESTARTED and f.last_answer is not None for f in failures)
        assert sorted(resumed) == sorted(set(fleet.ids) - set(dead)) and new == []


def test_a_sigkilled_monitor_restarts_on_its_state(tmp_path):
    """``greenheart monitor --state --events``, SIGKILLed; two hearts die while it is down;
    started again, it fails exactly those two, once, for not being seen, and the others carry
    on. A subscriber that followed throughout got every event once, their ``seq`` going on
    across the restart without a gap."""
    state = str(tmp_path / "hearts.db")
    ping, pong = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    events_port = free_pair()

    def monitor() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "greenheart", "monitor", "--ping", ping, "--pong", pong,
             "--period", str(PERIOD), "--state", state, "--restart-grace", "1", "--json",
             "--summary", "--events", f"tcp://127.0.0.1:{events_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    followed: list[dict] = []
    client = EventClient(f"tcp://127.0.0.1:{events_port}", context=zmq.green.Context.instance())
    follower = gevent.spawn(lambda: followed.extend(client.events()))
    with HeartFleet(ping, pong, size=6, prefix="k") as fleet:
        first = monitor()
        try:
            joined = set()
            while len(joined) < 6:
                event = json.loads(first.stdout.readline())
                if event["event"] == "new_heart":
                    joined.add(event["heart"])
            # killed as soon as it has said so: the last events may not be written yet
            wait_until(lambda: _stored(state) == 6 and _hearts(followed) == 6, timeout=10)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        fleet.kill(fleet.ids[:2])
        second = monitor()
        try:
            events: list[dict] = []
            while sum(e["event"] == "failed_heart" for e in events) < 2:
                events.append(json.loads(second.stdout.readline()))
            beats = 0
            while beats < 10:  # a second's more: nothing else fails, nobody is new
                events.append(json.loads(second.stdout.readline()))
                beats += events[-1]["event"] == "beat"
            wait_until(lambda: sum(e["event"] == "heart_failure" for e in followed) == 2)
        finally:
            second.send_signal(signal.SIGINT)
            rest, _ = second.communicate(timeout=10)
            follower.kill()
            client.close()
        events += [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "failed_heart"]
    assert sorted(e["heart"] for e in failed) == ["k-0", "k-1"]
    assert {e["cause"] for e in failed} == {"restarted"}
    assert not [e for e in events if e["event"] == "new_heart"]
    snapshot, *after = followed
    joined = sum(e["event"] == "new_heart" for e in after)
    assert _hearts(followed) == 6
    assert [e["event"] for e in after] == ["new_heart"] * joined + ["heart_failure"] * 2
    assert [e["seq"] for e in after] == list(
        range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(after))
    )
    assert sorted(e["heart"] for e in after[joined:]) == ["k-0", "k-1"]


def _hearts(followed: list[dict]) -> int:
    """How many hearts a subscriber has heard of: its snapshot's, and those new since."""
    if not followed:
        return 0
    return len(followed[0]["hearts"]) + sum(e["event"] == "new_heart" for e in followed)


def test_a_stream_goes_on_from_the_mark_of_the_last_event_it_published(tmp_path):
    """A monitor killed after publishing events and before writing them: what the kernel
    holds of its files then (a copy, as the next process finds them) resumes after the last."""
    path = str(tmp_path / "s.db")
    state = StateFile(path)
    state.open(0.0)
    seq, tail = state.stream()
    assert tail == []
    for n in range(1, 4):
        state.published(seq + n, [b"new_heart", b"h%d" % n, b"{}"])
    state.beat(Ledger(tic=0.0).beat(1.0))  # the first three written
    state._settled(wait=True)
    for n in range(4, 6):
        state.published(seq + n, [b"new_heart", b"h%d" % n, b"{}"])  # not written: killed
    killed = tmp_path / "killed"
    killed.mkdir()
    for suffix in ("", "-wal", "-shm", "-seq"):
        if Path(path + suffix).exists():
            (killed / f"s.db{suffix}").write_bytes(Path(path + suffix).read_bytes())
    state.close()
    again = StateFile(str(killed / "s.db"))
    again.open(0.0)
    resumed, tail = again.stream()
    assert resumed == seq + 5  # the last published, though its event was never written
    assert [n for n, _ in tail] == [seq + 1, seq + 2, seq + 3]
    again.close()


def test_a_stream_on_a_state_goes_on_after_a_restart_with_its_tail(tmp_path):
    """Stopped and started again on its state, a stream numbers its next event after its last,
    and a subscriber that asks for what it missed before the restart gets it."""
    state = str(tmp_path / "s.db")
    ping, pong = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    with HeartFleet(ping, pong, size=4, prefix="t") as fleet:
        with (
            _monitor(ping, pong, state) as first,
            EventStream(first, "tcp://127.0.0.1:0") as stream,
        ):
            wait_until(lambda: len(first.hearts) == 4, timeout=10)
            wait_until(lambda: stream.sent == 4, timeout=5)
            last = stream.seq
        fleet.kill(fleet.ids[:1])
        with (
            _monitor(ping, pong, state, restart_grace=0.5) as second,
            EventStream(second, "tcp://127.0.0.1:0") as again,
        ):
            assert again.seq == last
            client = EventClient(
                again.address, again.snapshot_address, since=last - 4,
                context=zmq.green.Context.instance(),
            )  # fmt: skip
            got = []
            with gevent.Timeout(10):
                for event in client.events():
                    got.append(event)
                    if len(got) == 5:
                        break
            client.close()
    assert [e["seq"] for e in got] == list(range(last - 3, last + 2))
    assert [e["event"] for e in got] == ["new_heart"] * 4 + ["heart_failure"]
    assert got[-1]["heart"] == "t-0" and got[-1]["cause"] == "restarted"


def _stored(path: str) -> int:
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT count(*) FROM hearts").fetchone()[0]
        except sqlite3.Error:
            return 0


def _a_state(path: str, hearts: int = 3) -> None:
    """A state of ``hearts`` hearts h0, h1..., written by a beat."""
    ledger = Ledger(tic=0.0)
    for n in range(hearts):
        ledger.pong(b"h%d" % n, ledger.ping, 0.01)
    state = StateFile(path)
    state.open(0.0)
    state.beat(ledger.beat(1.0))
    state.close()


def test_a_state_reads_back_what_was_written(tmp_path):
    path = str(tmp_path / "s.db")
    _a_state(path)
    state = StateFile(path)
    assert [r.heart for r in state.open(100.0)] == [b"h0", b"h1", b"h2"]
    state.close()
    state.close()  # again is nothing


def test_a_state_cut_anywhere_loads_or_is_refused_clearly_and_left_as_it_is(tmp_path):
    path = str(tmp_path / "s.db")
    _a_state(path, 50)
    whole = Path(path).read_bytes()
    for cut in range(0, len(whole), 97):
        copy = tmp_path / f"cut{cut}.db"
        copy.write_bytes(whole[:cut])
        state = StateFile(str(copy))
        try:
            remembered = state.open(0.0)
        except StateError as error:
            assert "left as it is" in str(error)
            assert copy.read_bytes() == whole[:cut]
        else:  # an empty file, or one cut in the zeros it ends with: nothing was lost
            assert cut == 0 or (len(remembered) == 50 and not whole[cut:].strip(b"\0"))
            state.close()


@pytest.mark.parametrize("junk", [b"not a database at all" * 100, b"\x00" * 4096])
def test_a_file_that_is_not_a_state_is_refused_and_kept(tmp_path, junk):
    path = tmp_path / "s.db"
    path.write_bytes(junk)
    with pytest.raises(StateError, match="cannot be read"):
        StateFile(str(path)).open(0.0)
    assert path.read_bytes() == junk


def test_a_state_written_by_a_newer_greenheart_is_refused_and_kept(tmp_path):
    path = str(tmp_path / "s.db")
    _a_state(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 99 WHERE key = 'version'")
    before = Path(path).read_bytes()
    with pytest.raises(StateError, match="newer greenheart"):
        StateFile(path).open(0.0)
    assert Path(path).read_bytes() == before


def test_a_failing_write_is_counted_and_written_again_and_the_monitor_goes_on(tmp_path):
    path = str(tmp_path / "s.db")
    with HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50, state=path
    ) as monitor:
        monitor.state._db.execute("PRAGMA query_only = 1")  # every write now fails
        with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=3, prefix="f"):
            wait_until(lambda: len(monitor.hearts) == 3, timeout=5)
            wait_until(lambda: monitor.state.errors >= 3, timeout=5)
            assert monitor.running
            monitor.state._db.execute("PRAGMA query_only = 0")
            wait_until(lambda: _stored(path) == 3, timeout=5)


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a file system of 2 MiB of its own (a tmpfs, mounted for the test, so
    root's), and a way to fill it or free it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    filler = disk / "filler"

    def fill(full: bool) -> None:
        if not full:
            filler.unlink(missing_ok=True)
            return
        with open(filler, "ab") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_counted_and_the_monitor_goes_on_and_writes_again_once_freed(full_disk):
    """ENOSPC, for real: the writes fail, are counted, and the monitor judges on; once there
    is room again what it held is written."""
    disk, fill = full_disk
    path = str(disk / "s.db")
    with HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50, state=path
    ) as monitor:
        failures: list = []
        monitor.add_failure_handler(failures.append)
        wait_until(lambda: monitor.state.writes >= 1, timeout=5)
        fill(True)
        with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=200, prefix="n") as fleet:
            wait_until(lambda: len(monitor.hearts) == 200, timeout=10)
            wait_until(lambda: monitor.state.errors >= 3, timeout=5)
            fleet.kill(fleet.ids[:5])
            wait_until(lambda: len(failures) == 5, timeout=5)  # judged on
            assert monitor.running
            fill(False)
            wait_until(lambda: _stored(path) == 195, timeout=5)


def test_an_awaited_heart_keeps_its_last_answer_until_it_is_back(tmp_path):
    """Restarted on a state, a heart not back yet keeps its last answer before the restart
    (another restart then still knows it); one back has none any more, as any answering
    heart."""
    path = str(tmp_path / "s.db")
    _a_state(path, 2)  # h0 and h1, answering at the last beat
    with sqlite3.connect(path) as db:
        (before,) = db.execute("SELECT value FROM meta WHERE key = 'last_beat'").fetchone()
    state = StateFile(path)
    remembered = state.open(100.0)
    ledger = Ledger(tic=100.0)
    ledger.resume(remembered, 100.0, 5.0)
    state.beat(ledger.beat(101.0))  # nobody back yet
    ledger.pong(b"h0", ledger.ping, 101.5)
    beat = ledger.beat(102.0)
    assert beat.resumed == (b"h0",)
    state.beat(beat)
    state.close()
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT heart, last_answer FROM hearts"))
        (after,) = db.execute("SELECT value FROM meta WHERE key = 'last_beat'").fetchone()
    assert after > before
    assert rows[b"h0"] is None and rows[b"h1"] == pytest.approx(before)

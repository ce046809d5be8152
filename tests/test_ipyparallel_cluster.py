"""A real ipyparallel cluster on greenheart: its controller with our heart monitor, real and
simulated engines, and the stock controller load-tested by simulated engines."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import gevent
import ipyparallel
import pytest

from greenheart.bench.proc import descendants, listening_descendant
from greenheart.core.behaviour import Die, Revive
from greenheart.core.errors import TooManyHearts
from greenheart.core.recording import read
from greenheart.core.replay import replay
from greenheart.integrations.ipyparallel.connection import ControllerConnection
from greenheart.integrations.ipyparallel.engines import (
    ControllerSilent,
    RegistrationFailed,
    SimulatedEngines,
)
from tests.cluster import BIN, controller, controller_log, engines, terminate_group
from tests.helpers import wait_until

#: seconds of slack on top of a detection bound: a busy 2-core machine runs the controller,
#: its schedulers, the engines and the test
SLACK = 1.5


def client(profile_dir) -> ipyparallel.Client:
    return ipyparallel.Client(profile_dir=str(profile_dir), timeout=START_SECONDS)


START_SECONDS = 60


def seconds_to_leave(cluster: ipyparallel.Client, engine_id: int, pid: int) -> float:
    """SIGKILL the engine's process; seconds until it has left ``Client.ids``."""
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = killed + 60
    while engine_id in cluster.ids:
        assert time.monotonic() < deadline, "the killed engine never left the cluster"
        time.sleep(0.005)
    return time.monotonic() - killed


@pytest.mark.timeout(180)
@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
@pytest.mark.parametrize("fail_on_disconnect", [False, True], ids=["misses", "disconnect"])
def test_real_engines_run_work_and_a_killed_one_leaves_in_time(tmp_path, curve, fail_on_disconnect):
    period_ms, misses = (1000, 10) if fail_on_disconnect else (500, 3)
    args = [f"--HeartMonitor.period={period_ms}"]
    args.append(f"--HeartMonitor.max_heartmonitor_misses={misses}")
    if curve:  # greenheart's shorthand for --IPController.enable_curve=True
        args.append("--enable-curve")
    if fail_on_disconnect:
        args.append("--fail-on-disconnect")
    profile = tmp_path / "profile"
    with controller(profile, args=args), engines(profile, 2):
        cluster = client(profile)
        try:
            cluster.wait_for_engines(2, timeout=START_SECONDS)
            pids = cluster[:].apply_sync(os.getpid)
            assert sorted(cluster.ids) == [0, 1] and len(set(pids)) == 2
            seconds = seconds_to_leave(cluster, cluster.ids[0], pids[0])
            assert cluster.ids == [1]
            assert cluster[1].apply_sync(lambda: 6 * 7) == 42  # the survivor still works
        finally:
            cluster.close()
        log = controller_log(profile)
        encrypted = ControllerConnection.from_profile_dir(profile).curve_serverkey is not None
    assert f"greenheart heart monitor: every {period_ms} ms, {misses} misses" in log  # ours
    assert encrypted == curve
    assert ("CURVE server" in log) == curve
    bound = 1.0 if fail_on_disconnect else (misses + 2) * period_ms / 1000 + SLACK
    assert seconds <= bound, f"left after {seconds:.3f} s, bound {bound} s"


def wait_for_status(engines_: SimulatedEngines, predicate, timeout: float) -> None:
    wait_until(lambda: predicate(engines_.status()), timeout=timeout, step=0.05)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("ours", [True, False], ids=["greenheart", "stock"])
def test_simulated_engines_register_and_killed_ones_are_unregistered(tmp_path, ours):
    profile = tmp_path / "profile"
    args = ["--HeartMonitor.period=500", "--HeartMonitor.max_heartmonitor_misses=3"]
    recorded = tmp_path / "hearts.rec"
    if ours:
        args.append(f"--record={recorded}")
    with controller(profile, greenheart=ours, args=args):
        connection = ControllerConnection.from_profile_dir(profile)
        with SimulatedEngines(connection, size=50) as simulated:
            wait_for_status(simulated, lambda s: s.registered_now == 50, timeout=60)
            cluster = client(profile)
            try:
                assert len(cluster.ids) == 50
                # each engine knows the id the hub gave it, replies matched to requests
                hub_ids = {uuid: engine_id for engine_id, uuid in cluster._engines.items()}
                assert simulated.engine_ids() == hub_ids
                doomed = simulated.uuids[:5]
                simulated.kill(doomed)
                wait_for_status(simulated, lambda s: s.killed_unregistered == 5, timeout=30)
                # the hub's own client view agrees, and nobody alive was unregistered
                wait_until(lambda: len(cluster.ids) == 45, timeout=10, step=0.05)
                for _ in range(10):  # some more beats: the survivors stay
                    gevent.sleep(0.25)
                status = simulated.status()
                assert (status.registered_now, status.lost, status.purged) == (45, 0, 0)
                assert len(cluster.ids) == 45
            finally:
                cluster.close()
        assert len(simulated.detection_seconds()) == 5
        assert max(simulated.detection_seconds()) <= (3 + 2) * 0.5 + SLACK
    if ours:  # the monitor recorded it all, under ipcontroller's settings
        recording = read(recorded.read_bytes())
        assert (recording.header.period, recording.header.rules.max_misses) == (500, 3)
        failed = {f.heart for f in replay(recording.inputs, recording.header.rules).failures}
        assert {uuid.encode() for uuid in doomed} <= failed


@pytest.mark.timeout(120)
def test_a_wrong_key_is_a_clear_error_not_a_silent_wait(tmp_path):
    profile = tmp_path / "profile"
    with controller(profile):
        right = ControllerConnection.from_profile_dir(profile)
        wrong = ControllerConnection(
            right.interface,
            right.registration,
            right.hb_ping,
            right.hb_pong,
            key=b"not-the-key",
            signature_scheme=right.signature_scheme,
            notification=right.notification,
        )
        simulated = SimulatedEngines(wrong, size=3, reply_timeout=3.0).start()
        try:
            wait_until(lambda: not simulated.running, timeout=30, step=0.05)
        finally:
            simulated.stop()
        assert isinstance(simulated.exception, RegistrationFailed)
        assert "key is wrong" in str(simulated.exception)
        # the command says so and exits 1
        bad_file = tmp_path / "ipcontroller-engine.json"
        text = (profile / "security" / "ipcontroller-engine.json").read_text()
        bad_file.write_text(text.replace(right.key.decode(), "not-the-key"))
        command = ["engines", "-n", "2", "--reply-timeout", "3", "--connection-file", str(bad_file)]
        result = subprocess.run(
            [sys.executable, "-m", "greenheart", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "RegistrationFailed" in result.stderr and "key is wrong" in result.stderr


def documented_ipcluster_config() -> str:
    """The ``ipcluster_config.py`` docs/ipyparallel.md shows, as it shows it."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "ipyparallel.md").read_text()
    block = re.search(r"```py\n(# ipcluster_config\.py.*?)```", page, flags=re.DOTALL)
    assert block, "docs/ipyparallel.md shows no ipcluster_config.py"
    return block.group(1)


@pytest.mark.timeout(180)
def test_ipcluster_runs_greenheart_as_its_controller_command(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "ipcluster_config.py").write_text(documented_ipcluster_config())
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [str(BIN / "ipcluster"), "start", "-n", "2", f"--profile-dir={profile}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        security = profile / "security" / "ipcontroller-client.json"
        wait_until(security.exists, timeout=START_SECONDS, step=0.1)
        cluster = client(profile)
        try:
            cluster.wait_for_engines(2, timeout=START_SECONDS)
            assert cluster[:].apply_sync(lambda: "ok") == ["ok", "ok"]
        finally:
            cluster.close()
        logs = "".join(path.read_text() for path in (profile / "log").glob("ipcontroller-*.log"))
        assert "greenheart heart monitor: every" in logs
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in descendants(proc.pid)]
        assert not [command for command in commands if b"ipyparallel.engine.nanny" in command]
        assert len([command for command in commands if b"ipyparallel.engine" in command]) == 2
        stop = subprocess.run(
            [str(BIN / "ipcluster"), "stop", f"--profile-dir={profile}"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stderr
        proc.wait(60)
    finally:
        terminate_group(proc)


@pytest.mark.timeout(180)
def test_engines_with_their_own_sockets_at_a_rate_die_and_come_back_registered_again(tmp_path):
    profile = tmp_path / "profile"
    with controller(profile, args=["--HeartMonitor.period=500", "--fail-on-disconnect"]):
        connection = ControllerConnection.from_profile_dir(profile)
        simulated = SimulatedEngines(
            connection,
            size=30,
            shared_registrar=False,  # a DEALER each
            ping_per_heart=True,  # a SUB each: the controller's PUB sends 30 pings a beat
            rate=60.0,
            spread=0.3,
            scenario=[Die(at=5.0, count=4), Revive(at=8.0, count=4)],
        )
        with simulated:
            wait_for_status(simulated, lambda s: s.registered == 30, timeout=60)
            assert simulated.fleet is not None and simulated.fleet.descriptors_per_heart == 4
            # the dead are unregistered, then register again under their uuids
            wait_for_status(simulated, lambda s: s.unregistered == 4, timeout=30)
            wait_for_status(simulated, lambda s: s.registered_now == 30, timeout=30)
            status = simulated.status()
    assert (status.asked, status.registered, status.lost, status.purged) == (34, 34, 0, 0)


@pytest.mark.timeout(120)
def test_engines_leave_a_controller_whose_heart_monitor_froze_and_the_hub_unregisters_them(
    tmp_path,
):
    profile = tmp_path / "profile"
    with controller(profile, args=["--HeartMonitor.period=200"]) as proc:
        connection = ControllerConnection.from_profile_dir(profile)
        with SimulatedEngines(connection, size=10, max_heartbeat_misses=2) as simulated:
            wait_for_status(simulated, lambda s: s.registered_now == 10, timeout=60)
            monitor = listening_descendant(proc.pid, connection.hb_ping)
            assert monitor is not None
            os.kill(monitor, signal.SIGSTOP)  # its pings stop; the hub cannot tell
            try:
                wait_for_status(simulated, lambda s: s.unregistered == 10, timeout=30)
            finally:
                os.kill(monitor, signal.SIGCONT)
            status = simulated.status()
            # nobody is left to run: they stop, as 10 ipengine processes would have exited
            wait_until(lambda: not simulated.running, timeout=30)
    assert isinstance(simulated.exception, ControllerSilent)
    assert (status.left, status.lost, status.killed) == (10, 0, 0)


@pytest.mark.timeout(120)
def test_the_profile_config_file_and_log_level_reach_greenheart_s_monitor(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "ipcontroller_config.py").write_text(
        "c = get_config()  # noqa: F821\nc.HeartMonitor.period = 700\n"
        "c.HeartMonitor.max_heartmonitor_misses = 4\n"
    )
    with controller(profile):
        connection = ControllerConnection.from_profile_dir(profile)
        with SimulatedEngines(connection, size=3) as simulated:
            wait_for_status(simulated, lambda s: s.registered_now == 3, timeout=60)
            assert simulated.period == 700  # what the hub announces, and ...
    assert "greenheart heart monitor: every 700 ms, 4 misses" in controller_log(profile)  # ours
    quiet = tmp_path / "quiet"
    with controller(quiet, args=["--log-level=WARN"]):
        connection = ControllerConnection.from_profile_dir(quiet)
        with SimulatedEngines(connection, size=3) as simulated:
            wait_for_status(simulated, lambda s: s.registered_now == 3, timeout=60)
    assert "greenheart heart monitor" not in controller_log(quiet)  # an INFO line


def test_a_storm_too_big_for_the_open_file_limit_is_refused_before_it_starts():
    nowhere = ControllerConnection(
        "tcp://127.0.0.1", 1, 2, 3, key=b"k", signature_scheme="hmac-sha256"
    )
    engines = SimulatedEngines(nowhere, size=1_000_000, ping_per_heart=True)
    with pytest.raises(TooManyHearts, match="4 file descriptors a heart"):
        engines.start()
    assert not engines.running


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_sigkilled_controller_leaves_no_process_behind(tmp_path):
    """ipyparallel's schedulers and greenheart's heart monitor die with the controller that
    forked them, even when it is SIGKILLed (the OOM killer's way)."""
    profile = tmp_path / "profile"
    with controller(profile) as proc:
        deadline = time.monotonic() + 30
        while len(children := descendants(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the controller started no children"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(child) for child in children):
            assert time.monotonic() < deadline, f"orphans left running: {children}"
            time.sleep(0.1)


def remembered_hearts(state: Path) -> int:
    """How many hearts a monitor's state file holds (0 before it has one)."""
    if not state.exists():
        return 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM hearts").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        db.close()


@pytest.mark.timeout(240)
def test_a_restored_controller_lets_go_of_an_engine_that_died_while_it_was_down(tmp_path):
    """``--restore``: the hub reloads its engines, greenheart's monitor awaits their hearts for
    the grace; an engine SIGKILLed while the controller was down leaves ``Client.ids`` within
    it, once, and the others carry on (the stock monitor never lets the dead one go)."""
    profile, state, period, grace = tmp_path / "profile", tmp_path / "hearts.db", 0.5, 3.0
    args = ["--restore", f"--HeartMonitor.state_file={state}",
            f"--HeartMonitor.period={period * 1000:g}",
            f"--HeartMonitor.restart_grace={grace}"]  # fmt: skip
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(controller(profile, args=args))
        procs = stack.enter_context(engines(profile, 3))
        cluster = client(profile)
        try:
            cluster.wait_for_engines(3, timeout=START_SECONDS)
            pids = dict(zip(cluster.ids, cluster[:].apply_sync(os.getpid), strict=True))
        finally:
            cluster.close()
        wait_until(lambda: remembered_hearts(state) == 3, timeout=10, step=0.05)
        children = descendants(first.pid)
        os.kill(first.pid, signal.SIGKILL)  # its schedulers and heart monitor die with it
        first.wait()
        wait_until(lambda: not any(_alive(child) for child in children), timeout=10, step=0.05)
        dead = min(pids)
        doomed = next(proc for proc in procs if proc.pid == pids[dead])
        doomed.kill()
        doomed.wait()
        stack.enter_context(controller(profile, args=args, run="restored"))
        restarted = time.monotonic()
        cluster = client(profile)
        try:
            wait_until(lambda: dead not in cluster.ids, timeout=grace + 30, step=0.01)
            seconds = time.monotonic() - restarted
            survivors = sorted(set(pids) - {dead})
            assert cluster.ids == survivors
            assert cluster[survivors].apply_sync(os.getpid) == [pids[i] for i in survivors]
            # a few beats past the grace: nobody else leaves
            settled = restarted + grace + 4 * period
            while time.monotonic() < settled:
                assert cluster.ids == survivors
                time.sleep(0.05)
        finally:
            cluster.close()
        # the state forgets the dead: a next restart does not fail it again
        wait_until(lambda: remembered_hearts(state) == 2, timeout=10, step=0.05)
    log = controller_log(profile, "restored")
    assert "not recognized" not in log  # the controller knows greenheart's traits
    assert "awaiting the 3 heart(s)" in log
    # back in one beat or over two, as each engine's next ping reached it
    back = re.findall(r"(\d+) heart\(s\) back after the restart", log)
    assert sum(map(int, back)) == 2 and "new heart(s)" not in log
    failed = re.findall(r"(\d+) heart\(s\) failed: (.*)", log)
    assert len(failed) == 1 and failed[0][0] == "1", failed  # once, and only the dead one
    assert "not seen since the monitor restarted" in failed[0][1]
    assert len(re.findall(r"unregister_engine\((\d+)\)", log)) == 1
    assert f"unregister_engine({dead})" in log
    bound = grace + 2 * period + SLACK
    assert seconds <= bound, f"left after {seconds:.3f} s, bound {bound} s"


@pytest.mark.timeout(120)
def test_a_state_file_without_restore_is_refused_before_the_controller_starts(tmp_path):
    """Without ``--restore`` the hub starts with no engines: a monitor awaiting their hearts
    would speak of engines nobody knows, and remember alone the ones registered next."""
    profile, state = tmp_path / "profile", tmp_path / "hearts.db"
    result = subprocess.run(
        [sys.executable, "-m", "greenheart", "ipcontroller", f"--profile-dir={profile}",
         "--ip=127.0.0.1", f"--HeartMonitor.state_file={state}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--HeartMonitor.state_file={state} needs --restore" in result.stderr
    assert not state.exists() and not list((profile / "security").iterdir())  # nothing bound

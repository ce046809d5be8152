"""A live monitor and heart processes: a mass silence is held, not failed; every failure is
certified; a false failure is counted, and only a false one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator

import gevent
import pytest
from gevent import subprocess

from greenheart import HeartMonitor
from greenheart.core.failures import Cause
from greenheart.core.silence import MassSilence
from greenheart.integrations.wsgi import hearts_app
from tests.helpers import RecordingMonitor, heart_process, wait_until


def fleet_process(monitor: HeartMonitor, size: int, prefix: str) -> subprocess.Popen:
    """``greenheart fleet`` in a process of its own: its hearts share its fate."""
    return subprocess.Popen(
        [sys.executable, "-m", "greenheart", "fleet", "--ping", monitor.ping_addr,
         "--pong", monitor.pong_addr, "--size", str(size), "--prefix", prefix],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextlib.contextmanager
def running(*processes: subprocess.Popen) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()


def names(prefix: str, size: int) -> set[bytes]:
    return {f"{prefix}-{n}".encode() for n in range(size)}


PERIOD = 0.05


def beating(monitor: HeartMonitor, hearts: set[bytes]) -> bool:
    """Whether every one of ``hearts`` is known, answered the last beat and has answered this
    round's ping: one that has not when its fleet stops (a stop between two hearts' answers)
    would fail a beat before the others, not be held with them."""
    return (
        hearts <= monitor.hearts
        and not hearts & monitor.on_probation.keys()
        and hearts <= monitor.responses
    )


def test_a_fleet_stopped_as_a_whole_is_held_for_the_hold_then_failed_as_held(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=PERIOD * 1000, max_misses=1)
    hold = monitor.mass_silence.hold
    fleet = fleet_process(monitor, 20, "whole")
    hearts = names("whole", 20)
    with running(fleet):
        wait_until(lambda: beating(monitor, hearts), timeout=15)
        os.kill(fleet.pid, signal.SIGSTOP)  # every heart silent, every connection up
        stopped_at = time.monotonic()
        # a heart that had answered the round's ping before the stop joins a beat later
        wait_until(lambda: len(monitor.ledger.suspects) == 20, timeout=5)
        assert set(monitor.ledger.suspects) == hearts and not monitor.failed
        states = {s.heart: s for s in monitor.ledger.states()}
        assert all(states[heart].suspect for heart in hearts)
        body = json.loads(b"".join(hearts_app(monitor)({"PATH_INFO": "/hearts"}, print)))
        assert body["suspects"] == 20 and {h["state"] for h in body["hearts"]} == {"suspect"}
        wait_until(lambda: hearts <= monitor.failed.keys(), timeout=5)
        took = max(monitor.failed[heart][0] for heart in hearts) - stopped_at
        # held for the hold: more than max_misses + hold beats, within two beats more
        assert (1 + hold) * PERIOD < took <= (1 + 2 + hold) * PERIOD + 0.15
        certificates = {f.heart: f for f in monitor.ledger.failures if f.heart in hearts}
        assert len(certificates) == 20
        for failure in certificates.values():
            assert failure.cause is Cause.HELD and failure.held_beats == hold
            assert failure.connected is True
            together = sum(f.beat == failure.beat for f in certificates.values())
            assert failure.failed_together == together
            assert failure.misses == 1 + 1 + hold  # max_misses + 1, then the hold
        assert (
            monitor.ledger.counters.failed(Cause.HELD) == 20
            and monitor.ledger.counters.mass_silences == 1
        )
        # the fleet lived: its hearts answer again on the same connections, each a mistake
        os.kill(fleet.pid, signal.SIGCONT)
        wait_until(lambda: monitor.ledger.counters.false_failures == 20, timeout=5)
        assert {m.heart for m in monitor.ledger.false_failures} == hearts
        assert all(0 < m.gone < 5 for m in monitor.ledger.false_failures)
        assert hearts <= monitor.hearts
    monitor.assert_events_alternate()


def test_a_silence_that_ends_within_the_hold_fails_nobody(make_monitor):
    monitor = make_monitor(
        RecordingMonitor, period=PERIOD * 1000, max_misses=1, mass_silence=MassSilence(hold=40)
    )
    fleet = fleet_process(monitor, 20, "brief")
    hearts = names("brief", 20)
    with running(fleet):
        wait_until(lambda: beating(monitor, hearts), timeout=15)
        os.kill(fleet.pid, signal.SIGSTOP)
        wait_until(lambda: len(monitor.ledger.suspects) == 20, timeout=5)
        os.kill(fleet.pid, signal.SIGCONT)
        wait_until(lambda: not monitor.ledger.suspects, timeout=5)
        assert not monitor.failed and monitor.hearts == hearts
        assert (
            monitor.ledger.counters.released_hearts == 20
            and monitor.ledger.counters.held_hearts == 20
        )
        assert monitor.ledger.counters.false_failures == 0


def test_a_third_of_the_hearts_silenced_fail_as_before(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=PERIOD * 1000, max_misses=1)
    steady, silenced = fleet_process(monitor, 20, "steady"), fleet_process(monitor, 10, "third")
    hearts = names("third", 10)
    with running(steady, silenced):
        wait_until(lambda: hearts | names("steady", 20) <= monitor.hearts, timeout=15)
        os.kill(silenced.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_until(lambda: hearts <= monitor.failed.keys(), timeout=5)
        took = max(monitor.failed[heart][0] for heart in hearts) - stopped_at
        assert took <= 3 * PERIOD + 0.1
        assert monitor.ledger.counters.held_hearts == 0
        assert {f.cause for f in monitor.ledger.failures} == {Cause.MISSED}
        assert not names("steady", 20) & monitor.failed.keys()


@pytest.mark.parametrize("fail_on_disconnect", [True, False])
def test_during_a_hold_a_killed_process_is_failed_at_once(make_monitor, fail_on_disconnect):
    """Crashes are never held: a suspect whose connection closes is failed at once, with
    ``fail_on_disconnect`` or without it; with it, a heart that was answering is too."""
    period = 0.2  # whatever is failed within a fraction of it was not failed by a beat
    monitor = make_monitor(
        RecordingMonitor,
        period=period * 1000,
        max_misses=1,
        fail_on_disconnect=fail_on_disconnect,
        mass_silence=MassSilence(hold=50),
    )
    fleet, lone = fleet_process(monitor, 20, "held"), heart_process(monitor, "lone")
    hearts = names("held", 20)
    with running(fleet, lone):
        wait_until(lambda: beating(monitor, hearts) and b"lone" in monitor.hearts, timeout=15)
        os.kill(fleet.pid, signal.SIGSTOP)
        wait_until(lambda: len(monitor.ledger.suspects) == 20, timeout=5)
        killed_at = time.monotonic()
        fleet.kill()  # a stopped process dies too, and its kernel closes its connections
        wait_until(lambda: hearts <= monitor.failed.keys(), timeout=2)
        assert max(monitor.failed[heart][0] for heart in hearts) - killed_at < period
        assert {f.cause for f in monitor.ledger.failures if f.heart in hearts} == {
            Cause.DISCONNECTED
        }
        assert not monitor.ledger.suspects
        if fail_on_disconnect:
            killed_at = time.monotonic()
            lone.kill()
            wait_until(lambda: b"lone" in monitor.failed, timeout=2)
            assert monitor.failed[b"lone"][0] - killed_at < period
    assert monitor.ledger.counters.false_failures == 0


def test_a_heart_silenced_past_its_misses_that_answers_again_is_a_false_failure(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=PERIOD * 1000, max_misses=1)
    steady, sleeper = fleet_process(monitor, 10, "steady"), heart_process(monitor, "sleeper")
    with running(steady, sleeper):
        wait_until(lambda: names("steady", 10) | {b"sleeper"} <= monitor.hearts, timeout=15)
        os.kill(sleeper.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_until(lambda: b"sleeper" in monitor.failed, timeout=5)
        assert (
            monitor.ledger.failures[-1].cause is Cause.MISSED
            and monitor.ledger.failures[-1].connected
        )
        gevent.sleep(max(0.0, stopped_at + 0.5 - time.monotonic()))  # it sleeps on, failed
        os.kill(sleeper.pid, signal.SIGCONT)
        woke_at = time.monotonic()
        wait_until(lambda: monitor.ledger.counters.false_failures == 1, timeout=5)
        (mistake,) = monitor.ledger.false_failures
        assert mistake.heart == b"sleeper"
        # from its failure to its first answer after it woke
        assert woke_at - monitor.failed[b"sleeper"][0] - 0.05 < mistake.gone
        assert mistake.gone < time.monotonic() - monitor.failed[b"sleeper"][0]
        assert monitor.ledger.counters.false_failure_seconds == pytest.approx(mistake.gone)


def test_a_heart_that_died_and_came_back_on_a_new_connection_is_no_false_failure(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=PERIOD * 1000, max_misses=1)
    steady, first = fleet_process(monitor, 10, "steady"), heart_process(monitor, "phoenix")
    with running(steady, first):
        wait_until(lambda: b"phoenix" in monitor.hearts, timeout=15)
        first.kill()
        wait_until(lambda: b"phoenix" in monitor.failed, timeout=5)
        assert monitor.ledger.failures[-1].connected is False  # its connection closed first
        second = heart_process(monitor, "phoenix")
        with running(second):
            wait_until(lambda: len(monitor.registered[b"phoenix"]) == 2, timeout=15)
    assert monitor.ledger.counters.false_failures == 0

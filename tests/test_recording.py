"""Recording a live monitor: its replay makes its verdicts again; files rotate; a write that
fails stops the recording, never the monitor; ``greenheart tune`` reads what it wrote."""

from __future__ import annotations

import errno
import json
import logging

import pytest

from greenheart import HeartMonitor
from greenheart.cli import main
from greenheart.core.behaviour import Behaviour, Delay, parse_action
from greenheart.core.recording import read
from greenheart.core.replay import replay
from greenheart.fleet import HeartFleet
from greenheart.green.recording import RecordingFile
from tests.helpers import wait_beats, wait_until


def record_fleet(path, *, period=40, beats=50, size=30, **monitor_options):
    """A monitor recording to ``path`` and a fleet of slow and flapping hearts; the verdicts
    the monitor made, as (heart, beat, cause), and its false failures."""
    monitor = HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=period, record=path, **monitor_options
    )
    verdicts = []
    monitor.add_beat_handler(
        lambda beat: verdicts.extend(
            (f.heart, f.beat, f.cause.value) for f in beat.failures[: len(beat.failed_hearts)]
        )
    )
    fleet = HeartFleet(
        monitor.ping_addr,
        monitor.pong_addr,
        size=size,
        behaviour=Behaviour(seed=3, slow_fraction=0.2, slow_delay=Delay.parse("uniform:20:60")),
        scenario=[parse_action("flap", "4:0.1:0.3")],
    )
    with monitor, fleet:
        wait_until(lambda: len(monitor.hearts) >= size - 4, timeout=10)
        wait_beats(monitor, beats)
        false_failures = monitor.ledger.counters.false_failures
    return verdicts, false_failures


def test_a_replay_of_a_live_recording_fails_the_same_hearts_on_the_same_beats(tmp_path):
    path = tmp_path / "fleet.rec"
    verdicts, false_failures = record_fleet(path)
    assert verdicts and false_failures  # the flapping hearts were failed, and came back
    recording = read(path.read_bytes())
    assert not recording.truncated
    outcome = replay(recording.inputs, recording.header.rules)
    assert [(f.heart, f.beat, f.cause.value) for f in outcome.failures] == verdicts
    assert len(outcome.false_failures) == false_failures


def test_a_recording_with_fail_on_disconnect_replays_its_disconnections(tmp_path):
    path = tmp_path / "fod.rec"
    monitor = HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=40, record=path, fail_on_disconnect=True
    )
    failed = []
    monitor.add_failure_handler(failed.append)
    fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, size=6)
    with monitor, fleet:
        wait_until(lambda: len(monitor.hearts) == 6, timeout=10)
        fleet.kill(fleet.ids[:2])
        wait_until(lambda: len(failed) == 2, timeout=10)
        wait_beats(monitor, 2)
    recording = read(path.read_bytes())
    outcome = replay(recording.inputs, recording.header.rules)
    assert sorted((f.heart, f.cause.value) for f in outcome.failures) == sorted(
        (f.heart, f.cause.value) for f in failed
    )
    assert {f.cause.value for f in failed} == {"disconnected"}


def test_files_rotate_and_each_replays_as_a_segment(tmp_path):
    path = tmp_path / "small.rec"
    record_fleet(RecordingFile(path, max_bytes=800, keep=2), beats=60)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["small.rec", "small.rec.1", "small.rec.2"]
    segments = [read(p.read_bytes()) for p in files]
    for segment in segments:
        assert not segment.truncated
        replay(segment.inputs, segment.header.rules)
    # a rotated file was full; the newest may have been cut off by the stop right after it began
    assert all(segment.beat_count() for segment in segments[1:])
    # the newest file has the newest segment
    assert segments[0].header.segment > segments[1].header.segment > segments[2].header.segment


class FullDisk:
    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        pass


def test_a_write_that_fails_stops_the_recording_not_the_monitor(tmp_path, caplog):
    target = tmp_path / "full.rec"
    recording = RecordingFile(target)
    with caplog.at_level(logging.ERROR, logger="greenheart.recording"):
        monitor = HeartMonitor.bind(
            "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=20, record=recording
        )
        with monitor:
            wait_beats(monitor, 2)
            recording._file.close()
            recording._file = FullDisk()
            wait_beats(monitor, 3)
            assert monitor.running
    assert recording.error is not None
    assert any("recording to" in r.getMessage() for r in caplog.records)


def test_tune_reads_a_recording_and_names_a_setting(tmp_path, capsys):
    path = tmp_path / "fleet.rec"
    record_fleet(path, beats=80)
    status = main(
        [
            "tune",
            str(path),
            "--max-misses",
            "1,4,8",
            "--phi",
            "8",
            "--deaths",
            "6",
            "--detect",
            "2s",
            "--false-failures",
            "1000/heart/day",
            "--json",
        ]
    )
    body = json.loads(capsys.readouterr().out)
    assert body["recording"]["hearts"] >= 26 and body["recording"]["beats"] >= 80
    rules = [row["rule"] for row in body["results"]]
    assert rules == ["misses=1", "misses=4", "misses=8", "phi=8 pause=0ms", "phi=8 pause=40ms"]
    one = body["results"][0]
    assert one["false_failures"] > 0  # the flapping hearts, silent for 100 ms at a 40 ms period
    assert status == 0 and body["choice"]["chosen"] is not None
    assert (
        "--max-misses" in body["choice"]["chosen"]["options"]
        or "--phi" in (body["choice"]["chosen"]["options"])
    )
    # text, with a target none can meet
    status = main(["tune", str(path), "--max-misses", "1", "--phi", "", "--detect", "1ms"])
    text = capsys.readouterr().out
    assert status == 1 and "no setting meets" in text and "misses=1" in text


@pytest.mark.parametrize("content", [b"", b"not a recording", b"GHREC1\n\x00\x01"])
def test_tune_refuses_what_is_not_a_recording_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.rec"
    path.write_bytes(content)
    assert main(["tune", str(path)]) == 2
    assert "greenheart tune: error:" in capsys.readouterr().err

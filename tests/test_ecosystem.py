"""Where greenheart meets other software: a pywsgi server, Prometheus, event subscribers, Locust."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import gevent
import pytest
import zmq
import zmq.green
from gevent import subprocess
from gevent.pywsgi import WSGIServer
from prometheus_client.parser import text_string_to_metric_families

from greenheart import Heart
from greenheart.fleet import HeartFleet
from greenheart.green.sockets import close_sockets
from greenheart.integrations.events import EventClient, EventStream
from greenheart.integrations.metrics import serve_metrics
from tests.helpers import RecordingMonitor, http_get, wait_beats, wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from pywsgi_hearts import make_app  # noqa: E402


def timed_get(url: str) -> float:
    """Seconds a GET of ``url`` took, the hub serving meanwhile."""
    started = time.monotonic()
    http_get(url)
    return time.monotonic() - started


def test_a_pywsgi_server_serves_hearts_while_they_beat(make_monitor):
    # web-0 is killed, and must still be on probation (2 s of it) when /hearts is asked
    monitor = make_monitor(RecordingMonitor, period=200, max_misses=10)
    server = WSGIServer(("127.0.0.1", 0), make_app(monitor), log=None)
    server.start()
    hearts = [Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"web-{n}") for n in range(3)]
    try:
        with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=1000, prefix="bulk"):
            for heart in hearts:
                heart.start()
            wait_until(lambda: len(monitor.hearts) == 1003, timeout=15)
            wait_beats(monitor, 3)
            hearts[0].kill()  # stopped, it would leave: failed at once
            wait_until(lambda: b"web-0" in monitor.on_probation)
            url = f"http://127.0.0.1:{server.server_port}/hearts"
            listed, after = {}, ""  # a page of 600 at a time, by identity
            while after is not None:
                status, body = http_get(f"{url}?limit=600{f'&after={after}' if after else ''}")
                assert status == 200 and json.loads(body)["beats"] > 3
                page = json.loads(body)
                assert all(entry["heart"] > after for entry in page["hearts"])
                listed.update((entry["heart"], entry) for entry in page["hearts"])
                after = page["next"]
            assert len(listed) == 1003
            assert listed["web-0"]["state"] == "on_probation" and listed["web-0"]["misses"] >= 1
            assert listed["web-1"]["state"] == "beating" and listed["web-1"]["misses"] == 0
            assert 0 < listed["web-1"]["last_rtt_ms"] <= listed["web-1"]["max_rtt_ms"] < 200
            # again and again: the server answers, and the monitor keeps its beat
            timings = [timed_get(url) for _ in range(20)]
            assert monitor.stalls == 0 and monitor.failed.keys() <= {b"web-0"}
            assert max(timings) < 1.0
        assert http_get(f"http://127.0.0.1:{server.server_port}/nothing")[0] == 404
    finally:
        for heart in hearts:
            heart.stop()
        server.stop()


def test_metrics_scraped_with_prometheus_parser(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=30, max_misses=0)
    server = serve_metrics(monitor, port=0)
    hearts = [Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"m-{n}") for n in range(4)]
    try:
        for heart in hearts:
            heart.start()
        wait_until(lambda: len(monitor.hearts) == 4)
        hearts[0].kill()
        hearts[1].stop()
        wait_until(lambda: b"m-0" in monitor.failed and b"m-1" in monitor.failed)
        junk = zmq.green.Context.instance().socket(zmq.DEALER)
        junk.linger = 0
        junk.connect(monitor.pong_addr)
        junk.send(b"not a ping")
        wait_until(lambda: monitor.ledger.counters.stale_pongs >= 1)
        wait_beats(monitor, 3)
        status, body = http_get(f"http://127.0.0.1:{server.server_port}/metrics")
        close_sockets(junk)
    finally:
        for heart in hearts:
            heart.stop()
        server.stop()
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}

    def value(name: str, **labels: str) -> float:
        family = families[name]
        return next(
            sample.value
            for sample in family.samples
            if sample.name in (name, f"{name}_total") and labels.items() <= sample.labels.items()
        )

    documented = {
        "greenheart_hearts", "greenheart_hearts_on_probation", "greenheart_new_hearts",
        "greenheart_heart_failures", "greenheart_refused_hearts", "greenheart_pongs",
        "greenheart_beats", "greenheart_unjudged_beats", "greenheart_stalls",
        "greenheart_handler_errors", "greenheart_beat_lag_seconds", "greenheart_period_seconds",
        "greenheart_round_trip_seconds", "greenheart_suspects", "greenheart_mass_silences",
        "greenheart_false_failures", "greenheart_false_failure_seconds",
        "greenheart_refusing_connections", "greenheart_connection_refusals",
    }  # fmt: skip
    assert documented <= families.keys()
    assert value("greenheart_hearts") == 2
    assert value("greenheart_new_hearts") == 4
    # m-0's connection closed, but without fail_on_disconnect only its missed beats fail it;
    # m-1 left
    assert value("greenheart_heart_failures", cause="missed") == 1
    assert value("greenheart_heart_failures", cause="left") == 1
    assert value("greenheart_heart_failures", cause="disconnected") == 0
    assert value("greenheart_heart_diagnoses", diagnosis="crashed") == 1
    assert value("greenheart_heart_diagnoses", diagnosis="stopped") == 1
    assert value("greenheart_suspects") == 0 and value("greenheart_false_failures") == 0
    assert value("greenheart_refusing_connections") == 0
    assert value("greenheart_pongs", kind="on_time") > 10
    assert value("greenheart_pongs", kind="stale") >= 1
    assert value("greenheart_beats") >= 3
    assert value("greenheart_period_seconds") == pytest.approx(0.03)
    assert families["greenheart_round_trip_seconds"].type == "histogram"
    trips = {s.labels.get("le"): s.value for s in families["greenheart_round_trip_seconds"].samples}
    assert trips["+Inf"] >= 10 and trips["0.05"] == trips["+Inf"]  # loopback: all under 50 ms


def test_the_event_stream_tells_a_subscriber_who_is_there_joins_and_fails(make_monitor):
    """A client asks who is there (a snapshot, stamped with its seq), then follows the events
    after it, each once, in order, their seq rising by one."""
    monitor = make_monitor(period=30, max_misses=0)
    early = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="early")
    late = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="late")
    with EventStream(monitor, "tcp://127.0.0.1:0") as stream:
        early.start()
        wait_until(lambda: b"early" in monitor.hearts)
        client = EventClient(
            stream.address, stream.snapshot_address, context=zmq.green.Context.instance()
        )
        try:
            with gevent.Timeout(10):
                events = client.events()
                snapshot = next(events)
                assert snapshot["event"] == "hearts" and snapshot["hearts"] == ["early"]
                late.start()
                joined = next(events)
                assert (joined["event"], joined["heart"]) == ("new_heart", "late")
                early.stop()
                failed = next(events)
                assert (failed["event"], failed["heart"]) == ("heart_failure", "early")
                assert failed["beat"] > 0
                assert [joined["seq"], failed["seq"]] == [snapshot["seq"] + 1, snapshot["seq"] + 2]
        finally:
            early.stop()
            late.stop()
            client.close()


LOCUST = shutil.which("locust", path=str(Path(sys.executable).parent))


def test_a_headless_locust_run_registers_every_user(make_monitor, tmp_path):
    assert LOCUST, "locust is a dev dependency"
    users = 300
    monitor = make_monitor(RecordingMonitor, period=200)
    run = subprocess.Popen(
        [LOCUST, "-f", str(ROOT / "examples/locustfile.py"), "--headless",
         "-u", str(users), "-r", "300", "-t", "20s", "--only-summary",
         "--host", f"{monitor.ping_addr} {monitor.pong_addr}",
         "--csv", str(tmp_path / "hearts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(
            lambda: sum(heart.startswith(b"locust-") for heart in monitor.hearts) == users,
            timeout=60,
        )
        wait_beats(monitor, 5)
        assert not monitor.failed
    finally:
        run.terminate()  # locust writes its CSV and stops
        stderr = run.communicate(timeout=30)[1].decode()
    stats = (tmp_path / "hearts_stats.csv").read_text()
    assert "PING,interval" in stats and "PONG,send" in stats, stderr[-2000:]

"""Nothing dies silently: an object whose greenlet died is not running, says why, tells its
stop handlers once, and leaves no greenlet or socket behind."""

from __future__ import annotations

import json
import logging
import time

import attrs
import gevent
import gevent.event
import pytest
import zmq
import zmq.green
from gevent.pywsgi import WSGIServer
from prometheus_client.parser import text_string_to_metric_families

from greenheart import Heart, HeartMonitor, UsageError
from greenheart.cli import main
from greenheart.core.errors import GreenheartError, SocketClosed
from greenheart.fleet import Behaviour, HeartFleet
from greenheart.green.lifecycle import Service
from greenheart.integrations.metrics import serve_metrics
from greenheart.integrations.wsgi import hearts_app
from tests.helpers import http_get, settled_descriptors, wait_until


@attrs.define(eq=False)
class Fragile(Service):
    """A service whose one greenlet raises when told to."""

    told: gevent.event.Event = attrs.field(factory=gevent.event.Event)
    error: BaseException = attrs.field(factory=lambda: RuntimeError("the work went wrong"))

    def _open(self) -> None:
        self._spawn(self._work)

    def _work(self) -> None:
        self.told.wait()
        raise self.error


class StopRecord:
    """A stop handler that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, BaseException | None]] = []

    def __call__(self, service: object, error: BaseException | None) -> None:
        self.calls.append((service, error))


def test_a_service_whose_greenlet_dies_stops_says_why_and_tells_its_handlers_once(caplog):
    service, stopped = Fragile(), StopRecord()
    service.add_stop_handler(stopped)
    service.start()
    with caplog.at_level(logging.ERROR, logger="greenheart.lifecycle"):
        service.told.set()
        wait_until(lambda: stopped.calls)  # the handlers run last, once all is closed
        service.stop()  # a second stop changes nothing
    assert isinstance(service.exception, RuntimeError)
    assert stopped.calls == [(service, service.exception)]
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "the work went wrong" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # a bug: its traceback
    assert service.join(timeout=1)


def test_an_error_raised_on_purpose_is_logged_as_its_message_without_a_traceback(caplog):
    service = Fragile(error=GreenheartError("the controller went silent")).start()
    with caplog.at_level(logging.ERROR, logger="greenheart.lifecycle"):
        service.told.set()
        wait_until(lambda: not service.running)
    (error,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "the controller went silent" in error.getMessage() and error.exc_info is None


def test_a_plain_stop_tells_the_handlers_once_with_no_exception():
    service, stopped = Fragile(), StopRecord()
    service.add_stop_handler(stopped)
    with service:
        pass
    service.stop()
    assert stopped.calls == [(service, None)] and service.exception is None
    with pytest.raises(TypeError):
        service.add_stop_handler("not callable")


@pytest.mark.parametrize(
    ("option", "bad"), [("in_type", zmq.PAIR), ("out_type", zmq.SUB), ("out_type", zmq.PUB)]
)
def test_a_heart_refuses_a_socket_of_the_wrong_type_when_made(option, bad):
    allowed = {"in_type": "SUB", "out_type": "DEALER"}[option]
    with pytest.raises(UsageError, match=f"{option} must be {allowed}, not"):
        Heart("inproc://a", "inproc://b", **{option: bad})


def test_a_heart_whose_context_is_destroyed_stops_and_says_why(make_monitor):
    monitor = make_monitor(period=50)
    context = zmq.green.Context()
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="doomed", context=context)
    stopped = StopRecord()
    heart.add_stop_handler(stopped)
    heart.start()
    wait_until(lambda: b"doomed" in monitor.hearts)
    context.destroy(linger=0)
    wait_until(lambda: stopped.calls)
    assert not heart.running
    assert isinstance(heart.exception, zmq.ZMQError)
    assert stopped.calls == [(heart, heart.exception)]
    assert heart.join(timeout=1) and heart.device is None


def watched_monitor(**kwargs: object) -> tuple[HeartMonitor, StopRecord, Heart]:
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50, **kwargs)
    stopped = StopRecord()
    monitor.add_stop_handler(stopped)
    monitor.start()
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="steady")
    heart.start()
    wait_until(lambda: b"steady" in monitor.hearts)
    return monitor, stopped, heart


def assert_stopped_by(monitor: HeartMonitor, stopped: StopRecord, kind: type) -> None:
    wait_until(lambda: stopped.calls)  # the handlers run last, once all is closed
    assert not monitor.running
    assert isinstance(monitor.exception, kind), monitor.exception
    assert stopped.calls == [(monitor, monitor.exception)]
    assert monitor.join(timeout=2)
    assert monitor.pingstream.closed and monitor.pongstream.closed


@pytest.mark.parametrize("closed", ["pongstream", "pingstream"])
def test_a_monitor_whose_socket_is_closed_from_outside_stops_and_fails_nobody(closed):
    fds = settled_descriptors()
    monitor, stopped, heart = watched_monitor()
    failed: list[bytes] = []
    monitor.add_heart_failure_handler(failed.append)
    try:
        getattr(monitor, closed).close(linger=0)
        assert_stopped_by(monitor, stopped, SocketClosed)
        # it stopped: it did not go on blaming the heart it can no longer hear or ping
        assert failed == []
    finally:
        heart.stop()
    wait_until(lambda: settled_descriptors() <= fds)


def test_a_monitor_whose_context_is_terminated_stops():
    context = zmq.green.Context()
    monitor, stopped, heart = watched_monitor(context=context)
    try:
        # term() waits for every socket of the context to close: a thread waits for it
        terminated = gevent.get_hub().threadpool.spawn(context.term)
        assert_stopped_by(monitor, stopped, zmq.ZMQError)
        assert monitor.exception.errno == zmq.ETERM
        terminated.get(timeout=5)
    finally:
        heart.stop()


def test_a_fleet_whose_greenlet_dies_stops_and_closes_its_sockets(make_monitor):
    monitor = make_monitor(period=50)
    fds = settled_descriptors()

    def broken(heart: bytes, ping: int, delay: float | None) -> None:
        raise RuntimeError("a broken decision callback")

    fleet = HeartFleet(
        monitor.ping_addr,
        monitor.pong_addr,
        size=20,
        behaviour=Behaviour(loss=0.1),  # not prompt, so every ping is decided
        on_decision=broken,
    )
    stopped = StopRecord()
    fleet.add_stop_handler(stopped)
    fleet.start()
    wait_until(lambda: stopped.calls)
    assert not fleet.running and isinstance(fleet.exception, RuntimeError)
    assert stopped.calls == [(fleet, fleet.exception)]
    assert fleet.join(timeout=1)
    wait_until(lambda: settled_descriptors() <= fds)


def test_a_stopped_monitor_shows_as_down_on_hearts_and_in_its_metrics():

    monitor, stopped, heart = watched_monitor()
    web = WSGIServer(("127.0.0.1", 0), hearts_app(monitor), log=None)
    web.start()
    metrics = serve_metrics(monitor, port=0)
    try:
        status, body = http_get(f"http://127.0.0.1:{web.server_port}/hearts")
        assert status == 200 and json.loads(body)["running"] is True
        monitor.pongstream.close(linger=0)
        assert_stopped_by(monitor, stopped, SocketClosed)
        status, body = http_get(f"http://127.0.0.1:{web.server_port}/hearts")
        assert status == 503
        report = json.loads(body)
        assert report["running"] is False and "SocketClosed" in report["stopped_by"]
        _, body = http_get(f"http://127.0.0.1:{metrics.server_port}/metrics")
        families = {family.name: family for family in text_string_to_metric_families(body.decode())}
        assert families["greenheart_up"].samples[0].value == 0
    finally:
        heart.stop()
        web.stop()
        metrics.stop()


def test_the_monitor_command_exits_1_with_the_cause(monkeypatch, capsys):
    def failing_beat(self: HeartMonitor, *args: object) -> None:
        raise RuntimeError("the beat broke")

    monkeypatch.setattr(HeartMonitor, "beat", failing_beat)  # the seed's public beat()
    started = time.monotonic()
    argv = ["monitor", "--ping", "tcp://127.0.0.1:0", "--pong", "tcp://127.0.0.1:0"]
    assert main([*argv, "--period", "50"]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "greenheart monitor: HeartMonitor stopped: RuntimeError: the beat broke" in err

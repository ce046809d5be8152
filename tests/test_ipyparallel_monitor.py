"""start_heartmonitor, as IPController starts it: a process of its own, under every start method,
telling a hub (here a bare SUB) of new and stopped hearts in the hub's own signed messages."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator

import ipyparallel.controller.app as app
import pytest
import zmq
from ipyparallel.controller.app import IPController
from jupyter_client.session import Session
from traitlets.config import Config

from greenheart.core.silence import MassSilence
from greenheart.integrations.ipyparallel.controller import install
from greenheart.integrations.ipyparallel.heartmonitor import _runs
from greenheart.integrations.ipyparallel.traits import monitor_settings
from tests.helpers import free_port

KEY = b"a-cluster-key"


def next_report(hub: zmq.Socket, session: Session, timeout: float) -> tuple[str, list[str]]:
    assert hub.poll(timeout * 1000), "no report from the heart monitor"
    idents, message = session.feed_identities(hub.recv_multipart())
    assert idents == [b"heartmonitor", b""]  # as ipyparallel's own monitor sends them
    report = session.deserialize(message)  # checks the signature
    return report["header"]["msg_type"], report["content"]["hearts"]


@pytest.fixture
def installed():
    original = app.start_heartmonitor
    install(fail_on_disconnect=True)
    yield app.start_heartmonitor
    app.start_heartmonitor = original


@contextlib.contextmanager
def monitor_child(
    installed: Callable[..., None], method: str, config: Config
) -> Iterator[tuple[multiprocessing.process.BaseProcess, zmq.Socket, zmq.Socket]]:
    """The installed heart monitor in a child process started by ``method``, reporting to a
    hub's SUB, and a heart (a DEALER, ``engine-1``) echoing its pings until the hub hears of it:
    the process, the hub's socket and the heart's. Stopped (SIGTERM) and closed after."""
    context = zmq.Context()
    hub = context.socket(zmq.SUB)
    hub.setsockopt(zmq.SUBSCRIBE, b"")
    monitor_port = hub.bind_to_random_port("tcp://127.0.0.1")
    ping_url, pong_url = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    config.Session.key = KEY
    process = multiprocessing.get_context(method).Process(
        target=installed,
        kwargs=dict(ping_url=ping_url, pong_url=pong_url,
                    monitor_url=f"tcp://127.0.0.1:{monitor_port}", config=config,
                    log_level=logging.WARNING),
        daemon=True,
    )  # fmt: skip
    process.start()
    pings = context.socket(zmq.SUB)
    pings.setsockopt(zmq.SUBSCRIBE, b"")
    pings.connect(ping_url)
    pongs = context.socket(zmq.DEALER)
    pongs.setsockopt(zmq.IDENTITY, b"engine-1")
    pongs.connect(pong_url)
    try:
        deadline = time.monotonic() + 30
        while not hub.poll(0):  # echo pings, as an engine's heart does, until reported
            assert time.monotonic() < deadline and process.is_alive()
            if pings.poll(50):
                pongs.send(pings.recv())
        yield process, hub, pongs
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)
        for socket in (pings, pongs, hub):
            socket.close(linger=0)
        context.term()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
# IPController forks its heart monitor from a process whose ZeroMQ threads are running, as this
# test does on purpose: Python 3.12+ warns of it, and the test is what shows the child works
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_installed_monitor_reports_to_the_hub_under_every_start_method(installed, method):
    config = Config()
    config.HeartMonitor.period = 1000
    config.HeartMonitor.max_heartmonitor_misses = 3
    with monitor_child(installed, method, config) as (process, hub, pongs):
        session = Session(key=KEY)
        assert next_report(hub, session, 1) == ("new_heart", ["engine-1"])
        pongs.close(linger=0)  # the engine's process died: fail_on_disconnect was installed
        started = time.monotonic()
        assert next_report(hub, session, 5) == ("stopped_heart", ["engine-1"])
        assert time.monotonic() - started < 1.0  # misses would have taken 4 periods
    assert process.exitcode == 0  # SIGTERM is a clean stop


def test_events_that_happen_together_are_reported_in_order_one_message_a_kind_run():
    events = [("new_heart", b"a"), ("new_heart", b"b"), ("stopped_heart", b"a")]
    events += [("new_heart", b"a")]
    assert _runs(events) == [
        ("new_heart", [b"a", b"b"]),
        ("stopped_heart", [b"a"]),
        ("new_heart", [b"a"]),
    ]


def test_the_mass_silence_rule_is_set_by_traits_of_the_heart_monitor_section():
    """As the controller hands them over: the HeartMonitor section of its config, with the
    command line's values still strings."""
    parsed = IPController()
    parsed.parse_command_line(
        ["--HeartMonitor.period=500", "--HeartMonitor.mass_silence_hold=12",
         "--HeartMonitor.mass_silence_share=0.8", "--HeartMonitor.mass_silence_min_hearts=3",
         "--HeartMonitor.transport_timeout=12.5", "--HeartMonitor.state_file=hearts.db",
         "--HeartMonitor.restart_grace=4.5"]
    )  # fmt: skip
    config = Config()
    config.HeartMonitor = parsed.config.HeartMonitor
    assert monitor_settings(config) == {
        "period": 500.0,
        "max_misses": 10,  # ipyparallel's own default
        "mass_silence": MassSilence(share=0.8, min_hearts=3, hold=12),
        "transport_timeout": 12.5,
        "state": "hearts.db",
        "restart_grace": 4.5,
    }
    assert (monitor_settings(Config())["state"], monitor_settings(Config())["restart_grace"]) == (
        None,
        None,  # greenheart.core.restart.grace_for the period
    )
    assert monitor_settings(Config())["mass_silence"] == MassSilence()
    assert monitor_settings(Config())["transport_timeout"] == 30.0
    off = Config()
    off.HeartMonitor.mass_silence = False
    off.HeartMonitor.transport_timeout = 0
    assert monitor_settings(off)["mass_silence"] is None
    assert monitor_settings(off)["transport_timeout"] is None


@pytest.mark.timeout(60)
def test_a_second_sigterm_does_not_cut_the_monitor_s_stop_short(installed, tmp_path):
    """ipcontroller terminates its heart monitor twice (at its signal, then again at exit); the
    stop the first began, which writes the state, finishes: the process exits 0, not killed."""
    config = Config()
    config.HeartMonitor.period = 200
    config.HeartMonitor.state_file = str(tmp_path / "hearts.db")
    with monitor_child(installed, "fork", config) as (process, _, _):  # a heart the state keeps
        deadline = time.monotonic() + 30
        while process.is_alive():  # SIGTERM, and again, as long as it is stopping
            assert time.monotonic() < deadline
            process.terminate()
            process.join(0.001)
    assert process.exitcode == 0

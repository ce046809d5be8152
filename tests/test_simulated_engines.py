"""Simulated engines against a hub of the test's own, which answers as the test says:
out of order, late, or with garbage."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import gevent
import gevent.event
import gevent.subprocess
import pytest
import zmq.green
from jupyter_client.session import Session

from greenheart.core.registrations import LEAVING_GRACE, EngineState
from greenheart.integrations.ipyparallel.connection import ControllerConnection
from greenheart.integrations.ipyparallel.engines import ControllerSilent, SimulatedEngines
from tests.helpers import wait_until

KEY = b"a-key-for-the-test"


class ScriptedHub:
    """The registration ROUTER of an ipyparallel hub, answering only when told; the heartbeat
    PUB and ROUTER are bound so that the engines' hearts have somewhere to connect."""

    def __init__(self) -> None:
        self.context = zmq.green.Context()
        self.session = Session(key=KEY, signature_scheme="hmac-sha256")
        self.sockets = {kind: self.context.socket(kind) for kind in (zmq.ROUTER, zmq.PUB)}
        self.pong = self.context.socket(zmq.ROUTER)
        self.notices = self.context.socket(zmq.PUB)
        ports = {}
        for name, socket in (
            ("registration", self.sockets[zmq.ROUTER]),
            ("hb_ping", self.sockets[zmq.PUB]),
            ("hb_pong", self.pong),
            ("notification", self.notices),
        ):
            socket.linger = 0
            ports[name] = socket.bind_to_random_port("tcp://127.0.0.1")
        self.connection = ControllerConnection(
            "tcp://127.0.0.1", key=KEY, signature_scheme="hmac-sha256", **ports
        )

    def receive(self, kind: str, timeout: float = 10) -> tuple[list[bytes], dict]:
        """The next request, which must be of this kind: whom to answer, and its content."""
        with gevent.Timeout(timeout):
            frames = self.sockets[zmq.ROUTER].recv_multipart()
        idents, message = self.session.feed_identities(frames)
        request = self.session.deserialize(message)
        assert request["header"]["msg_type"] == kind
        return idents, request["content"]

    def requests(self, count: int) -> list[tuple[list[bytes], str]]:
        """The next ``count`` registration requests: whom to answer, and the uuid asked for."""
        received = []
        for _ in range(count):
            idents, content = self.receive("registration_request")
            received.append((idents, content["uuid"]))
        return received

    def ping_until(self, stop: gevent.event.Event, every: float = 0.05) -> None:
        while not stop.is_set():
            self.sockets[zmq.PUB].send(b"%.6f" % time.monotonic())
            gevent.sleep(every)

    def accept(self, idents: list[bytes], engine_id: int, period_ms: int = 1000) -> None:
        # as ipyparallel's hub does: the reply goes back with every routing frame that came
        content = {"id": engine_id, "status": "ok", "hb_period": period_ms}
        self.session.send(self.sockets[zmq.ROUTER], "registration_reply", content, ident=idents)

    def notify(self, kind: str, content: object) -> None:
        self.session.send(self.notices, kind, content)

    def close(self) -> None:
        for socket in (*self.sockets.values(), self.pong, self.notices):
            socket.close()
        self.context.term()


@pytest.fixture
def hub():
    scripted = ScriptedHub()
    yield scripted
    scripted.close()


@pytest.mark.timeout(30)
def test_replies_on_the_shared_registrar_reach_the_engines_they_answer_in_any_order(hub):
    with SimulatedEngines(hub.connection, size=5) as simulated:
        asked = hub.requests(5)
        ids = {uuid: 100 + n for n, (_, uuid) in enumerate(asked)}
        for idents, uuid in reversed(asked):
            hub.accept(idents, ids[uuid])
        wait_until(lambda: len(simulated.engine_ids()) == 5, timeout=10)
        assert simulated.engine_ids() == ids
        assert set(simulated.fleet.ids) == {uuid.encode() for uuid in ids}


@pytest.mark.timeout(30)
def test_an_untagged_reply_answers_the_oldest_request_still_waiting(hub):
    # the hub sends its error replies to the registrar alone, without the request's tag
    with SimulatedEngines(hub.connection, size=2, reply_timeout=0.5) as simulated:
        (first_idents, first), (_, given_up) = hub.requests(2)
        hub.accept(first_idents, 1)
        wait_until(lambda: simulated.engines_in(EngineState.UNANSWERED) == [given_up])
        older, newer = simulated.add(1) + simulated.add(1)
        (older_idents, _), (newer_idents, _) = hub.requests(2)
        hub.accept(older_idents[:1], 3)  # untagged: the oldest still waiting, not the given-up
        hub.accept(newer_idents, 4)
        wait_until(lambda: len(simulated.engine_ids()) == 3, timeout=10)
        assert simulated.engine_ids() == {first: 1, older: 3, newer: 4}


@pytest.mark.timeout(30)
def test_a_late_reply_to_a_request_given_up_on_neither_beats_nor_takes_another_s_place(hub):
    with SimulatedEngines(hub.connection, size=2, reply_timeout=0.5) as simulated:
        (late_idents, late), (answered_idents, answered) = hub.requests(2)
        hub.accept(answered_idents, 1)
        wait_until(lambda: simulated.engines_in(EngineState.UNANSWERED) == [late], timeout=10)
        (fresh,) = simulated.add(1)
        ((fresh_idents, uuid),) = hub.requests(1)
        assert uuid == fresh
        hub.accept(late_idents, 2)  # the given-up engine's answer comes first
        hub.accept(fresh_idents, 3)
        wait_until(lambda: fresh in simulated.engine_ids(), timeout=10)
        assert simulated.engine_ids() == {answered: 1, fresh: 3}
        assert simulated.engines_in(EngineState.UNANSWERED) == [late]
        assert sorted(simulated.fleet.ids) == sorted([answered.encode(), fresh.encode()])
        assert simulated.running


@pytest.mark.timeout(30)
def test_garbage_on_the_notification_channel_is_skipped_and_the_next_notice_is_read(hub):
    with SimulatedEngines(hub.connection, size=1) as simulated:
        ((idents, uuid),) = hub.requests(1)
        hub.accept(idents, 7)
        wait_until(lambda: simulated.status().accepted == 1, timeout=10)

        # the engines' SUB joins a moment after it connects: send until a notice gets through
        def registered_after_garbage() -> bool:
            hub.notices.send_multipart([b"not", b"a", b"message"])
            hub.notices.send_multipart([b"<IDS|MSG>", b"bad signature", b"{}", b"{}", b"{}", b"{}"])
            hub.notify("registration_notification", b'["not", "a", "dict"]')  # packed
            hub.notify("registration_notification", {"uuid": ["un", "hashable"]})
            hub.notify("registration_notification", {"uuid": uuid, "id": 7})
            gevent.sleep(0.05)
            return simulated.status().registered_now == 1

        wait_until(registered_after_garbage, timeout=10)
        assert simulated.running
        assert simulated.status().unreadable >= 4  # all but the last notice, at least once


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "shared", [True, False], ids=["shared-sockets", "own-registrar-and-ping-per-heart"]
)
def test_engines_that_stop_hearing_pings_ask_to_be_unregistered_and_die_as_ipengine_does(
    hub, shared
):
    period_ms, misses = 100, 2  # a check every 600 ms
    with SimulatedEngines(
        hub.connection,
        size=2,
        shared_registrar=shared,
        ping_per_heart=not shared,
        max_heartbeat_misses=misses,
    ) as simulated:
        asked = hub.requests(2)
        for engine_id, (idents, _) in enumerate(asked, 1):
            hub.accept(idents, engine_id, period_ms)
        wait_until(lambda: len(simulated.fleet.alive) == 2, timeout=10)
        pinging = gevent.event.Event()
        pinger = gevent.spawn(hub.ping_until, pinging)
        try:
            wait_until(lambda: simulated.fleet.status().pings >= 2 * 40, timeout=10)  # 2 s
            assert simulated.status().left == 0  # as long as the pings come
        finally:
            pinging.set()
            pinger.join()
        silent_since = time.monotonic()
        ids = {hub.receive("unregistration_request")[1]["id"] for _ in range(2)}
        seconds = time.monotonic() - silent_since
        assert ids == {1, 2}
        # ipengine's rule: misses checks in a row, the first of them possibly almost a check late
        check = (period_ms + 500) / 1000
        assert misses * check - 0.1 <= seconds <= (misses + 1) * check + 1.0
        assert simulated.status().left == 2
        # with nobody left to run, and no hub to say they are unregistered, they stop, saying why
        wait_until(lambda: not simulated.running, timeout=LEAVING_GRACE + 5)
        assert isinstance(simulated.exception, ControllerSilent)
        assert "is it still running?" in str(simulated.exception)


@pytest.mark.timeout(60)
def test_the_engines_command_exits_1_saying_why_when_every_engine_left(hub, tmp_path):
    connection_file = tmp_path / "ipcontroller-engine.json"
    connection = hub.connection
    connection_file.write_text(
        json.dumps(
            {
                "interface": connection.interface,
                "registration": connection.registration,
                "hb_ping": connection.hb_ping,
                "hb_pong": connection.hb_pong,
                "key": KEY.decode(),
                "signature_scheme": "hmac-sha256",
            }
        )
    )
    command = [sys.executable, "-m", "greenheart", "engines", "-n", "2"]
    command += ["--connection-file", str(connection_file), "--max-heartbeat-misses", "1"]
    run = gevent.subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for idents, _ in hub.requests(2):
            hub.accept(idents, 1, period_ms=100)  # and never a ping
        _, stderr = run.communicate(timeout=40)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    assert b"ControllerSilent: all 2 engines that were beating left" in stderr

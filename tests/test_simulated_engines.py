"""Simulated engines against a hub of the test's own, which answers as the test says:
out of order, late, or with garbage."""

from __future__ import annotations

import gevent
import pytest
import zmq.green
from jupyter_client.session import Session

from greenheart.core.registrations import EngineState
from greenheart.integrations.ipyparallel.connection import ControllerConnection
from greenheart.integrations.ipyparallel.engines import SimulatedEngines
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

    def requests(self, count: int) -> list[tuple[list[bytes], str]]:
        """The next ``count`` registration requests: whom to answer, and the uuid asked for."""
        received = []
        for _ in range(count):
            with gevent.Timeout(10):
                frames = self.sockets[zmq.ROUTER].recv_multipart()
            idents, message = self.session.feed_identities(frames)
            request = self.session.deserialize(message)
            assert request["header"]["msg_type"] == "registration_request"
            received.append((idents, request["content"]["uuid"]))
        return received

    def accept(self, idents: list[bytes], engine_id: int) -> None:
        # as ipyparallel's hub does: the reply goes back with every routing frame that came
        content = {"id": engine_id, "status": "ok", "hb_period": 1000}
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
    with SimulatedEngines(hub.connection, count=5) as simulated:
        asked = hub.requests(5)
        ids = {uuid: 100 + n for n, (_, uuid) in enumerate(asked)}
        for idents, uuid in reversed(asked):
            hub.accept(idents, ids[uuid])
        wait_until(lambda: len(simulated.engine_ids()) == 5, timeout=10)
        assert simulated.engine_ids() == ids
        assert set(simulated.fleet.ids) == {uuid.encode() for uuid in ids}


@pytest.mark.timeout(30)
def test_a_late_reply_to_a_request_given_up_on_neither_beats_nor_takes_another_s_place(hub):
    with SimulatedEngines(hub.connection, count=2, reply_timeout=0.5) as simulated:
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
    with SimulatedEngines(hub.connection, count=1) as simulated:
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

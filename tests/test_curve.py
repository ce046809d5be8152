"""CURVE: only allowed keys get in, and an allowed heart cannot answer for another."""

from __future__ import annotations

import logging

import pytest
import zmq
import zmq.green

from greenheart import Heart, HeartMonitor
from greenheart.core.zap import zap_reply
from greenheart.curve import ClientCurve, KeyPair, ServerCurve
from greenheart.fleet import HeartFleet
from greenheart.green.curve import load_allowed_keys, load_public_key, write_key_pair
from tests.helpers import RecordingMonitor, wait_beats, wait_until

SERVER = KeyPair.generate()


def curve_monitor(allowed, cls=RecordingMonitor, **kwargs) -> HeartMonitor:
    monitor = cls.bind(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        curve=ServerCurve(SERVER, allowed),
        period=kwargs.pop("period", 50),
        **kwargs,
    )
    monitor.start()
    return monitor


def curve_heart(monitor: HeartMonitor, name: str, keys: KeyPair) -> Heart:
    heart = Heart(
        monitor.ping_addr, monitor.pong_addr, heart_id=name, curve=ClientCurve(SERVER.public, keys)
    )
    heart.start()
    return heart


@pytest.fixture
def make_curve_monitor():
    monitors = []

    def make(allowed, **kwargs):
        monitors.append(curve_monitor(allowed, **kwargs))
        return monitors[-1]

    yield make
    for monitor in monitors:
        monitor.stop()


def test_allowed_hearts_register_and_others_never_do(make_curve_monitor):
    good, bad = KeyPair.generate(), KeyPair.generate()
    monitor = make_curve_monitor({good.public})
    plain = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="plain")  # no CURVE at all
    plain.start()
    hearts = [curve_heart(monitor, "good", good), curve_heart(monitor, "bad", bad), plain]
    try:
        wait_until(lambda: b"good" in monitor.hearts)
        wait_until(lambda: monitor.authenticator.refused >= 2)  # bad's pong and ping sockets
        wait_beats(monitor, 5)
        assert monitor.hearts == {b"good"}
        assert monitor.ledger.counters.bad_pongs == 0  # the refused never even got a message in
        assert monitor.authenticator.admitted >= 2
    finally:
        for heart in hearts:
            heart.stop()


def test_an_allowed_heart_cannot_answer_for_another(make_curve_monitor):
    alice, mallory = KeyPair.generate(), KeyPair.generate()
    monitor = make_curve_monitor({alice.public, mallory.public}, max_misses=1)
    real = curve_heart(monitor, "alice", alice)
    impostor = None
    try:
        wait_until(lambda: b"alice" in monitor.hearts)
        # Mallory's key is allowed, but the identity "alice" is bound to Alice's key. While
        # Alice is connected the monitor does not hand her identity over at all...
        impostor = curve_heart(monitor, "alice", mallory)
        wait_beats(monitor, 5)
        assert monitor.failed == {} and monitor.hearts == {b"alice"}
        # ...and once Alice is gone, Mallory (connecting again) gets her name, but her answers
        # under it are spoofed: Alice is reported failed rather than kept alive by someone else.
        real.kill()  # stopped, it would leave: failed at once
        impostor.stop()
        impostor.start()
        wait_until(lambda: monitor.ledger.counters.spoofed_pongs >= 5)
        wait_until(lambda: b"alice" in monitor.failed)
        assert b"alice" not in monitor.hearts
        assert monitor.registered[b"alice"] and len(monitor.registered[b"alice"]) == 1
    finally:
        real.stop()
        if impostor is not None:
            impostor.stop()


def test_a_fleet_with_one_key_pair(make_curve_monitor, tmp_path):
    public_file, secret_file = write_key_pair(tmp_path / "fleet", "fleet")
    monitor = make_curve_monitor(load_allowed_keys(tmp_path / "fleet"))
    curve = ClientCurve(SERVER.public, KeyPair.load(secret_file))
    with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=100, curve=curve) as fleet:
        wait_until(lambda: monitor.hearts == set(fleet.ids), timeout=15)
    assert load_public_key(public_file) == curve.keys.public


def test_key_files_and_settings_are_checked(tmp_path):
    public_file, secret_file = write_key_pair(tmp_path, "h")
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="no secret"):
        KeyPair.load(public_file)
    with pytest.raises(ValueError):
        ClientCurve(b"too short", KeyPair.generate())
    with pytest.raises(FileNotFoundError):
        load_allowed_keys(tmp_path / "missing")
    pair = KeyPair.load(secret_file)
    assert pair.secret.decode() not in repr(pair)


def test_zap_replies():
    key = KeyPair.generate().public
    raw = zmq.utils.z85.decode(key)
    request = [b"1.0", b"7", b"greenheart", b"127.0.0.1", b"", b"CURVE", raw]
    assert zap_reply(request, frozenset({key})) == ([b"1.0", b"7", b"200", b"OK", key, b""], True)
    assert zap_reply(request, frozenset())[0][2] == b"400"
    assert zap_reply(request, None)[1] is True  # any key, encryption only
    assert zap_reply([b"1.0", b"8", b"d", b"a", b"", b"PLAIN", b"u", b"p"], None)[0][2] == b"400"
    assert zap_reply([b"junk"], None)[0][2] == b"500"


def test_one_authenticator_per_context():
    context = zmq.green.Context()
    try:
        first = HeartMonitor.bind(
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:0",
            context=context,
            curve=ServerCurve(SERVER, None),
        )
        with pytest.raises(RuntimeError, match="own context"):
            HeartMonitor.bind(
                "tcp://127.0.0.1:0",
                "tcp://127.0.0.1:0",
                context=context,
                curve=ServerCurve(SERVER, None),
            )
        first.stop()
    finally:
        context.term()


def test_a_stopped_curve_monitor_leaves_nothing_running():
    monitor = curve_monitor(None)
    authenticator = monitor.authenticator
    monitor.stop()
    monitor.stop()
    assert not authenticator.running and authenticator.join(timeout=5)
    assert authenticator.context.closed
    assert monitor.pingstream.closed and monitor.pongstream.closed


def test_every_refused_peer_is_counted_and_logged_with_its_address(make_curve_monitor, caplog):
    allowed, stranger = KeyPair.generate(), KeyPair.generate()
    wrong_server = ClientCurve(KeyPair.generate().public, allowed)
    # each kind of peer on a monitor of its own: a refused heart keeps reconnecting, and on a
    # loaded machine its next refusals would land in another kind's count
    kinds = {
        "plaintext": {},
        "wrong server key": {"curve": wrong_server},
        "unlisted key": {"curve": ClientCurve(SERVER.public, stranger)},
    }
    reasons: dict[str, set[str]] = {}
    addresses: list[str] = []
    hearts: list[Heart] = []
    try:
        with caplog.at_level(logging.WARNING, logger="greenheart"):
            for name, options in kinds.items():
                monitor = make_curve_monitor({allowed.public})
                addresses.append(monitor.pong_addr)
                heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=name, **options)
                hearts.append(heart)
                heart.start()
                # each heart has two sockets, and each of them is refused
                wait_until(
                    lambda m=monitor: sum(m.status().refused_peers.values()) >= 2, timeout=10
                )
                reasons[name] = set(monitor.status().refused_peers)
                assert monitor.hearts == set()
        # which of the two libzmq reports depends on which side saw the mismatch first
        assert reasons["plaintext"] <= {"protocol", "handshake"}
        assert reasons["wrong server key"] <= {"protocol", "handshake"}
        assert reasons["unlisted key"] == {"auth"}
        logged = [r.getMessage() for r in caplog.records if "refused a peer" in r.getMessage()]
        assert any(address in message for address in addresses for message in logged), logged
        # the address of a refused key's peer is known to the authenticator, which logs it
        assert any("refused a connection from 127.0.0.1" in r.getMessage() for r in caplog.records)
    finally:
        for heart in hearts:
            heart.stop()

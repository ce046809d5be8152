"""The ledger, driven with no sockets: unit tests of each rule, then a model-based property test."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from greenheart.ledger import Ledger, PongKind
from greenheart.wire import encode_ping


def test_first_ping_and_registration_at_the_next_beat():
    ledger = Ledger(tic=100.0)
    assert ledger.ping == b"0.0"
    pong = ledger.pong(b"a", ledger.ping, 100.25)
    assert pong.kind is PongKind.ON_TIME
    assert pong.rtt == pytest.approx(0.25)
    assert ledger.hearts == set()  # registered when the round closes, as in ipyparallel
    beat = ledger.beat(101.0)
    assert beat.new_hearts == (b"a",)
    assert ledger.hearts == {b"a"}
    assert beat.ping == encode_ping(1.0) == ledger.ping
    assert ledger.lifetime == 1.0 and ledger.last_ping == 0.0 and ledger.tic == 101.0


def test_default_is_probation_at_the_first_miss_and_failure_at_the_second():
    ledger = Ledger(tic=0.0)
    ledger.pong(b"a", ledger.ping, 0.1)
    ledger.beat(1.0)
    beat = ledger.beat(2.0)
    assert ledger.on_probation == {b"a": 1} and beat.missed == (b"a",)
    assert beat.failed_hearts == ()
    beat = ledger.beat(3.0)
    assert beat.failed_hearts == (b"a",)
    assert ledger.hearts == set() and ledger.on_probation == {}


@pytest.mark.parametrize("max_misses", [0, 1, 3, 10])
def test_a_heart_fails_after_exactly_max_misses_plus_one_misses(max_misses):
    ledger = Ledger(tic=0.0, max_misses=max_misses)
    ledger.pong(b"a", ledger.ping, 0.1)
    ledger.beat(1.0)
    for miss in range(1, max_misses + 1):
        beat = ledger.beat(1.0 + miss)
        assert beat.failed_hearts == ()
        assert ledger.on_probation[b"a"] == miss
    beat = ledger.beat(2.0 + max_misses)
    assert beat.failed_hearts == (b"a",)


def test_an_answer_ends_probation():
    ledger = Ledger(tic=0.0, max_misses=2)
    ledger.pong(b"a", ledger.ping, 0.1)
    ledger.beat(1.0)
    ledger.beat(2.0)
    ledger.beat(3.0)
    assert ledger.on_probation == {b"a": 2}
    ledger.pong(b"a", ledger.ping, 3.1)
    ledger.beat(4.0)
    assert ledger.on_probation == {}
    ledger.beat(5.0)
    assert ledger.on_probation == {b"a": 1}  # the count starts again


def test_a_late_answer_counts_and_is_measured():
    ledger = Ledger(tic=0.0)
    ledger.pong(b"a", ledger.ping, 0.1)
    ledger.beat(1.0)
    previous = ledger.ping
    ledger.beat(2.0)
    pong = ledger.pong(b"a", previous, 2.3)
    assert pong.kind is PongKind.LATE
    assert pong.rtt == pytest.approx(1.3)  # from the ping it answers
    beat = ledger.beat(3.0)
    assert beat.failed_hearts == () and b"a" in ledger.hearts
    assert beat.late_pongs == 1 and beat.late_hearts == {b"a": pytest.approx(0.3)}
    assert ledger.counters.late_pongs == 1


def test_stale_and_garbage_payloads_are_counted_and_ignored():
    ledger = Ledger(tic=0.0)
    two_ago = ledger.ping
    ledger.beat(1.0)
    ledger.beat(2.0)
    for payload in (two_ago, b"garbage", b"", b"\xff" * 64):
        assert ledger.pong(b"x", payload, 2.1).kind is PongKind.STALE
    beat = ledger.beat(3.0)
    assert beat.new_hearts == () and ledger.hearts == set()
    assert beat.bad_pongs == 4 and ledger.counters.stale_pongs == 4


def test_an_empty_identity_is_malformed_even_with_a_good_payload():
    ledger = Ledger(tic=0.0)
    assert ledger.pong(b"", ledger.ping, 0.1).kind is PongKind.MALFORMED
    ledger.beat(1.0)
    assert ledger.hearts == set() and ledger.counters.malformed_pongs == 1


def test_a_clock_stepping_back_never_repeats_an_older_ping():
    ledger = Ledger(tic=10.0)
    ledger.beat(11.0)
    ledger.beat(9.0)
    assert ledger.lifetime == 1.0


def test_an_unjudged_beat_charges_no_miss_and_fails_nobody():
    ledger = Ledger(tic=0.0, max_misses=1)
    ledger.pong(b"a", ledger.ping, 0.1)
    ledger.pong(b"b", ledger.ping, 0.1)
    ledger.beat(1.0)
    ledger.pong(b"c", ledger.ping, 1.1)
    ledger.beat(2.0)  # a and b miss once
    for beat_at in (3.0, 4.0, 5.0):
        beat = ledger.beat(beat_at, judge=False)
        assert beat.failed_hearts == ()
        assert ledger.on_probation == {b"a": 1, b"b": 1}
    assert beat.missed == (b"a", b"b")
    assert not beat.judged
    assert ledger.on_probation == {b"a": 1, b"b": 1}
    assert ledger.hearts == {b"a", b"b", b"c"}  # c was new at 2.0, and is not charged either
    assert ledger.beat(6.0).failed_hearts == (b"a", b"b")
    assert ledger.on_probation == {b"c": 1}


def test_max_misses_is_validated():
    with pytest.raises(ValueError):
        Ledger(tic=0.0, max_misses=-1)
    with pytest.raises(TypeError):
        Ledger(tic=0.0, max_misses=1.5)


HEARTS = [b"a", b"b", b"c", b"\x00\x01"]


@attrs.define
class ModelHeart:
    registered: bool = False
    misses: int = 0
    answered: bool = False
    events: list[str] = attrs.Factory(list)


class LedgerMachine(RuleBasedStateMachine):
    """Random beats and pongs, checked against a model written from the rules in plain terms."""

    def __init__(self) -> None:
        super().__init__()
        self.max_misses = 1
        self.ledger = Ledger(tic=0.0, max_misses=self.max_misses)
        self.now = 0.0
        self.lifetime = 0.0
        self.current = encode_ping(0.0)
        self.previous: bytes | None = None
        self.model = {heart: ModelHeart() for heart in HEARTS}
        self.pongs = {kind: 0 for kind in PongKind}

    @rule(max_misses=st.integers(0, 4))
    def reset(self, max_misses):
        self.__init__()
        self.max_misses = max_misses
        self.ledger = Ledger(tic=0.0, max_misses=max_misses)

    @rule(
        heart=st.sampled_from(HEARTS),
        answer=st.sampled_from(["current", "previous", "stale"]),
        delay=st.floats(0, 5),
    )
    def pong(self, heart, answer, delay):
        payload = {"current": self.current, "previous": self.previous}.get(answer) or b"9e99"
        now = self.now + delay
        pong = self.ledger.pong(heart, payload, now)
        if payload == self.current:
            expected = PongKind.ON_TIME
        elif payload == self.previous:
            expected = PongKind.LATE
        else:
            expected = PongKind.STALE
        assert pong.kind is expected
        assert pong.heart == heart
        assert (pong.rtt is None) == (expected is PongKind.STALE)
        if expected is not PongKind.STALE:
            self.model[heart].answered = True
        self.pongs[expected] += 1

    @rule(shape=st.sampled_from([b"", b"x"]))
    def malformed(self, shape):
        assert self.ledger.malformed(shape).kind is PongKind.MALFORMED
        self.pongs[PongKind.MALFORMED] += 1

    @rule(elapsed=st.floats(-1, 10), judge=st.sampled_from([True, True, True, False]))
    def beat(self, elapsed, judge):
        now = self.now + elapsed
        beat = self.ledger.beat(now, judge=judge)
        assert beat.judged is judge
        new, failed = [], []
        for heart, state in self.model.items():
            if state.answered and not state.registered:
                state.registered = True
                state.misses = 0
                new.append(heart)
                state.events.append("new")
            elif state.answered:
                state.misses = 0
            elif state.registered and judge:
                state.misses += 1
                if state.misses > self.max_misses:
                    state.registered = False
                    state.misses = 0
                    failed.append(heart)
                    state.events.append("failed")
            state.answered = False
        assert beat.new_hearts == tuple(sorted(new))
        assert beat.failed_hearts == tuple(sorted(failed))
        self.lifetime += max(0.0, now - self.now)
        self.previous, self.current = self.current, encode_ping(self.lifetime)
        self.now = now
        assert beat.ping == self.current == self.ledger.ping

    @invariant()
    def matches_the_model(self):
        registered = {heart for heart, state in self.model.items() if state.registered}
        assert self.ledger.hearts == registered
        probation = {h: s.misses for h, s in self.model.items() if s.registered and s.misses}
        assert self.ledger.on_probation == probation
        assert all(1 <= misses <= self.max_misses for misses in probation.values())
        answered = {heart for heart, state in self.model.items() if state.answered}
        assert self.ledger.responses == answered

    @invariant()
    def events_alternate_new_then_failed(self):
        for state in self.model.values():
            assert state.events == ["new", "failed"] * (len(state.events) // 2) + (
                ["new"] if len(state.events) % 2 else []
            )

    @invariant()
    def counters_add_up(self):
        counters = self.ledger.counters
        assert counters.on_time_pongs == self.pongs[PongKind.ON_TIME]
        assert counters.late_pongs == self.pongs[PongKind.LATE]
        assert counters.stale_pongs == self.pongs[PongKind.STALE]
        assert counters.malformed_pongs == self.pongs[PongKind.MALFORMED]


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)

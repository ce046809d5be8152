"""Whether a beat may judge: the catch-up rule, driven with a model of the ROUTER's fair queue."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.judging import (
    GATHER_SECONDS,
    PONG_BATCH,
    CatchUp,
    Lateness,
    Pace,
    Verdict,
    gather_seconds,
    verdict,
)
from greenheart.core.ledger import Ledger


class FairQueue:
    """ZeroMQ's ROUTER as a beat sees it: one queue per peer, read round-robin."""

    def __init__(self) -> None:
        self.peers: dict[bytes, deque[bytes]] = {}
        self._turns: deque[bytes] = deque()  # peers with something queued, next first
        self.read_count = 0

    def put(self, peer: bytes, *payloads: bytes) -> None:
        if payloads and not self.peers.get(peer):
            self._turns.append(peer)
        self.peers.setdefault(peer, deque()).extend(payloads)

    def unread(self) -> int:
        return sum(map(len, self.peers.values()))

    def read(self, limit: int, ledger: Ledger, now: float) -> int:
        """Hand up to ``limit`` queued messages to ``ledger``; how many there were."""
        read = 0
        while read < limit and self._turns:
            peer = self._turns.popleft()
            ledger.pong(peer, self.peers[peer].popleft(), now)
            read += 1
            if self.peers[peer]:
                self._turns.append(peer)
        self.read_count += read
        return read


def catch_up(queue: FairQueue, ledger: Ledger) -> bool:
    """What a beat does before it judges: read as the rule asks, and say if it caught up."""
    rule = CatchUp(len(ledger.hearts))
    while wanted := rule.wanted():
        rule.read(queue.read(wanted, ledger, 1.0), ledger.rounds.answer_count)
    assert rule.caught_up is not None
    return rule.caught_up


def ledger_knowing(hearts: list[bytes]) -> Ledger:
    ledger = Ledger(tic=0.0)
    for heart in hearts:
        ledger.pong(heart, ledger.ping, 0.1)
    ledger.beat(1.0)
    assert ledger.hearts == set(hearts)
    return ledger


HEARTS = [b"h%d" % n for n in range(100)]


def test_an_empty_queue_is_caught_up_at_once():
    ledger = ledger_knowing(HEARTS)
    queue = FairQueue()
    assert catch_up(queue, ledger) and queue.read_count == 0


def test_every_heart_answering_is_read_before_judging():
    ledger = ledger_knowing(HEARTS)
    queue = FairQueue()
    for heart in HEARTS:
        queue.put(heart, ledger.ping)
    assert catch_up(queue, ledger)
    assert ledger.rounds.responses == set(HEARTS) and not queue.unread()


def test_one_peers_flood_does_not_stop_the_beat_judging():
    ledger = ledger_knowing(HEARTS)
    queue = FairQueue()
    queue.put(b"flood", *[ledger.ping] * 100_000)
    for heart in HEARTS:
        queue.put(heart, ledger.ping)
    assert catch_up(queue, ledger)
    assert ledger.rounds.responses >= set(HEARTS)
    # every heart was heard within the first read, and the check cost one batch more
    assert queue.read_count == 2 * len(HEARTS) + 2 * PONG_BATCH


def test_answers_still_coming_in_make_the_monitor_behind():
    ledger = ledger_knowing(HEARTS[:10])
    queue = FairQueue()
    for heart in HEARTS + [b"new%d" % n for n in range(1000)]:
        queue.put(heart, ledger.ping)
    assert not catch_up(queue, ledger)
    assert queue.unread()  # answers are still unread: judging now would blame their hearts


@given(
    hearts=st.integers(0, 300),
    answers=st.lists(st.integers(0, 2), min_size=300, max_size=300),
    flood=st.integers(0, 5000),
)
def test_with_at_most_two_answers_a_heart_and_one_flood_every_answer_is_read(
    hearts, answers, flood
):
    known = [b"k%d" % n for n in range(hearts)]
    ledger = ledger_knowing(known)
    previous = b"0.0"
    queue = FairQueue()
    queue.put(b"flood", *[b"garbage"] * flood)
    for heart, count in zip(known, answers, strict=False):
        queue.put(heart, *[ledger.ping, previous][:count])
    assert catch_up(queue, ledger)
    assert not any(queue.peers.get(heart) for heart in known)
    assert queue.read_count <= 2 * hearts + 2 * PONG_BATCH


def test_the_reads_must_be_reported_as_asked():
    rule = CatchUp(3)
    assert rule.wanted() == 6 + PONG_BATCH
    with pytest.raises(
        ValueError, match=f"read {7 + PONG_BATCH} messages of the {6 + PONG_BATCH} wanted"
    ):
        rule.read(rule.wanted() + 1, 0)
    rule.read(rule.wanted(), 5)
    assert rule.wanted() == PONG_BATCH and rule.caught_up is None
    rule.read(PONG_BATCH, 6)
    assert rule.wanted() == 0 and rule.caught_up is False


@pytest.mark.parametrize(
    ("late", "paused", "caught_up", "expected"),
    [
        (False, False, True, Verdict.JUDGE),
        (True, False, True, Verdict.JUDGE),  # a busy hub: what arrived is queued, and read
        (True, True, True, Verdict.STALLED),  # a paused process: answers may be in the kernel
        (True, True, False, Verdict.STALLED),
        (False, False, False, Verdict.BEHIND),
        (True, False, False, Verdict.BEHIND),
        (False, True, True, Verdict.JUDGE),  # on time: however little the thread computed
    ],
)
def test_a_late_beat_judges_unless_its_process_was_paused(late, paused, caught_up, expected):
    # a second since the beat before, the thread computing through it (busy) or not (paused)
    lap = Pace(since=10.0, cpu=3.0).lap(late=late, now=11.0, cpu=3.0 if paused else 3.95)
    assert verdict(lap.lateness, caught_up=caught_up) is expected


@pytest.mark.parametrize(
    ("elapsed", "cpu", "paused"),
    [
        (1.0, 0.95, False),  # the hub computed all along
        (1.0, 0.6, False),  # computing, and sharing the core with another process
        (1.0, 0.01, True),  # SIGSTOP or a VM pause: no thread ran
        (1.0, 0.0, True),  # blocked in a call (time.sleep, a blocking driver)
        (2.0, 0.9, True),  # computed for a while, then stopped for longer
    ],
)
def test_a_paused_process_is_told_from_a_busy_one_by_its_threads_cpu(elapsed, cpu, paused):
    pace = Pace(since=100.0, cpu=7.0)
    lap = pace.lap(late=True, now=100.0 + elapsed, cpu=7.0 + cpu)
    assert lap.lateness is (Lateness.STALLED if paused else Lateness.BUSY)
    assert lap.cpu_share == pytest.approx(cpu / elapsed)
    # and the next lap counts from this beat
    assert pace.lap(late=False, now=101.0 + elapsed, cpu=7.5 + cpu).cpu_share == pytest.approx(0.5)


def test_a_beat_on_time_judges_whatever_its_thread_did():
    pace = Pace(since=0.0, cpu=0.0)
    assert pace.lap(late=False, now=1.0, cpu=0.0).lateness is Lateness.ON_TIME
    assert pace.lap(late=False, now=1.0, cpu=0.0).cpu_share is None  # no time passed


@pytest.mark.parametrize("elapsed", [0.003, 1.0, 3.0, 45.0])
def test_the_line_between_a_paused_process_and_a_busy_one_is_half_the_time(elapsed):
    """A late beat whose thread computed for just under half the time since the beat before
    was paused, and judges nobody; just over half (or exactly half) was busy, and judges."""
    under, half, over = 0.49 * elapsed, 0.5 * elapsed, 0.51 * elapsed

    def lateness(cpu: float) -> Lateness:
        return Pace(since=0.0, cpu=0.0).lap(late=True, now=elapsed, cpu=cpu).lateness

    assert lateness(under) is Lateness.STALLED
    assert lateness(half) is Lateness.BUSY
    assert lateness(over) is Lateness.BUSY
    late_beat = {cpu: verdict(lateness(cpu), caught_up=True) for cpu in (under, half, over)}
    assert late_beat == {under: Verdict.STALLED, half: Verdict.JUDGE, over: Verdict.JUDGE}


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_answers_gather_for_at_most_a_millisecond_and_a_hundredth_of_the_period(period):
    gather = gather_seconds(period)
    assert 0 < gather <= GATHER_SECONDS
    assert gather <= period / 100
    assert gather == GATHER_SECONDS or gather == period / 100

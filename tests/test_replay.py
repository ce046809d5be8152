"""Recordings and replays, with a fed clock: a replay makes the recorded verdicts again, a cut-off
file replays up to its cut, and pause patterns give the false failures a hand count gives."""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from greenheart.core.failures import Cause, Failure
from greenheart.core.inputs import (
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionTied,
    Echoed,
    Left,
    Malformed,
    RoundClosed,
    RoundOpened,
    Stale,
    Started,
)
from greenheart.core.ledger import Ledger
from greenheart.core.phi import PhiAccrual
from greenheart.core.recording import MAGIC, Header, Writer, read
from greenheart.core.replay import (
    CRASH,
    HANG,
    Detection,
    Injection,
    Replayed,
    detections,
    inject,
    plan,
    replay,
    resample,
)
from greenheart.core.rounds import Echo
from greenheart.core.rules import Rules
from greenheart.core.silence import MassSilence
from greenheart.core.tuning import (
    DAY,
    Choice,
    FalseFailureRate,
    Result,
    Setting,
    Targets,
    choose,
    evaluate,
    grid,
    plan_deaths,
    poisson_upper,
    tape,
)
from greenheart.core.values import PongKind
from greenheart.core.wire import LEAVE
from tests import pure

HEARTS = [b"h%d" % n for n in range(10)]


@attrs.define
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def recorded(rules: Rules, period: float = 1.0) -> tuple[Ledger, Writer, Clock]:
    """A ledger whose inputs are written down, as a monitor's recording does."""
    clock = Clock()
    writer = Writer(Header(period=period * 1000, rules=rules, origin=0.0))
    ledger = Ledger(tic=0.0, rules=rules)
    ledger.observe(writer.write)
    return ledger, writer, clock


def steady(
    rules: Rules, beats: int, silent: dict[bytes, set[int]] | None = None, period: float = 1.0
) -> tuple[bytes, list[tuple[bytes, int, str]]]:
    """A recording of ``HEARTS`` answering every ping 10 ms after it, on a connection each,
    except the pings ``silent`` lists for a heart (by ping number, the first ping being 0);
    and the verdicts the live ledger made, as (heart, beat, cause)."""
    silent = silent or {}
    ledger, writer, clock = recorded(rules, period)
    for fd in range(10, 10 + len(HEARTS)):
        ledger.accepted(fd, 0.0)
    verdicts, data = [], b""
    for k in range(beats):
        sent = ledger.tic
        for fd, heart in enumerate(HEARTS, start=10):
            if k in silent.get(heart, ()):
                continue
            clock.now = sent + 0.01
            ledger.pong(heart, ledger.ping, clock.now)
            if not ledger.connections.tied(heart, fd):
                ledger.tie(heart, fd, clock.now)
        clock.now = (k + 1) * period
        ledger.publish(clock.now)
        beat = ledger.beat(clock.now)
        verdicts += [(f.heart, f.beat, f.cause.value) for f in beat.failures]
        data += writer.take()  # as a monitor writes its file: at every beat
    return data, verdicts


def verdicts_of(data: bytes, rules: Rules) -> list[tuple[bytes, int, str]]:
    outcome = replay(read(data).inputs, rules)
    return [(f.heart, f.beat, f.cause.value) for f in outcome.failures]


# pauses of 1, 2, 3 and 5 pings in a row, each starting on an even ping
PAUSES = {b"h3": {10} | {20, 21} | {30, 31, 32} | {40, 41, 42, 43, 44}}


@pytest.mark.parametrize(("max_misses", "expected"), [(1, 3), (2, 2), (3, 1), (4, 1), (5, 0)])
def test_pauses_make_the_false_failures_a_hand_count_gives(max_misses, expected):
    # a pause of k pings is k misses in a row; it fails the heart when k > max_misses, and the
    # heart's next answer, on the same connection, makes that a false failure
    rules = Rules(max_misses=max_misses)
    data, live = steady(rules, 60, PAUSES)
    outcome = replay(read(data).inputs, rules)
    assert len(outcome.false_failures) == expected
    assert {mistake.heart for mistake in outcome.false_failures} <= {b"h3"}
    # failed at the beat that closed its (max_misses + 1)th silent round, it was back 10 ms into
    # the round after its last silent one
    lasted = [k - max_misses - 1 + 0.01 for k in (1, 2, 3, 5) if k > max_misses]
    assert [m.gone for m in outcome.false_failures] == pytest.approx(lasted)
    assert verdicts_of(data, rules) == live


def test_a_replay_under_other_rules_counts_what_they_would_have_done():
    data, _ = steady(Rules(max_misses=1), 60, PAUSES)
    assert len(replay(read(data).inputs, Rules(max_misses=3)).false_failures) == 1
    assert len(replay(read(data).inputs, Rules(max_misses=5)).false_failures) == 0


def test_at_twice_the_period_a_pause_keeps_its_length_in_seconds():
    data, _ = steady(Rules(), 60, PAUSES)
    events = read(data).inputs
    # at 2 s, pings go out at even seconds: the pauses of 1, 2, 3 and 5 s are silent for 1, 1, 2
    # and 3 of them, so one miss allowed fails the heart in the last two
    slow = resample(events, 2000)
    assert len(replay(slow, Rules(max_misses=1)).false_failures) == 2
    assert len(replay(slow, Rules(max_misses=2)).false_failures) == 1
    # the recorded period made up again is the recording itself, verdict for verdict
    same = replay(resample(events, 1000), Rules(max_misses=1))
    assert [(f.heart, f.beat) for f in same.failures] == [
        (f.heart, f.beat) for f in replay(events, Rules(max_misses=1)).failures
    ]


def test_a_cut_off_recording_replays_up_to_its_cut():
    data, _ = steady(Rules(), 30, PAUSES)
    whole = read(data)
    assert not whole.truncated
    readable = 0
    for cut in range(len(data)):
        try:
            part = read(data[:cut])
        except ValueError:
            assert not readable, f"cut at {cut} unreadable after a shorter cut read"
            continue
        readable += 1
        assert part.inputs == whole.inputs[: len(part.inputs)]
        replay(part.inputs, Rules())  # replays, whatever it ends on
    # flushed at every beat: a cut anywhere past the first beat's bytes reads
    assert readable > len(data) // 2
    with pytest.raises(ValueError, match="not a greenheart recording"):
        read(b"garbage")


#: what a damaged recording's reader salvages: whole pieces of this many bytes of its stream
#: that decompress cleanly (damage in the first piece leaves nothing, its header included)
SALVAGED_PIECE = 4096


def test_garbage_after_a_cut_is_a_truncated_recording_not_a_crash():
    """A recording whose bytes go on as garbage after a cut (a disk that failed mid-write)
    reads as truncated, up to an event before the cut, for every cut past the header and the
    first salvaged piece, whatever the garbage."""
    data, _ = steady(Rules(), 600, PAUSES)
    whole = read(data)
    start = len(MAGIC) + SALVAGED_PIECE  # past the header, which the first piece holds
    assert len(data) > start + 1000
    garbages = [bytes(range(256)) * 4, b"\x00" * 50, random.Random(1).randbytes(300)]
    cuts = range(start, len(data) + 1, 37)
    checked = 0
    for cut in cuts:
        for garbage in garbages:
            recording = read(data[:cut] + garbage)
            assert recording.truncated, cut
            assert recording.inputs, cut
            assert recording.inputs == whole.inputs[: len(recording.inputs)], cut
            checked += 1
    assert checked == len(cuts) * len(garbages) > 60
    replay(recording.inputs, Rules())  # replays, whatever it ends on


def test_injected_deaths_are_noticed_when_the_rules_say():
    data, _ = steady(Rules(), 40)
    events = read(data).inputs
    deaths = [Injection(b"h1", 10.5, HANG), Injection(b"h2", 12.5, CRASH)]
    dead, made = inject(events, deaths)
    for misses in (1, 2, 4):
        outcome = replay(dead, Rules(max_misses=misses))
        # the last answer came 10 ms into the round before the death: misses + 1 silent rounds
        # later its beat fails it, (misses + 1.5) periods after a death half-way through a round
        for kind in (HANG, CRASH):
            detection = detections(outcome, made, kind)
            assert detection.times == pytest.approx((misses + 1.5,))
        # the heart carries on under a new identity, which never fails
        assert not [f for f in outcome.failures if b"~" in f.heart]
    crash_noticed = replay(dead, Rules(fail_on_disconnect=True))
    assert detections(crash_noticed, made, CRASH).times == (0.0,)


def test_tuning_names_the_fastest_setting_that_meets_both_targets():
    data, _ = steady(Rules(), 60, PAUSES)
    recording = read(data)
    settings_ = grid(1000, max_misses=[1, 2, 5, 8], base=Rules())
    deaths = [Injection(b"h1", 20.5, HANG), Injection(b"h2", 25.5, CRASH)]
    made = tape(recording.inputs, 1000, 1000, deaths, Rules())
    results = [evaluate(setting, made) for setting in settings_]
    by_misses = {r.setting.rules.max_misses: r for r in results}
    assert [by_misses[n].false_failures.count for n in (1, 2, 5, 8)] == [3, 2, 0, 0]
    assert by_misses[2].detect() == pytest.approx(3.5)
    # one false failure a day for the cluster: five misses, the fastest with none
    choice = choose(results, Targets(detect=10.0, false_failures=1.0))
    assert choice.chosen is by_misses[5]
    # a detection target too tight for it: none meets both, and the closest is named
    choice = choose(results, Targets(detect=3.0, false_failures=1.0))
    assert choice.chosen is None
    assert choice.fastest_quiet is by_misses[5] and choice.quietest_fast is by_misses[1]
    assert choice.closest is not None
    assert isinstance(choice.closest.setting, Setting)


def test_a_plain_ledger_and_a_recording_one_decide_alike():
    plain, (recording, _, _) = Ledger(tic=0.0), recorded(Rules())
    for ledger in (plain, recording):
        ledger.pong(b"a", ledger.ping, 0.01)
        ledger.beat(1.0)
        ledger.beat(2.0)
    assert plain.beat(3.0).failed_hearts == recording.beat(3.0).failed_hearts == (b"a",)


# -- pinned before the recording is restructured: through tests/pure.py's calls alone ---------


@attrs.define
class Live:
    """A recorded ledger driven as a monitor drives it: hearts on connections of their own,
    and what it decided, as the ledger itself keeps it."""

    rules: Rules
    ledger: Ledger = attrs.field(init=False)
    take: object = attrs.field(init=False)
    data: bytes = b""
    #: heart -> the descriptor of its open connection
    fds: dict[bytes, int] = attrs.Factory(dict)
    next_fd: int = 10
    beats: int = 0
    last_beat: float = 0.0
    #: heart-seconds known, and the most hearts known after a beat
    exposure: float = 0.0
    most_hearts: int = 0

    def __attrs_post_init__(self) -> None:
        self.ledger, self.take = pure.recording(self.rules)

    def connect(self, heart: bytes, now: float) -> None:
        self.fds[heart], self.next_fd = self.next_fd, self.next_fd + 1
        pure.connect(self.ledger, self.fds[heart], now)

    def answer(self, heart: bytes, now: float, echo: str = "current", key: object = None) -> None:
        if heart not in self.fds:
            self.connect(heart, now)
        pure.answer(self.ledger, heart, now, fd=self.fds[heart], echo=echo, key=key)

    def close(self, heart: bytes, now: float) -> None:
        if heart in self.fds:
            pure.close(self.ledger, self.fds.pop(heart), now)

    def beat(
        self, now: float, judge: bool = True, lag: float = 0.0, cpu_share: float | None = None
    ) -> object:
        pure.publish(self.ledger, now)
        beat = pure.beat(self.ledger, now, judge=judge, lag=lag, cpu_share=cpu_share)
        self.data += self.take()
        if self.beats:
            self.exposure += beat.heart_count * (now - self.last_beat)
        self.most_hearts = max(self.most_hearts, beat.heart_count)
        self.beats, self.last_beat = self.beats + 1, now
        return beat

    @property
    def failures(self) -> list:
        return pure.failures(self.ledger)

    @property
    def false_failures(self) -> list:
        return list(self.ledger.false_failures)


def _steadily(live: Live, rounds: range, hearts=HEARTS) -> None:
    """``hearts`` answer each ping 10 ms after it, at 1 s, for ``rounds`` (by ping number)."""
    for k in rounds:
        for heart in hearts:
            live.answer(heart, k + 0.01)
        live.beat(k + 1.0)


def _stalled() -> bytes:
    """Ten hearts answering each ping 10 ms after it, at 1 s; the beat due at 11 s came at 15 s
    (the monitor stopped), unjudged, and the answers to the ping of 10 s, queued meanwhile,
    were read just after it."""
    live = Live(Rules())
    _steadily(live, range(10))
    live.beat(15.0, judge=False, lag=4.0)
    for heart in HEARTS:
        live.answer(heart, 15.005, echo="previous")
    _steadily(live, range(15, 25))
    assert live.failures == []
    return live.data


@pytest.mark.parametrize("period", [2000, 3000, 5000])
def test_a_beat_due_inside_a_recorded_stall_comes_at_its_end_unjudged(period):
    """At another period, the beat due inside the stall (or at its end) comes at the stall's
    end and judges nobody, as the recorded one did: the hearts whose answers the monitor could
    not read are not failed, even with no miss allowed. The other beats judge."""
    events = resample(pure.inputs(_stalled()), period)
    beats = pure.beats_in(events)
    assert (15.0, False) in beats
    assert not [at for at, _ in beats if 11.0 < at < 15.0]
    assert all(judged for at, judged in beats if at != 15.0)
    assert pure.replayed(events, Rules(max_misses=0, mass_silence=None)).failures == []


@pytest.mark.parametrize("period", [250, 500])
def test_a_beat_due_while_the_monitor_was_busy_comes_late_and_judges(period):
    """A beat that came late from a busy monitor (due at 11 s, at 11.6 s, judged) is a stall
    too: at another period, the beats due inside it come at its end, and judge as it did."""
    live = Live(Rules())
    _steadily(live, range(10))
    for heart in HEARTS:
        live.answer(heart, 10.01)
    live.beat(11.6, lag=0.6)
    _steadily(live, range(12, 15))
    beats = pure.beats_in(resample(pure.inputs(live.data), period))
    assert (11.6, True) in beats
    assert not [at for at, _ in beats if 11.0 + 1e-9 < at < 11.6]
    assert all(judged for _, judged in beats)


def test_no_answer_is_made_up_while_a_hearts_connection_is_down():
    """h3's connection closes at 10.5 s; it is silent until it answers on a new connection at
    13.01 s. At a quarter of the period, the pings it would have answered from 10.5 s on get no
    answer (the recorded ping before them was answered, but not on a connection that is up):
    its last answer is the one to the ping of 10.25 s, and it fails two beats after 10.5 s."""
    live = Live(Rules())
    _steadily(live, range(10))
    for heart in HEARTS:
        live.answer(heart, 10.01)
    live.close(b"h3", 10.5)
    live.beat(11.0)
    _steadily(live, range(11, 13), [heart for heart in HEARTS if heart != b"h3"])
    live.connect(b"h3", 13.005)
    _steadily(live, range(13, 20))
    assert [(f.heart, f.at) for f in live.failures] == [(b"h3", 13.0)]
    for period, failed_at in ((250, 11.0), (500, 11.5)):
        events = resample(pure.inputs(live.data), period)
        assert not [at for at in pure.answers_in(events, b"h3") if 10.5 <= at < 13.01]
        assert [at for at in pure.answers_in(events, b"h3") if at >= 13.01]  # back
        outcome = pure.replayed(events, Rules())
        assert [(f.heart, f.at, f.cause, f.connected) for f in outcome.failures] == [
            (b"h3", failed_at, Cause.MISSED, False)
        ]
        assert outcome.false_failures == []


def test_a_replay_counts_each_closed_connections_failure_once():
    """With ``fail_on_disconnect``, a closed connection fails its heart at once: the replay has
    that failure once (the beat after it lists it again, as a disconnection, not as new)."""
    rules = Rules(fail_on_disconnect=True)
    live = Live(rules)
    _steadily(live, range(5))
    live.close(b"h3", 5.5)
    _steadily(live, range(5, 10), [heart for heart in HEARTS if heart != b"h3"])
    outcome = pure.replayed(live.data, rules)
    assert [(f.heart, f.at, f.cause) for f in outcome.failures] == [
        (b"h3", 5.5, Cause.DISCONNECTED)
    ]
    assert outcome.failures == live.failures
    assert outcome.beats == live.beats == 10


# -- a replay makes the live verdicts again ---------------------------------------------------

#: what a heart does in a round: answer the current ping, the previous one (late), the next one
#: (published before the beat), or nothing; or its connection closes (it answers again on a
#: new one, when it next answers), after a message that came in on it once closed, or after it
#: said it leaves (stopped cleanly)
DOINGS = ["answer", "answer", "late", "ahead", "silent", "silent", "close", "leftover", "leave"]
DOINGS += ["leave after"]  # its leave read after its connection's close
#: what the monitor does in a round: beat on time, late, late from a stall (unjudged), or hear
#: nobody (its own corner of the network gone quiet: a mass silence)
MONITOR = ["beat", "beat", "beat", "late", "stall", "deaf"]


def _stretches(kinds: list[str], longest: int) -> st.SearchStrategy[list[str]]:
    """Rounds of ``kinds``, in stretches of up to ``longest`` rounds of one kind: silences
    long enough to fail a heart, and returns after them."""
    return st.lists(
        st.tuples(st.sampled_from(kinds), st.integers(1, longest)), min_size=2, max_size=10
    ).map(lambda stretches: [kind for kind, length in stretches for _ in range(length)])


@st.composite
def scenarios(
    draw: st.DrawFn, monitor_doings: list[str] = MONITOR
) -> tuple[list[str], dict[bytes, tuple[int, list[str]]]]:
    """A monitor's rounds, and each heart's round trip (ms) and rounds."""
    monitor = draw(_stretches(monitor_doings, 3))
    rounds = max(len(monitor), draw(st.integers(10, 30)))
    monitor += ["beat"] * (rounds - len(monitor))
    hearts = {}
    for n in range(draw(st.integers(2, 6))):
        doings = draw(_stretches(DOINGS, 5))[:rounds]
        hearts[b"h%d" % n] = (
            draw(st.integers(1, 400)),
            doings + ["silent"] * (rounds - len(doings)),
        )
    return monitor, hearts


RULES_REPLAYED = [
    Rules(),
    Rules(max_misses=2, fail_on_disconnect=True),
    Rules(phi=PhiAccrual(3.0), mass_silence=None),
    Rules(mass_silence=MassSilence(min_hearts=2, hold=2)),
    Rules(max_misses=0, max_hearts=4, mass_silence=MassSilence(share=0.25, min_hearts=1, hold=1)),
    # closes a few seconds after a heart's last answer are timeouts, and amend certificates
    Rules(fail_on_disconnect=True, transport_timeout=3.0),
]


def _some(name: str, things: object) -> None:
    event(f"{name}: {'some' if things else 'none'}")


def _play(scenario, rules: Rules) -> Live:
    """A recorded ledger that lived through ``scenario``. A heart echoes each ping once at
    most, as a real one does: the first of its doings that would echo a ping does."""
    monitor, hearts = scenario
    live = Live(rules)
    echoed: dict[bytes, set[int]] = {heart: set() for heart in hearts}

    def echo(heart: bytes, ping: int, at_ms: int, which: str) -> None:
        if ping >= 0 and ping not in echoed[heart]:
            echoed[heart].add(ping)
            live.answer(heart, at_ms / 1000, echo=which)

    tic = 0  # ms, so that the recording's microseconds keep every time exactly
    for k, doing in enumerate(monitor):  # round k closes ping k
        due = tic + 1000
        lag = {"late": 300, "stall": 2500}.get(doing, 0)
        after = []  # what arrives after every heart's close of the round: time runs forward
        for heart, (rtt, doings) in hearts.items():
            if doing == "deaf":
                continue
            what = doings[k]
            if what == "answer":
                echo(heart, k, tic + rtt, "current")
            elif what == "late":
                echo(heart, k - 1, tic + 1 + rtt // 4, "previous")
            elif what in ("close", "leftover", "leave", "leave after"):
                fd = live.fds.get(heart, -1)
                if what == "leave":
                    pure.leave(live.ledger, heart, (tic + 500) / 1000, fd)
                live.close(heart, (tic + 500) / 1000)
                if what == "leave after":
                    after.append((heart, (LEAVE, fd)))
                if what == "leftover":
                    after.append((heart, ()))
        for heart, leftover in after:
            pure.leftover(live.ledger, heart, (tic + 501) / 1000, *leftover)
        pure.publish(live.ledger, due / 1000)
        for heart, (_, doings) in hearts.items():
            if doings[k] == "ahead" and doing != "deaf":
                echo(heart, k + 1, due, "upcoming")
        tic = due + lag
        # a CPU share a recording keeps exactly (it keeps 254ths), or none measured
        cpu_share = None if k % 3 == 2 else (k * 37 % 255) / 254
        live.beat(tic / 1000, judge=doing != "stall", lag=lag / 1000, cpu_share=cpu_share)
    return live


@settings(max_examples=pure.examples(60), deadline=None)
@given(scenarios(), st.sampled_from(RULES_REPLAYED))
def test_a_replay_makes_the_recorded_verdicts_again(scenario, rules):
    """A recording replayed under its own rules makes every failure (its certificate to the
    last field) and every false failure the live ledger made, in order. The scenarios are
    rounds of answers, silences, closed connections, stalls and mass silences, so that most
    have failures to make again: ``--hypothesis-show-statistics`` says how many."""
    monitor, _ = scenario
    live = _play(scenario, rules)
    outcome = pure.replayed(live.data, rules)
    _some("failures", live.failures)
    _some("false failures", live.false_failures)
    _some("disconnections", [f for f in live.failures if f.cause is Cause.DISCONNECTED])
    _some("leaves", [f for f in live.failures if f.cause is Cause.LEFT])
    _some("held", pure.counters(live.ledger).held_hearts)
    _some("timed out", [f for f in live.failures if f.timed_out])
    assert outcome.failures == live.failures
    assert outcome.false_failures == live.false_failures
    assert outcome.beats == live.beats == len(monitor)
    assert outcome.exposure == pytest.approx(live.exposure)
    assert outcome.most_hearts == live.most_hearts


def test_a_replay_skips_what_comes_before_a_start():
    """Events before the first START (the tail of a segment) are skipped, and the segments
    after it replay in full."""
    first, second = Live(Rules()), Live(Rules())
    _steadily(first, range(5))
    _steadily(second, range(5), HEARTS[:3])
    for heart in HEARTS[:3]:
        second.answer(heart, 5.01)
    second.beat(6.0)
    second.beat(7.0)
    second.beat(8.0)  # h0..h2 answered until 5 s: failed at 7 s (two misses)
    tail = [event for event in pure.inputs(first.data) if not isinstance(event, Started)]
    outcome = pure.replayed(tail + pure.inputs(second.data), Rules())
    assert outcome == pure.replayed(second.data, Rules())
    assert [(f.heart, f.at) for f in outcome.failures] == [(h, 8.0) for h in HEARTS[:3]]
    assert outcome.beats == second.beats == 8


def test_a_replay_keeps_each_answers_key_and_so_tells_a_spoofed_one():
    """With CURVE, an identity is bound to the first key that answers for it: another key's
    answers under it are spoofed, and keep no heart alive, in the replay as they did live."""
    live = Live(Rules())
    for k in range(6):  # from 3 s, h1 is silent, and an impostor answers under its name
        live.answer(b"h0", k + 0.01, key="h0")
        live.answer(b"h1", k + 0.02, key="h1" if k < 3 else "impostor")
        live.beat(k + 1.0)
    assert [(f.heart, f.at) for f in live.failures] == [(b"h1", 5.0)]
    assert pure.replayed(live.data, Rules()).failures == live.failures


def test_a_replay_keeps_each_leaves_connection_and_key_and_so_tells_a_spoofed_one():
    """A leave is recorded with its connection and key: one under another key than its
    identity's, or on another connection than its own, is spoofed again in the replay; the
    others fail their hearts as they did live, and their closes fail nobody."""
    rules = Rules(fail_on_disconnect=True)
    live = Live(rules)
    for heart in (b"h0", b"h1"):
        live.answer(heart, 0.01, key=heart.decode())
    live.answer(b"h2", 0.01)
    live.beat(1.0)
    fd0, fd1 = live.fds[b"h0"], live.fds[b"h1"]
    kinds = [
        pure.leave(live.ledger, b"h0", 1.1, fd0, key="h1").kind,  # another key
        pure.leave(live.ledger, b"h1", 1.2, fd0, key="h1").kind,  # another connection
        pure.leave(live.ledger, b"h1", 1.3, fd1, key="h1").kind,
        pure.leave(live.ledger, b"h2", 1.4).kind,  # on a connection the driver could not name
    ]
    assert kinds == [PongKind.SPOOFED, PongKind.SPOOFED, PongKind.LEFT, PongKind.LEFT]
    for heart in (b"h1", b"h2"):
        live.close(heart, 1.5)
    live.beat(2.0)
    assert [e for e in pure.inputs(live.data) if isinstance(e, Left)] == [
        Left(1.1, b"h0", fd0, "h1"), Left(1.2, b"h1", fd0, "h1"), Left(1.3, b"h1", fd1, "h1"),
        Left(1.4, b"h2", -1, None),
    ]  # fmt: skip
    assert [(f.heart, f.cause) for f in live.failures] == [(b"h1", Cause.LEFT), (b"h2", Cause.LEFT)]
    outcome = pure.replayed(live.data, rules)
    assert outcome.failures == live.failures
    # and at another period, when they left, as left (h0, silent, fails later)
    resampled = pure.replayed(resample(pure.inputs(live.data), 500), rules)
    assert [(f.heart, f.cause, f.at) for f in resampled.failures[:2]] == [
        (b"h1", Cause.LEFT, 1.3), (b"h2", Cause.LEFT, 1.4),
    ]  # fmt: skip


def test_a_replay_ties_a_heart_to_its_newest_connection_by_when_it_was_accepted():
    """Two connections of one heart accepted before it answers on either (a reconnection the
    ROUTER handed over): an answer on the older one does not tie the heart back to it, so
    the newer one's close fails it, in the replay as live."""
    rules = Rules(fail_on_disconnect=True)
    live = Live(rules)
    pure.connect(live.ledger, 10, 0.0)
    pure.connect(live.ledger, 11, 0.001)
    pure.answer(live.ledger, b"h0", 0.01, fd=11)
    live.beat(1.0)
    pure.answer(live.ledger, b"h0", 1.01, fd=10)  # queued on the older connection
    live.beat(2.0)
    pure.close(live.ledger, 11, 2.5)
    live.beat(3.0)
    assert [(f.heart, f.at, f.cause) for f in live.failures] == [(b"h0", 2.5, Cause.DISCONNECTED)]
    assert pure.replayed(live.data, rules).failures == live.failures


@settings(max_examples=pure.examples(40), deadline=None)
@given(
    scenarios(["beat", "beat", "deaf"]), st.sampled_from(RULES_REPLAYED[:2] + RULES_REPLAYED[3:])
)
def test_made_up_again_at_its_own_period_a_recording_fails_the_same_hearts(scenario, rules):
    """Resampled at the period it was recorded at, a recording with no late beat gets every
    answer again at the same time (on the same ping, or late on the one before), so its
    replay fails the same hearts on the same beats, for the same causes, and makes the same
    false failures. (Phi is left out: a made-up round trip may differ in its last bit.)"""
    live = _play(scenario, rules)
    outcome = pure.replayed(resample(pure.inputs(live.data), 1000), rules)
    _some("failures", live.failures)

    def verdicts(failures):
        return [(f.heart, f.beat, f.cause, round(f.at, 6), f.misses, f.lag) for f in failures]

    assert verdicts(outcome.failures) == verdicts(live.failures)
    assert [(m.heart, m.failure.beat) for m in outcome.false_failures] == [
        (m.heart, m.failure.beat) for m in live.false_failures
    ]
    assert outcome.beats == live.beats


def test_answers_more_than_a_ping_late_at_the_new_period_are_stale():
    """h9 answers each ping 1.9 s after it: late, at 1 s, and known; at 500 ms it answers
    four pings later, a stale answer, and is never known. h8's answers echo no ping at all
    (stale at any period), and the rest of the recording after them is made up as well."""
    live = Live(Rules())
    for k in range(12):
        for heart in HEARTS[:3]:
            live.answer(heart, k + 0.01)
        if k >= 1:
            live.answer(b"h9", k + 0.9, echo="previous")
            live.answer(b"h8", k + 0.5, echo="none")
        live.beat(k + 1.0)
    for period, most in ((1000, 4), (500, 3)):
        events = resample(pure.inputs(live.data), period)
        outcome = pure.replayed(events, Rules())
        assert outcome.failures == [] and outcome.most_hearts == most
        assert pure.beats_in(events)[-1] == (12.0, True)


def test_two_segments_made_up_again_at_their_period_fail_the_same_hearts():
    first, second = Live(Rules()), Live(Rules())
    _steadily(first, range(5))
    _steadily(first, range(5, 8), HEARTS[:8])  # h8 and h9 fail at 7 s
    _steadily(second, range(4), HEARTS[:5])
    _steadily(second, range(4, 7), HEARTS[:4])  # h4 fails at 6 s
    recorded = pure.inputs(first.data) + pure.inputs(second.data)
    outcome = pure.replayed(resample(recorded, 1000), Rules())
    assert [(f.heart, f.at) for f in outcome.failures] == [
        (b"h8", 7.0),
        (b"h9", 7.0),
        (b"h4", 6.0),
    ]
    assert outcome.beats == 15


def test_a_heart_handed_over_to_a_new_connection_is_not_down_when_its_old_one_closes():
    """h0 answers on a new connection (a handover), then its old one closes: it was never
    down, so at another period it answers on, and is not failed."""
    live = Live(Rules())
    _steadily(live, range(3))
    pure.connect(live.ledger, 99, 3.005)
    live.fds[b"h0"] = 99
    _steadily(live, range(3, 5))
    pure.close(live.ledger, 10, 5.5)  # h0's first descriptor
    _steadily(live, range(5, 10))
    assert live.failures == []
    for period in (500, 2000):
        events = resample(pure.inputs(live.data), period)
        assert pure.replayed(events, Rules()).failures == []
        assert max(pure.answers_in(events, b"h0")) > 8.0


def test_deaths_of_one_heart_twice_and_of_another_are_each_noticed_as_theirs():
    """h1 crashes at 10.5 s and its restart h1~1 again at 20.5 s; h2 crashes at 15.5 s in
    between. Each crash closes the connection of the identity it killed (the restart's made-up
    one for the second), so with ``fail_on_disconnect`` each is noticed at once, and only the
    identities killed fail. A hang of h3 at 12.5 s leaves its connection up: its restart
    h3~1 dies with that connection when the recording closes it at 25.5 s."""
    live = Live(Rules())
    _steadily(live, range(25))
    live.close(b"h3", 25.5)
    _steadily(live, range(25, 30), [heart for heart in HEARTS if heart != b"h3"])
    deaths = [
        Injection(b"h1", 10.5, CRASH),
        Injection(b"h3", 12.5, HANG),
        Injection(b"h2", 15.5, CRASH),
        Injection(b"h1", 20.5, CRASH),
    ]
    dead, made = inject(pure.inputs(live.data), deaths)
    assert [(i.heart, i.at, i.kind) for i in made] == [
        (b"h1", 10.5, CRASH),
        (b"h3", 12.5, HANG),
        (b"h2", 15.5, CRASH),
        (b"h1~1", 20.5, CRASH),
    ]
    outcome = pure.replayed(dead, Rules(fail_on_disconnect=True))
    assert [(f.heart, f.at, f.cause) for f in outcome.failures] == [
        (b"h1", 10.5, Cause.DISCONNECTED),
        (b"h3", 15.0, Cause.MISSED),  # hung: two beats of silence
        (b"h2", 15.5, Cause.DISCONNECTED),
        (b"h1~1", 20.5, Cause.DISCONNECTED),
        (b"h3~1", 25.5, Cause.DISCONNECTED),
    ]
    assert detections(outcome, made, CRASH).times == (0.0, 0.0, 0.0)
    # the restarts answer under their names until they die, and the last one to the end
    for name, last in ((b"h1~1", 20.5), (b"h2~1", 30.0), (b"h1~2", 30.0), (b"h3~1", 25.0)):
        answers = pure.answers_in(dead, name)
        assert answers and last - 1.0 < max(answers) < last, name


# -- tuning: what each setting would have cost, and which to choose ---------------------------


def _result(detect: float | None, per_day: float, hearts: int = 10) -> Result:
    """A setting's result that notices every death within ``detect`` seconds (None: one went
    unnoticed), and makes ``per_day`` false failures a day for its ``hearts``."""
    noticed = Detection((1.0, detect), 0) if detect is not None else Detection((1.0,), 1)
    mistakes = FalseFailureRate(1, DAY * hearts / per_day, (0.5,), hearts) if per_day else None
    return Result(
        Setting(1000, Rules()),
        hang=noticed,
        crash=noticed,
        crash_on_disconnect=Detection((0.0,), 0),
        false_failures=mistakes or FalseFailureRate(0, DAY * hearts, (), hearts),
    )


def test_the_choice_when_no_setting_meets_both_targets():
    fast, slow, between, fastest = (
        _result(2.0, 10.0),
        _result(8.0, 0.5),
        _result(4.0, 3.0),
        _result(2.5, 20.0),
    )
    results = [fast, slow, between, fastest]
    # 3 s and one a day: the closest misses the detection target by least (8/3 < 3/1)
    choice = choose(results, Targets(detect=3.0, false_failures=1.0))
    assert choice.chosen is None and choice.closest is slow and choice.misses == "detect"
    assert choice.fastest_quiet is slow and choice.quietest_fast is fast
    # 10 s and a tenth a day: every one is fast and none quiet; the closest is the quietest
    choice = choose(results, Targets(detect=10.0, false_failures=0.1))
    assert choice.closest is slow and choice.misses == "false_failures"
    assert choice.fastest_quiet is None and choice.quietest_fast is slow
    # no detection target, and no false failure allowed: none is quiet
    choice = choose(results, Targets(false_failures=0.0))
    assert choice.chosen is None and choice.misses == "false_failures"
    assert choice.closest is fast  # every ratio is infinite: the first
    # a quiet one meets a target of none; without a false-failure target, the fastest wins
    assert (
        choose(
            [*results, _result(9.0, 0.0)], Targets(false_failures=0.0)
        ).chosen.false_failures.count
        == 0
    )
    assert choose(results, Targets(detect=3.0)).chosen is fast
    unnoticed = _result(None, 0.0)
    assert choose([unnoticed], Targets(detect=3.0, false_failures=1.0)).misses == "detect"


def test_a_results_detection_and_false_failure_rate():
    result = _result(4.0, 5.0, hearts=10)
    assert result.detect() == 4.0
    # the slowest of the two; the crash's own (a setting with fail_on_disconnect has it as
    # its crash detection; crash_on_disconnect only says what that would be)
    assert attrs.evolve(result, crash=Detection((1.0, 9.0), 0)).detect() == 9.0
    assert attrs.evolve(result, crash_on_disconnect=Detection((9.0,), 0)).detect() == 4.0
    assert attrs.evolve(result, crash=Detection((), 1)).detect() is None
    none = Detection((), 0)
    assert attrs.evolve(result, hang=none, crash=none).detect() is None
    assert attrs.evolve(result, hang=none).detect() is None  # no hang to notice
    mistakes = result.false_failures
    assert mistakes.per_day(False) == pytest.approx(5.0)
    assert mistakes.per_day(True) == pytest.approx(0.5)
    assert [round(poisson_upper(n), 4) for n in (0, 1, 2, 10)] == [3.0, 4.7284, 6.2847, 16.9588]
    assert mistakes.per_heart_day_bound == pytest.approx(poisson_upper(1) / 2)  # 2 heart-days


def test_a_grid_of_settings():
    base = Rules(fail_on_disconnect=True, phi=PhiAccrual(min_std_deviation=0.3))
    settings_ = grid(
        500,
        max_misses=[1, 3],
        phi=[8.0],
        phi_pauses=[0.0, 0.2],
        silences=[None, MassSilence(share=0.6, hold=2)],
        base=base,
    )
    phi = PhiAccrual(8.0, 0.3)
    assert [(s.period, s.rules) for s in settings_] == [
        (500, attrs.evolve(Rules(), mass_silence=silence, **rule))
        for silence in (None, MassSilence(share=0.6, hold=2))
        for rule in (
            {"max_misses": 1},
            {"max_misses": 3},
            {"phi": phi},
            {"phi": attrs.evolve(phi, acceptable_pause=0.2)},
        )
    ]
    assert all(
        s.rules.fail_on_disconnect
        for s in grid(500, max_misses=[1], fail_on_disconnect=True, base=base)
    )
    assert [(s.rule, s.silence) for s in settings_[:4]] == [
        ("misses=1", "off"),
        ("misses=3", "off"),
        ("phi=8 pause=0ms", "off"),
        ("phi=8 pause=200ms", "off"),
    ]
    assert all(s.period == 500 and not s.rules.fail_on_disconnect for s in settings_)
    assert [s.rules.phi for s in settings_[:2]] == [None, None]
    assert settings_[3].rules.phi == PhiAccrual(8.0, 0.3, 0.2)
    assert settings_[4].rules.mass_silence == MassSilence(share=0.6, hold=2)
    (plain,) = grid(1000, phi=[5.0], base=Rules())
    assert plain.rules.phi == PhiAccrual(5.0) and plain.rules.mass_silence == MassSilence()


def test_a_tape_at_another_period_is_made_up_and_its_crash_detection_kept():
    data, _ = steady(Rules(), 40)
    events = read(data).inputs
    deaths = [Injection(b"h1", 10.5, HANG), Injection(b"h2", 12.5, CRASH)]
    same = tape(events, 1000, 1000, deaths, Rules())
    other = tape(events, 1000, 2000, deaths, Rules())
    assert same.clean is events and same.period == 1000
    assert other.clean == resample(events, 2000) and other.period == 2000
    assert other.dead == inject(other.clean, deaths)[0]
    first = evaluate(Setting(2000, Rules(max_misses=1)), other)
    assert first.crash_on_disconnect.times == (0.0,)  # fail_on_disconnect notices it at once
    assert first.crash.times and first.crash.times[0] > 0
    again = evaluate(Setting(2000, Rules(max_misses=4)), other)
    assert again.crash_on_disconnect is first.crash_on_disconnect  # measured once a tape


def test_a_plan_of_deaths_picks_live_hearts_within_the_load():
    """Deaths at seeded moments from ``warmup`` in to ``tail`` before the load ends (when half
    the hearts had answered for the last time), alternately hangs and crashes, each of a
    distinct heart that answered within ``within`` before and after its moment."""
    live = Live(Rules())
    _steadily(live, range(30))
    _steadily(live, range(30, 60), HEARTS[:4])  # six of ten leave at 30 s: the load ends
    events = pure.inputs(live.data)
    deaths = plan(events, 6, seed=3, warmup=5.0, tail=4.0, within=1.0)
    assert len(deaths) == 6 and len({death.heart for death in deaths}) == 6
    assert sorted(death.kind for death in deaths) == [CRASH] * 3 + [HANG] * 3
    assert [death.at for death in deaths] == sorted(death.at for death in deaths)
    assert all(5.0 <= death.at <= 29.01 - 4.0 for death in deaths)
    assert plan(events, 6, seed=3, warmup=5.0, tail=4.0, within=1.0) == deaths
    assert plan(events, 6, seed=4, warmup=5.0, tail=4.0, within=1.0) != deaths
    many = plan(events, 14, seed=3, warmup=5.0, tail=4.0, within=1.0)
    assert len(many) == 14 and len({death.heart for death in many}) == 10  # then again
    # a heart is only killed where it answered just before and just after
    silent = {b"h0": set(range(10, 20))}
    data, _ = steady(Rules(), 30, silent)
    gappy = read(data).inputs
    deaths = plan(gappy, 10, seed=1, warmup=2.0, tail=2.0, within=0.6)
    assert len(deaths) == 10
    for death in deaths:  # answers come 1 s apart: 0.6 s either side of one of them
        assert 0.4 <= death.at % 1.0 <= 0.61, death
        assert not (death.heart == b"h0" and 9.0 < death.at < 20.0)
    # the defaults: the seed 0, from 5 s in to 10 s before the end, answers within 1 s
    assert plan(events, 4) == plan(events, 4, seed=0, warmup=5.0, tail=10.0, within=1.0)
    assert plan(events, 4, seed=0, warmup=5.0, tail=10.0, within=1.0) != plan(
        events, 4, seed=1, warmup=6.0, tail=11.0, within=2.0
    )
    assert plan(gappy, 3, seed=1, warmup=20.0, tail=20.0) == []  # no room
    assert plan([], 3) == [] and plan(gappy[:1], 3) == []
    assert plan_deaths(gappy, 4, 7, 3.0, 1000) == plan(
        gappy, 4, seed=7, warmup=3.0, tail=3.0, within=1.5
    )
    assert plan_deaths([], 4, 7, 3.0, 1000) == []


def test_a_result_as_json():
    result = _result(4.0, 5.0)
    assert result.as_json() == {
        "period_ms": 1000,
        "rule": "misses=1",
        "mass_silence": "0.5/5",
        # the median of two is the lower: the one percentile (nearest rank) says so
        "hang": {"median_s": 1.0, "worst_s": 4.0, "deaths": 2, "missed": 0},
        "crash": {"median_s": 1.0, "worst_s": 4.0, "deaths": 2, "missed": 0},
        "crash_fail_on_disconnect": {"median_s": 0.0, "worst_s": 0.0, "deaths": 1, "missed": 0},
        "false_failures": 1,
        "false_failures_per_heart_day": 0.5,
        "false_failures_per_heart_day_95": round(poisson_upper(1) / 2, 4),
        "false_failure_median_s": 0.5,
        "false_failure_max_s": 0.5,
    }
    unnoticed = _result(None, 0.0).as_json()
    assert unnoticed["hang"] == {"median_s": 1.0, "worst_s": None, "deaths": 2, "missed": 1}
    assert unnoticed["false_failure_median_s"] is None
    assert unnoticed["false_failure_max_s"] is None
    assert unnoticed["false_failures_per_heart_day"] == 0.0
    empty = attrs.evolve(_result(1.0, 0.0), false_failures=FalseFailureRate(0, 0.0, (), 10))
    assert empty.as_json()["false_failures_per_heart_day"] is None  # no exposure: infinite


def test_an_outcome_names_each_hearts_first_failure():
    data, _ = steady(Rules(), 60, PAUSES)
    outcome = replay(read(data).inputs, Rules(max_misses=1))
    first = outcome.failure_of(b"h3")
    assert first is outcome.failures[0] and first.heart == b"h3"
    assert outcome.failure_of(b"h0") is None


def test_the_choice_at_its_edges():
    fast = _result(2.0, 3.0)
    # a detection exactly on target is fast enough; a rate is per heart when asked
    assert choose([fast], Targets(detect=2.0)).chosen is fast
    assert choose([fast], Targets(false_failures=0.5, per_heart=True)).chosen is fast
    assert choose([fast], Targets(false_failures=0.5)).chosen is None
    # a crash is noticed as the setting's own rules notice it
    slow_crash = attrs.evolve(_result(2.0, 0.0), crash=Detection((9.0,), 0))
    assert choose([slow_crash], Targets(detect=3.0)).chosen is None
    # which target the closest misses: on target for detection, it is the false failures
    assert choose([fast], Targets(detect=2.0, false_failures=1.0)).misses == "false_failures"
    assert choose([_result(3.0, 3.0)], Targets(detect=2.0, false_failures=1.0)).misses == ("detect")
    # no false failure allowed: a quiet but slow setting is closer than a fast noisy one
    quiet = _result(5.0, 0.0)
    choice = choose([fast, quiet], Targets(detect=1.0, false_failures=0.0))
    assert choice.closest is quiet and choice.misses == "detect"
    # a detection target alone, met by none: the closest is the fastest
    choice = choose([quiet, _result(3.0, 1.0)], Targets(detect=1.0))
    assert choice.closest.detect() == 3.0 and choice.misses == "detect"
    assert choose([], Targets(detect=1.0, false_failures=1.0)) == Choice(None)


def test_an_evaluation_counts_the_false_failures_and_how_long_each_lasted():
    data, _ = steady(Rules(), 60, PAUSES)
    made = tape(read(data).inputs, 1000, 1000, [Injection(b"h1", 20.5, HANG)], Rules())
    mistakes = evaluate(Setting(1000, Rules(max_misses=1)), made).false_failures
    assert mistakes.count == 3 and mistakes.hearts == 10
    assert mistakes.durations == pytest.approx((0.01, 1.01, 3.01))
    assert mistakes.exposure == pytest.approx(10 * 59.0 - 7.0)  # less 7 s h3 was failed for


def test_detections_count_each_death_noticed_or_missed():
    def failed(heart: bytes, at: float) -> Failure:
        return Failure(heart, Cause.MISSED, at, 1, 2, None, None, None, None, None, 0.0, None, 1)

    made = [
        Injection(b"x", 1.0, HANG),
        Injection(b"y", 2.0, HANG),
        Injection(b"z", 3.0, HANG),
        Injection(b"w", 3.0, CRASH),
    ]
    outcome = Replayed(failures=[failed(b"x", 0.5), failed(b"x", 4.0), failed(b"y", 1.5)])
    # x failed before its death (a flap) and 3 s after; y only before; z never
    assert detections(outcome, made, HANG) == Detection((3.0,), 2)
    assert detections(Replayed(), made, HANG) == Detection((), 3)
    assert detections(Replayed(), made, CRASH) == Detection((), 1)


# -- observing a ledger -----------------------------------------------------------------------


def test_an_observed_ledger_hands_over_each_input_first_what_brings_a_new_one_to_its_round():
    ledger = pure.ledger()
    pure.answer(ledger, b"a", 0.01, key="A")
    pure.beat(ledger, 1.0)
    pure.answer(ledger, b"a", 1.02, key="A")  # read before the observer came
    seen: list = []
    ledger.observe(seen.append)
    assert seen == [Started(1.0), Echoed(1.02, b"a", Echo.CURRENT, "A")]
    ledger.accepted(7, 1.03)
    ledger.tie(b"a", 7, 1.04)
    ledger.stale(b"z", 1.05)
    ledger.malformed(b"", 1.06)
    ledger.pong(b"b", ledger.ping, 1.07)
    ledger.publish(1.5)
    ledger.publish(1.6)  # opened once: said once
    ledger.closed(7, 1.8)
    ledger.beat(2.0, judge=False, lag=0.1, cpu_share=0.25)
    assert seen[2:] == [
        ConnectionAccepted(1.03, 7),
        ConnectionTied(1.04, b"a", 7),
        Stale(1.05, b"z"),
        Malformed(1.06),
        Echoed(1.07, b"b", Echo.CURRENT),
        RoundOpened(1.5),
        ConnectionClosed(1.8, 7),
        RoundClosed(2.0, False, 0.1, 0.25),
    ]
    ledger.observe(None)
    pure.beat(ledger, 3.0)
    assert len(seen) == 10  # no longer observed


@pytest.mark.parametrize("within", ["published", "late", "bad"])
def test_a_ledger_is_observed_from_a_rounds_start_only(within):
    ledger = pure.ledger()
    pure.beat(ledger, 1.0)
    if within == "published":
        pure.publish(ledger, 2.0)
    elif within == "late":
        pure.answer(ledger, b"a", 1.1, echo="previous")
    else:
        ledger.malformed(b"", 1.1)
    with pytest.raises(RuntimeError, match="round's start"):
        ledger.observe([].append)
    ledger.observe(None)  # and stopping is always allowed


def test_a_writer_takes_only_a_ledgers_inputs():
    writer = Writer(Header(period=1000.0, rules=Rules(), origin=0.0))
    with pytest.raises(TypeError, match="not a ledger's input"):
        writer.write("beat")  # type: ignore[arg-type]

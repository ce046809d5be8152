"""Transport liveness in the core: the keepalive a timeout asks for, and what a closed
connection says of its hearts (crashed, or unreachable) by when it closed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.core.failures import Cause, Diagnosis
from greenheart.core.ledger import Ledger, Rules
from greenheart.core.transport import MIN_TRANSPORT_TIMEOUT, SLACK, Keepalive
from tests import pure

pytestmark = pytest.mark.pure

TIMEOUTS = st.floats(MIN_TRANSPORT_TIMEOUT, 3600.0)


@given(TIMEOUTS)
def test_the_keepalive_probes_before_the_timeout_and_closes_within_its_bound(timeout):
    keepalive = Keepalive(timeout)
    assert 1 <= keepalive.idle < timeout and keepalive.interval >= 1
    # were the user timeout ignored, the probes alone would not close it any sooner
    assert keepalive.idle + keepalive.interval * (keepalive.count - 1) >= timeout
    assert keepalive.user_timeout_ms == round(timeout * 1000)
    assert timeout < keepalive.bound <= timeout + max(1, timeout / 10)


@given(TIMEOUTS, st.floats(0.0, 7200.0))
def test_a_close_is_a_timeout_only_in_the_kernels_window(timeout, silence):
    keepalive = Keepalive(timeout)
    inside = timeout - SLACK <= silence <= keepalive.bound + SLACK
    assert keepalive.timed_out(silence) is inside
    assert not keepalive.timed_out(None)  # it never answered: nothing to time


@pytest.mark.parametrize("timeout", [0, 2.9, -1, float("inf"), float("nan")])
def test_a_timeout_too_short_for_keepalive_is_refused(timeout):
    with pytest.raises(ValueError, match="at least 3 s"):
        Rules(transport_timeout=timeout)


PERIOD = 1.0
TIMEOUT = 5.0


def _ledger(**settings: object) -> Ledger:
    """Hearts h0 and h1, each on its own connection (descriptors 10, 11), answering at 1, 2
    and 3 s."""
    ledger = pure.ledger(Rules(transport_timeout=TIMEOUT, mass_silence=None, **settings))
    for n in range(2):
        pure.connect(ledger, 10 + n, 0.0)
        ledger.tie(b"h%d" % n, 10 + n, 0.0)
    for now in (1.0, 2.0, 3.0):
        for heart in (b"h0", b"h1"):
            ledger.pong(heart, ledger.ping, now - 0.99)
        ledger.beat(now)
    assert ledger.hearts == {b"h0", b"h1"}
    return ledger


@given(st.floats(0.0, 20.0), st.booleans())
def test_a_connection_closed_in_the_window_is_unreachable_not_crashed(silence, at_once):
    """h0 last answered at 2.01 s; its connection closes ``silence`` s later. A close the
    kernel's timeout explains leaves it down and unreachable, even with fail_on_disconnect
    (a timeout may be the monitor's own link); another is its peer's, a crash."""
    ledger = _ledger(fail_on_disconnect=at_once, max_misses=100)
    last = 2.01
    failures = ledger.closed(10, last + silence)
    timed_out = Keepalive(TIMEOUT).timed_out(silence)
    assert ledger.connections.timed_out(b"h0") is timed_out
    if at_once and not timed_out:
        (failure,) = failures
        assert failure.diagnosis is Diagnosis.CRASHED and not failure.timed_out
    else:
        assert failures == () and b"h0" in ledger.hearts
        assert ledger.connections.is_down(b"h0")


def test_a_heart_down_by_a_timeout_fails_by_its_misses_as_unreachable():
    ledger = _ledger(max_misses=3)
    ledger.closed(10, 2.01 + TIMEOUT)  # in the window
    now = 3.0
    while b"h0" in ledger.hearts:
        now += PERIOD
        ledger.pong(b"h1", ledger.ping, now - 0.99)
        beat = ledger.beat(now)
    (failure,) = beat.failures
    assert failure.cause is Cause.MISSED and failure.timed_out and failure.connected is False
    assert failure.diagnosis is Diagnosis.UNREACHABLE
    assert "connection timed out" in failure.describe()
    assert ledger.counters.diagnosed(Diagnosis.UNREACHABLE) == 1


@given(st.floats(0.0, 20.0))
def test_a_hung_hearts_certificate_is_amended_when_its_connection_goes(after):
    """h0 fails by its misses, its connection up: hung. When the connection closes, its
    certificate stops saying it is up; if the close was a timeout, the next beat lists it as
    unreachable, once."""
    ledger = _ledger(max_misses=1)
    for now in (4.0, 5.0):
        ledger.pong(b"h1", ledger.ping, now - 0.99)
        beat = ledger.beat(now)
    (failure,) = beat.failures
    assert failure.diagnosis is Diagnosis.HUNG and failure.connected is True
    closed_at = failure.at + after
    assert ledger.closed(10, closed_at) == ()
    timed_out = Keepalive(TIMEOUT).timed_out(closed_at - failure.last_answer)
    (amended,) = [f for f in ledger.failures if f.heart == b"h0"]
    assert amended.connected is False and amended.timed_out is timed_out
    assert amended.diagnosis is (Diagnosis.UNREACHABLE if timed_out else Diagnosis.CRASHED)
    assert ledger.amended == (amended,)
    beat = ledger.beat(closed_at + PERIOD)
    assert beat.amended == (amended,) and beat.unreachable == ((amended,) if timed_out else ())
    assert ledger.counters.found_unreachable == int(timed_out)
    assert ledger.closed(10, closed_at + 1) == () and ledger.beat(closed_at + 2).amended == ()

"""The connection book, driven as the monitor drives it, against a model of the kernel's
descriptors: a closed connection names only the hearts that died with it."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from greenheart.core.connections import ConnectionBook, backlog_is_short, listen_address
from tests import pure


@pytest.mark.parametrize(
    "backlog, endpoint, short",
    [
        (100, "tcp://127.0.0.1:5555", True),
        (100, "ipc:///tmp/pongs", True),
        (4096, "tcp://127.0.0.1:5555", False),
        (100, "inproc://pongs", False),  # no listener, no queue
        (100, "", False),  # not bound yet
    ],
)
def test_a_listen_backlog_is_short_only_where_connections_queue(backlog, endpoint, short):
    assert backlog_is_short(backlog, endpoint, 4096) is short


@pytest.mark.parametrize(
    "endpoint, address",
    [
        ("tcp://127.0.0.1:5555", ("127.0.0.1", 5555)),
        ("tcp://[::1]:5555", ("::1", 5555)),
        ("tcp://MAX:5555", ("MAX", 5555)),  # only the brackets of an IPv6 address go
        ("ipc:///tmp/odd://name", "/tmp/odd://name"),  # the first :// ends the transport
        ("ipc:///tmp/pongs", "/tmp/pongs"),
        ("ipc://@pongs", None),  # abstract: no path to match
        ("inproc://pongs", None),
        ("tcp://127.0.0.1:*", None),
        ("", None),
    ],
)
def test_a_listeners_address_is_read_from_its_endpoint(endpoint, address):
    assert listen_address(endpoint) == address


def test_a_closed_connection_names_the_hearts_tied_to_it():
    book = ConnectionBook()
    book.accepted(7)
    book.answered(b"a", 7)
    assert book.tied(b"a", 7) and not book.tied(b"a", 8)
    assert book.closed(7) == (b"a",)
    assert book.closed(7) == () and len(book) == 0


def test_a_descriptor_reused_by_another_heart_never_fails_it():
    book = ConnectionBook()
    book.accepted(7)
    book.answered(b"a", 7)
    # a's connection closes and b's takes its descriptor; b's first answer is read before
    # the monitor read those events, so it hands them in first (b is not tied to 7)
    assert not book.tied(b"b", 7)
    assert book.closed(7) == (b"a",)
    book.accepted(7)
    book.answered(b"b", 7)
    assert book.closed(7) == (b"b",)


def test_the_heart_a_handover_moved_is_not_failed_for_its_old_connection():
    book = ConnectionBook()
    book.accepted(7)
    book.answered(b"a", 7)
    book.accepted(9)  # a connects again under its identity; the ROUTER hands it over
    book.answered(b"a", 9)
    book.answered(b"a", 7)  # a message the old connection had queued: it ties nothing back
    assert book.closed(7) == ()
    assert book.closed(9) == (b"a",)


def test_a_heart_that_reconnects_on_its_own_descriptor_fails_once_then_is_tied_anew():
    book = ConnectionBook()
    book.accepted(7)
    book.answered(b"a", 7)
    assert book.tied(b"a", 7)  # its new connection's answer takes the fast path...
    assert book.closed(7) == (b"a",)  # ...so the old one's close fails it, once
    book.accepted(7)
    book.answered(b"a", 7)
    assert book.tied(b"a", 7) and len(book) == 1


def test_a_closed_descriptor_is_gone_until_a_connection_is_accepted_on_it():
    book = ConnectionBook()
    book.accepted(3)
    book.answered(b"a", 3)
    assert not book.gone(3)
    book.closed(3)
    assert book.gone(3) and book.serial_of(b"a") is None
    book.accepted(3)
    assert not book.gone(3)


def test_a_known_heart_is_down_from_its_close_until_it_answers_on_another_or_fails():
    book = ConnectionBook()
    for fd, heart in ((3, b"a"), (4, b"b")):
        book.accepted(fd)
        book.answered(heart, fd)
    book.answered(b"stranger", 3)
    assert book.closed(3, known={b"a", b"b"}) == (b"a", b"stranger")
    assert book.is_down(b"a") and not book.is_down(b"stranger")  # only known hearts are down
    assert (book.connected(b"a"), book.connected(b"b"), book.connected(b"x")) == (False, True, None)
    assert book.down_count == 1
    book.accepted(5)
    book.answered(b"a", 5)  # back on a connection of its own
    assert not book.is_down(b"a") and book.connected(b"a") and book.down_count == 0
    book.closed(5, known={b"a"})
    book.failed(b"a")  # failed while down: the book knows nothing of it now
    assert (book.is_down(b"a"), book.connected(b"a"), book.down_count) == (False, None, 0)
    book.failed(b"b")  # failed while tied: it stays tied, so that its return can be told
    assert book.connected(b"b") and book.tied(b"b", 4)


@attrs.define(eq=False)
class Connection:
    heart: bytes
    fd: int
    open: bool = True
    answered: bool = False


HEARTS = [b"a", b"b", b"c"]


class BookMachine(RuleBasedStateMachine):
    """Connections open and close with the kernel's descriptor numbers (lowest free first);
    events queue up until the monitor reads them, as the socket monitor's do."""

    def __init__(self) -> None:
        super().__init__()
        self.book = ConnectionBook()
        self.connections: list[Connection] = []
        self.events: list[tuple[str, int]] = []

    def free_fd(self) -> int:
        used = {c.fd for c in self.connections if c.open}
        return next(fd for fd in range(10, 100) if fd not in used)

    def hand_in_events(self) -> None:
        events, self.events = self.events, []
        for kind, fd in events:
            if kind == "accepted":
                self.book.accepted(fd)
            else:
                for heart in self.book.closed(fd):
                    self.check_failure(heart, fd)

    def check_failure(self, heart: bytes, fd: int) -> None:
        """A heart named by a closed connection is not answering on its newest connection
        (the one a ROUTER with handover hears it on; older ones only drain what they had
        queued), but where that is on the same descriptor: its own reconnection, which
        fails it once before it is heard again."""
        newest = [c for c in self.connections if c.heart == heart][-1]
        assert not (newest.open and newest.answered and newest.fd != fd), (heart, fd, newest)

    @rule(heart=st.sampled_from(HEARTS))
    def connect(self, heart):
        connection = Connection(heart, self.free_fd())
        self.connections.append(connection)
        self.events.append(("accepted", connection.fd))

    @rule(data=st.data())
    def close(self, data):
        open_ = [c for c in self.connections if c.open]
        if open_:
            connection = data.draw(st.sampled_from(open_))
            connection.open = False
            self.events.append(("closed", connection.fd))

    @rule(data=st.data(), newest=st.booleans())
    def answer(self, data, newest):
        """A message read from an open connection: its heart's newest, or an older one's
        leftover (handover stops older connections delivering anything new)."""
        open_ = [c for c in self.connections if c.open]
        if not open_:
            return
        connection = data.draw(st.sampled_from(open_))
        if newest:
            connection = [c for c in open_ if c.heart == connection.heart][-1]
            connection.answered = True
        if not self.book.tied(connection.heart, connection.fd):
            self.hand_in_events()
        self.book.answered(connection.heart, connection.fd)

    @rule(data=st.data())
    def leftover(self, data):
        """A message read from a connection that closed (libzmq delivers what it had queued),
        its descriptor not taken by another since: once every event is handed in, the book
        knows it for a closed connection's, and ties nobody to it."""
        used = {c.fd for c in self.connections if c.open}
        closed = [c for c in self.connections if not c.open and c.fd not in used]
        if not closed:
            return
        connection = data.draw(st.sampled_from(closed))
        if self.book.tied(connection.heart, connection.fd):
            return  # its close is still queued: it fails the heart when handed in
        self.hand_in_events()
        assert self.book.gone(connection.fd)
        assert self.book.serial_of(connection.heart) is None or not self.book.tied(
            connection.heart, connection.fd
        )

    @rule()
    def read_events(self):
        self.hand_in_events()

    @invariant()
    def a_heart_is_tied_to_an_open_connection_or_to_its_descriptor(self):
        self.hand_in_events()
        assert len(self.book) <= len(HEARTS)


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(
    max_examples=pure.examples(300), stateful_step_count=40, deadline=None
)


def test_a_connection_accepted_before_the_book_watched_is_numbered_at_its_first_answer():
    book = ConnectionBook()
    book.answered(b"a", 5)  # its ACCEPTED came before the socket monitor was watching
    book.accepted(6)
    book.answered(b"a", 6)  # then a newer connection: it moves there
    book.answered(b"a", 5)  # the older one's leftover ties nothing back
    assert book.fd_of == {b"a": 6}  # where a drain looks a heart's descriptor up
    assert book.closed(5) == ()
    assert book.closed(6) == (b"a",) and book.fd_of == {}


def test_a_drain_is_all_tied_when_each_heart_is_tied_to_its_own_descriptor():
    book = ConnectionBook()
    for fd, heart in ((3, b"a"), (4, b"b")):
        book.accepted(fd)
        book.answered(heart, fd)
    assert book.all_tied([b"a", b"b", b"a"], [3, 4, 3])
    assert not book.all_tied([b"a", b"b"], [3, 3])  # b on a descriptor not its own
    assert not book.all_tied([b"a", b"c"], [3, 5])  # c tied to none
    assert book.all_tied([], [])

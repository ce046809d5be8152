"""The bench's parent/child protocol: every line reads back as it was written, and a program
stops when what it runs stops."""

from __future__ import annotations

import types
import typing

import attrs
import gevent
import gevent.event
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.bench import lines
from greenheart.bench.programs.serving import serve
from greenheart.green.lifecycle import Service

KINDS = list(typing.get_args(lines.Line))


def values(kind: object) -> st.SearchStrategy:
    """Any value of ``kind`` that JSON can carry (no NaN, no infinity: no program says them)."""
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return st.one_of(*map(values, args))
    if typing.get_origin(kind) is tuple:
        return st.lists(values(args[0]), max_size=5).map(tuple)
    if isinstance(kind, type) and attrs.has(kind):
        fields = attrs.fields(attrs.resolve_types(kind))
        return st.builds(kind, **{field.name: values(field.type) for field in fields})
    return st.from_type(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS, ids=[kind.__name__ for kind in KINDS])
@given(data=st.data())
def test_every_line_reads_back_as_it_was_written(kind, data):
    line = data.draw(values(kind))
    assert lines.read(lines.write(line)) == line


def test_what_is_not_a_line_is_not_read():
    assert lines.read("greenheart monitor: listening\n") is None
    assert lines.read('{"hearts": 3}\n') is None  # JSON, but not one of the lines
    assert lines.read('{"line": "nonsense", "x": 1}\n') is None


def test_a_line_that_claims_a_kind_and_lacks_its_fields_is_an_error():
    with pytest.raises(ValueError, match="not a Ready line"):
        lines.read('{"line": "ready", "ping": "tcp://127.0.0.1:1"}\n')


@attrs.define(eq=False)
class Doomed(Service):
    """Dies of an error once told to."""

    told: gevent.event.Event = attrs.field(factory=lambda: gevent.event.Event())

    def _open(self) -> None:
        self._spawn(self._live)

    def _live(self) -> None:
        self.told.wait()
        raise RuntimeError("its socket broke")


@pytest.mark.timeout(10)
def test_a_program_whose_service_dies_exits_1_saying_why(capsys):
    with Doomed() as doomed:
        gevent.spawn_later(0.01, doomed.told.set)
        status = serve(doomed)
    assert status == 1
    assert "Doomed stopped: RuntimeError('its socket broke')" in capsys.readouterr().err


@pytest.mark.timeout(10)
def test_a_program_ends_cleanly_when_its_orders_end(capsys):
    # (a signal is wait_for_signal's, tested with the commands: raising one here would
    # leave it pending in the test process, for a child forked later to receive)
    with Doomed() as doomed:
        assert serve(doomed, chores=(lambda: None,)) == 0  # stdin ended, say
        assert doomed.running  # its owner stops it, on the way out
    assert capsys.readouterr().err == ""


@pytest.mark.timeout(10)
def test_a_chore_that_dies_ends_the_program_with_1(capsys):
    def broken() -> None:
        raise OSError("stdin went away")

    with Doomed() as doomed:
        assert serve(doomed, chores=(broken,)) == 1
    assert "Chores stopped: OSError('stdin went away')" in capsys.readouterr().err

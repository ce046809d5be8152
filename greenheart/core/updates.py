"""The page's updates: what changed since a viewer's last, computed once for every viewer.

What the live page shows of each heart is a :data:`Row` under the heart's key (its identity as
people read it): its name, its standing's one-letter code and its beats missed in a row,
nothing that moves every beat (the round trips are asked for one heart at a time). Once a
beat, :meth:`Updates.advance` takes every row and keeps what changed since the beat before, a
:class:`Delta`; a viewer that saw version ``v`` is given :meth:`Updates.since` ``(v)``: the
deltas after it made into one, or None when it is too far behind (or new) and needs every row.
A page that applies each delta it is given holds the rows a fresh page is given whole
(:func:`apply`): tested with hypothesis.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import attrs

#: a heart as the page lists it: name (or None), standing code, beats missed in a row
Row = tuple[str | None, str, int]

#: the deltas kept: a viewer further behind is given every row
KEPT = 120


@attrs.frozen
class Delta:
    """Rows set (new or changed) and keys dropped, between two versions."""

    set: Mapping[str, Row] = attrs.field(factory=dict)
    drop: frozenset[str] = frozenset()

    def then(self, later: Delta) -> Delta:
        """This delta and then ``later``, as one."""
        rows = {key: row for key, row in self.set.items() if key not in later.drop}
        rows.update(later.set)
        return Delta(rows, (self.drop - later.set.keys()) | later.drop)

    def __bool__(self) -> bool:
        return bool(self.set or self.drop)


def diff(old: Mapping[str, Row], new: Mapping[str, Row]) -> Delta:
    """What turns ``old`` into ``new``."""
    changed = {key: row for key, row in new.items() if old.get(key) != row}
    return Delta(changed, frozenset(old.keys() - new.keys()))


def apply(rows: Mapping[str, Row], delta: Delta) -> dict[str, Row]:
    """``rows`` with ``delta`` applied (a new dict)."""
    applied = {key: row for key, row in rows.items() if key not in delta.drop}
    applied.update(delta.set)
    return applied


@attrs.define
class Updates:
    """The latest rows, their version, and the deltas that led to them."""

    kept: int = attrs.field(default=KEPT, validator=attrs.validators.ge(1))
    version: int = attrs.field(default=0, init=False)
    rows: Mapping[str, Row] = attrs.field(factory=dict, init=False)
    #: the delta that made each of the latest versions, oldest first
    _deltas: collections.deque[tuple[int, Delta]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._deltas = collections.deque(maxlen=self.kept)

    def advance(self, rows: Mapping[str, Row]) -> Delta:
        """The next version is ``rows``: what changed since the last."""
        delta = diff(self.rows, rows)
        self.version += 1
        self.rows = rows
        self._deltas.append((self.version, delta))
        return delta

    def since(self, version: int) -> Delta | None:
        """What changed after ``version`` (an empty delta if it is the latest); None when the
        deltas kept no longer reach back to it, or it is not one of this page's."""
        if version == self.version:
            return Delta()
        if not self._deltas or not self._deltas[0][0] - 1 <= version < self.version:
            return None
        made = Delta()
        for number, delta in self._deltas:
            if number > version:
                made = made.then(delta)
        return made

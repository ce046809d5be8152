"""Identities bound to keys: with CURVE, a heart's name belongs to the key that first answered.

When the driver knows which key each message was sent with (CURVE), an identity is bound to
the first key that answers for it, and stays bound, even after its heart fails, so that a
peer with another allowed key cannot take a live heart's name, nor a dead one's. A pong for a
bound identity under another key is *spoofed*. The bindings of identities no longer known are
forgotten, oldest first, beyond ``max_bindings``, so that a stream of made-up names cannot grow them
without bound; a known heart's binding is always kept.
"""

from __future__ import annotations

from collections.abc import Container

import attrs

from greenheart.core.checks import COUNT

#: identities bound to keys remembered at most, by default
MAX_BINDINGS = 100_000


@attrs.define
class KeyBindings:
    """Identity -> the key it is bound to, oldest binding first."""

    max_bindings: int = attrs.field(default=MAX_BINDINGS, validator=COUNT)
    _owners: dict[bytes, object] = attrs.field(factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._owners)

    def allows(self, heart: bytes, key: object) -> bool:
        """Whether ``key`` may answer for ``heart``: the identity is free, or bound to it (or
        the transport does not authenticate: ``key`` is None)."""
        owner = self._owners.get(heart)
        return key is None or owner is None or owner == key

    def bind(self, heart: bytes, key: object) -> None:
        """``key`` answered for ``heart``: bind it, unless the identity is bound already."""
        self._owners.setdefault(heart, key)

    def key_of(self, heart: bytes) -> object | None:
        """The key ``heart`` is bound to, if any."""
        return self._owners.get(heart)

    def trim(self, known: Container[bytes]) -> None:
        """Forget the oldest bindings of identities not ``known``, down to ``max_bindings``."""
        excess = len(self._owners) - self.max_bindings
        if excess <= 0:
            return
        for heart in [h for h in self._owners if h not in known][:excess]:
            del self._owners[heart]

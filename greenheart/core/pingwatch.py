"""ipengine's check on its controller's pings, for simulated engines: which of them give up."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.define
class PingWatch:
    """ipengine's check on its controller: at every check (ipengine checks every heart period
    plus 500 ms), an engine whose heart heard no ping since the check before has missed one;
    one that has missed ``max_misses`` in a row gives up on the controller and leaves.

    The first check of an engine only notes its count, as ipengine's first check cannot miss.
    """

    max_misses: int = attrs.field(validator=attrs.validators.ge(1))
    _heard: dict[str, int] = attrs.field(factory=dict, init=False)
    _misses: dict[str, int] = attrs.field(factory=dict, init=False)

    def check(self, pings: Mapping[str, int]) -> list[str]:
        """``pings``: how many pings each engine to watch has heard so far. The engines that
        have now missed ``max_misses`` checks in a row; they are watched no more (until they
        are in ``pings`` again, as from scratch). An engine left out of ``pings`` is forgotten.
        """
        for uuid in [uuid for uuid in self._heard if uuid not in pings]:
            del self._heard[uuid], self._misses[uuid]
        given_up = []
        for uuid, count in pings.items():
            if self._heard.get(uuid, -1) != count:
                self._heard[uuid], self._misses[uuid] = count, 0
                continue
            self._misses[uuid] += 1
            if self._misses[uuid] >= self.max_misses:
                given_up.append(uuid)
                del self._heard[uuid], self._misses[uuid]
        return given_up

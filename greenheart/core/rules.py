"""How a ledger judges its hearts: every setting a monitor is made with, as one value.

:class:`~greenheart.HeartMonitor` takes them as keyword arguments (IPython.parallel's way) or
as ``rules=``; the ledger, a recording's header and ``greenheart tune`` all hold them as a
:class:`Rules`, and :meth:`Rules.as_json` is how they are written down.
"""

from __future__ import annotations

from typing import Any

import attrs

from greenheart.core.checks import COUNT, OPTIONAL_COUNT
from greenheart.core.phi import PhiAccrual
from greenheart.core.silence import MassSilence
from greenheart.core.transport import DEFAULT_TRANSPORT_TIMEOUT, Keepalive, keepalive_for


def _transport_timeout(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None:
        Keepalive(value)  # which says what is wrong with it


@attrs.frozen
class Rules:
    """How a ledger judges its hearts."""

    #: beats a heart may miss in a row; one more and it has failed
    max_misses: int = attrs.field(default=1, validator=COUNT)
    #: the most hearts known at once; None for no limit
    max_hearts: int | None = attrs.field(default=None, validator=OPTIONAL_COUNT)
    #: fail hearts by phi-accrual suspicion instead of by ``max_misses``
    phi: PhiAccrual | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(PhiAccrual))
    )
    #: hold the hearts of a mass silence as suspects first; None fails them as any others
    mass_silence: MassSilence | None = attrs.field(
        factory=MassSilence,
        validator=attrs.validators.optional(attrs.validators.instance_of(MassSilence)),
    )
    #: fail a known heart at once when its connection closes (:meth:`Ledger.closed
    #: <greenheart.core.ledger.Ledger.closed>`)
    fail_on_disconnect: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    #: seconds within which the kernel closes a connection whose host stopped answering,
    #: which tells an unreachable heart from a crashed one; None for never (no transport
    #: liveness): :mod:`greenheart.core.transport`
    transport_timeout: float | None = attrs.field(
        default=DEFAULT_TRANSPORT_TIMEOUT, validator=_transport_timeout
    )

    @property
    def keepalive(self) -> Keepalive | None:
        """The kernel's watch that ``transport_timeout`` asks for."""
        return keepalive_for(self.transport_timeout)

    def room(self, known: int) -> int | None:
        """New hearts a beat admits with ``known`` hearts known; None for any number."""
        return None if self.max_hearts is None else max(0, self.max_hearts - known)

    def as_json(self) -> dict[str, Any]:
        return {
            "max_misses": self.max_misses,
            "max_hearts": self.max_hearts,
            "phi": attrs.asdict(self.phi) if self.phi is not None else None,
            "mass_silence": attrs.asdict(self.mass_silence) if self.mass_silence else None,
            "fail_on_disconnect": self.fail_on_disconnect,
            "transport_timeout": self.transport_timeout,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Rules:
        phi, silence = value.get("phi"), value.get("mass_silence")
        return cls(
            max_misses=value["max_misses"],
            max_hearts=value.get("max_hearts"),
            phi=PhiAccrual(**phi) if phi is not None else None,
            mass_silence=MassSilence(**silence) if silence is not None else None,
            fail_on_disconnect=value.get("fail_on_disconnect", False),
            # written before transport liveness: the connections had none
            transport_timeout=value.get("transport_timeout"),
        )

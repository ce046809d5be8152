"""greenheart's own settings of the controller's heart monitor, as traits of ipyparallel's config.

The controller hands its heart-monitor process only the ``Session`` and ``HeartMonitor``
sections of its config, so greenheart's settings live in the ``HeartMonitor`` section beside
ipyparallel's own ``period`` and ``max_heartmonitor_misses``: a profile's
``c.HeartMonitor.mass_silence_hold = 10``, or ``--HeartMonitor.mass_silence_hold=10`` on the
command line. :class:`GreenheartHeartMonitor` is ipyparallel's ``HeartMonitor`` with them
added, so that traitlets reads every key of the section, with ipyparallel's own meaning
and checks, and warns of none it does not know.
"""

from __future__ import annotations

from typing import Any

from ipyparallel.controller.heartmonitor import HeartMonitor
from traitlets import Bool, Float, Integer, Unicode

from greenheart.core.silence import HOLD, MIN_HEARTS, SHARE, MassSilence
from greenheart.core.transport import DEFAULT_TRANSPORT_TIMEOUT


class GreenheartHeartMonitor(HeartMonitor):
    """The settings of greenheart's heart monitor: ipyparallel's, and the mass-silence rule's."""

    mass_silence = Bool(
        True,
        config=True,
        help="Hold the engines a beat would fail as suspects when most of them go silent at"
        " once (the controller's own network or host may be at fault); False fails them.",
    )
    mass_silence_share = Float(
        SHARE,
        config=True,
        help="Hold when the silent engines are more than this share of those connected.",
    )
    mass_silence_min_hearts = Integer(
        MIN_HEARTS, config=True, help="Never hold fewer silent engines than this."
    )
    mass_silence_hold = Integer(
        HOLD, config=True, help="Fail a held engine still silent after this many beats."
    )
    transport_timeout = Float(
        DEFAULT_TRANSPORT_TIMEOUT,
        config=True,
        help="Close an engine's connection when its host says nothing, not even its kernel,"
        " for this many seconds (TCP keepalive), and call it unreachable; 0 for never.",
    )
    state_file = Unicode(
        "",
        config=True,
        help="Keep the engines' hearts in this file (SQLite), and after a restart await them"
        " there: those not back within restart_grace leave the cluster. Needs --restore (the"
        " hub reloads its engines): refused without it.",
    )
    restart_grace = Float(
        0.0,
        config=True,
        help="Seconds a restarted monitor awaits the engines its state_file remembers;"
        " 0 for three periods, at least 10 s.",
    )


def monitor_settings(config: Any) -> dict[str, Any]:
    """The settings a controller's config asks of its heart monitor, as
    :class:`~greenheart.green.monitor.HeartMonitor` arguments: ``period`` (ms),
    ``max_misses``, ``mass_silence``, ``transport_timeout``, ``state`` and ``restart_grace``,
    read as ipyparallel reads its own (config files, profiles and command-line traits, still
    unparsed strings in the config)."""
    settings = GreenheartHeartMonitor(config=config)
    rule = None
    if settings.mass_silence:
        rule = MassSilence(
            share=settings.mass_silence_share,
            min_hearts=settings.mass_silence_min_hearts,
            hold=settings.mass_silence_hold,
        )
    return {
        "period": float(settings.period),
        "max_misses": int(settings.max_heartmonitor_misses),
        "mass_silence": rule,
        "transport_timeout": float(settings.transport_timeout) or None,
        "state": settings.state_file or None,
        "restart_grace": float(settings.restart_grace) or None,
    }

"""The options the commands share, and their defaults (the values' types are
:mod:`greenheart.core.checks`'s, shared with the benches)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from greenheart.core.behaviour import Action, Behaviour, Delay, parse_action
from greenheart.core.checks import (
    bind_address,
    connect_address,
    number,
    positive_count,
    probability,
    share,
)
from greenheart.core.silence import HOLD, MIN_HEARTS, SHARE, MassSilence

#: where ``greenheart monitor`` binds, and its hearts and fleets connect, unless told otherwise
PING = "tcp://127.0.0.1:5555"
PONG = "tcp://127.0.0.1:5556"


def add_address_arguments(parser: argparse.ArgumentParser, *, bind: bool) -> None:
    """``--ping`` and ``--pong``: where a monitor binds, or where a heart connects to it; on
    loopback, :data:`PING` and :data:`PONG`, unless told otherwise."""
    for name, default, kind in (("ping", PING, "PUB"), ("pong", PONG, "ROUTER")):
        parser.add_argument(
            f"--{name}",
            type=bind_address if bind else connect_address,
            default=default,
            metavar="ADDR",
            help=(f"bind {name}s ({kind}) here" if bind else f"the monitor's {name} address")
            + f" (default {default})",
        )


def add_mass_silence_arguments(parser: argparse.ArgumentParser) -> None:
    """The mass-silence rule's settings (see :mod:`greenheart.core.silence`)."""
    parser.add_argument(
        "--mass-silence-share",
        type=share,
        default=SHARE,
        metavar="SHARE",
        help="hold the hearts a beat would fail, as suspects, when they are more than this share"
        f" of the hearts whose connections are up (default {SHARE:g})",
    )
    parser.add_argument(
        "--mass-silence-min-hearts",
        type=positive_count,
        default=MIN_HEARTS,
        metavar="N",
        help=f"never hold fewer silent hearts than N (default {MIN_HEARTS})",
    )
    parser.add_argument(
        "--mass-silence-hold",
        type=positive_count,
        default=HOLD,
        metavar="BEATS",
        help=f"fail a suspect still silent after this many beats (default {HOLD})",
    )
    parser.add_argument(
        "--no-mass-silence",
        action="store_true",
        help="fail the hearts of a mass silence at once, as any others",
    )


def mass_silence_options(rule: MassSilence | None) -> list[str]:
    """The options that ask for ``rule`` (:func:`mass_silence_from` reads them back), every
    setting that is not the default."""
    if rule is None:
        return ["--no-mass-silence"]
    words = []
    if rule.share != SHARE:
        words.append(f"--mass-silence-share={number(rule.share)}")
    if rule.min_hearts != MIN_HEARTS:
        words.append(f"--mass-silence-min-hearts={rule.min_hearts}")
    if rule.hold != HOLD:
        words.append(f"--mass-silence-hold={rule.hold}")
    return words


def mass_silence_from(args: argparse.Namespace) -> MassSilence | None:
    if args.no_mass_silence:
        return None
    return MassSilence(
        share=args.mass_silence_share,
        min_hearts=args.mass_silence_min_hearts,
        hold=args.mass_silence_hold,
    )


def delay(text: str) -> Delay:
    try:
        return Delay.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def slow(text: str) -> tuple[float, Delay]:
    """``FRACTION:DELAY``: a fraction of slow hearts, and their delay."""
    fraction, _, spec = text.partition(":")
    try:
        value = float(fraction)
        if not 0 <= value <= 1:
            raise ValueError
        return value, Delay.parse(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--slow takes FRACTION:DELAY, as in 0.1:fixed:500, not {text!r}"
        ) from None


def scenario_action(kind: str) -> Callable[[str], Action]:
    """The type of ``--die``, ``--revive``, ``--churn`` or ``--flap``."""

    def parse(text: str) -> Action:
        try:
            return parse_action(kind, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def add_behaviour_arguments(parser: argparse.ArgumentParser, who: str = "hearts") -> None:
    """How simulated hearts answer (delay, loss, slow ones) and what happens to them."""
    parser.add_argument(
        "--delay", type=delay, metavar="SPEC", help="reply delay: fixed:MS, uniform:LO:HI, exp:MEAN"
    )
    parser.add_argument(
        "--loss", type=probability, default=0.0, metavar="P", help="pongs lost, 0 to 1"
    )
    parser.add_argument(
        "--slow",
        type=slow,
        metavar="FRACTION:SPEC",
        help=f"a fraction of slow {who}: 0.1:fixed:500",
    )
    for kind, syntax, text in [
        ("die", "T:N", f"at T seconds, N {who} die"),
        ("revive", "T:N", f"at T seconds, N dead {who} come back"),
        ("churn", "EVERY:K", f"every EVERY seconds, K {who} leave and K join"),
        ("flap", "N:DOWN:UP", f"N {who} answer for UP seconds, then go silent for DOWN"),
    ]:
        parser.add_argument(
            f"--{kind}",
            type=scenario_action(kind),
            action="append",
            default=[],
            metavar=syntax,
            help=text,
        )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same run")


def behaviour_from(args: argparse.Namespace) -> Behaviour:
    slow_fraction, slow_delay = args.slow or (0.0, None)
    return Behaviour(
        seed=args.seed,
        delay=args.delay,
        loss=args.loss,
        slow_fraction=slow_fraction,
        slow_delay=slow_delay,
    )


def scenario_from(args: argparse.Namespace) -> list[Action]:
    return [*args.die, *args.revive, *args.churn, *args.flap]

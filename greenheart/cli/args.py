"""Argument types shared by the commands: each refuses bad input with argparse's own message."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from greenheart.core.behaviour import Delay, Event, parse_event


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


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


def event(kind: str) -> Callable[[str], Event]:
    """The type of ``--die``, ``--revive``, ``--churn`` or ``--flap``."""

    def parse(text: str) -> Event:
        try:
            return parse_event(kind, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse

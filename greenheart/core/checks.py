"""Checks of the public inputs: the attrs validators that several classes share, and the
argparse types of the ``greenheart`` command and its benches, one per kind of value.

An argparse type refuses a bad value with :class:`argparse.ArgumentTypeError`, which argparse
prints as one line naming the option (``argument --period: must be positive, got 0``), with
exit status 2. The checks of addresses and files say what is wrong, or None: the drivers that
bind, connect and write refuse with the same words.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from greenheart.core.errors import UsageError

T = TypeVar("T")

#: a whole number, 0 or more
COUNT = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(0))

#: a whole number, 0 or more, or None for no limit
OPTIONAL_COUNT = attrs.validators.optional(COUNT)

#: the highest TCP port
MAX_PORT = 65535

#: a TCP port to listen on: 0 picks a free one
PORT = attrs.validators.and_(
    attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(MAX_PORT)
)


def endpoint_problem(addr: str, *, bind: bool) -> str | None:
    """What is wrong with the ZeroMQ endpoint ``addr``, to bind or to connect to, or None.

    Only a TCP endpoint's port is checked (ZeroMQ would take ``:99999`` as port 34463, and
    ``:-1`` as 65535): a number from 1 to 65535, or, to bind, 0 or ``*`` for any free port.
    Whatever else is wrong ZeroMQ itself refuses."""
    transport, _, rest = addr.partition("://")
    if transport != "tcp":
        return None
    port = rest.rpartition(":")[2]
    if bind and port == "*":
        return None
    lowest = 0 if bind else 1
    if not (port.isascii() and port.isdigit() and lowest <= int(port) <= MAX_PORT):
        any_port = " (0 or * for any free one)" if bind else ""
        return f"its port must be {lowest} to {MAX_PORT}{any_port}, not {port!r}"
    return None


def directory_problem(path: str | os.PathLike[str]) -> str | None:
    """What stops a file from being written at ``path``, or None: its directory is missing
    (it is never made), or ``path`` is a directory."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"no directory {parent}"
    if os.path.isdir(path):
        return f"{os.fspath(path)} is a directory"
    return None


def writable_file(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An attrs validator: ``value`` is a path a file can be written at."""
    problem = directory_problem(value)
    if problem is not None:
        raise UsageError(f"cannot write {os.fspath(value)}: {problem}")


def _checked(convert: Callable[[str], T], text: str) -> T:
    try:
        return convert(text)
    except ValueError:
        kind = "a whole number" if convert is int else "a number"
        raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None


def number(value: float) -> str:
    """``value`` as an option's text: short (``100``, ``0.5``), and exact."""
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def positive_float(text: str) -> float:
    value = _checked(float, text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _checked(float, text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def probability(text: str) -> float:
    value = _checked(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def share(text: str) -> float:
    value = _checked(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1, got {text}")
    return value


def count(text: str) -> int:
    value = _checked(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def positive_count(text: str) -> int:
    value = _checked(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def at_least_two(text: str) -> int:
    value = _checked(int, text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be 2 or more, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on; 0 picks a free one."""
    value = _checked(int, text)
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"must be a port from 0 to {MAX_PORT} (0 for any free one), got {text}"
        )
    return value


def _endpoint(text: str, bind: bool) -> str:
    problem = endpoint_problem(text, bind=bind)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def bind_address(text: str) -> str:
    """A ZeroMQ endpoint to bind: ``tcp://127.0.0.1:5555``, ``ipc:///tmp/pings``."""
    return _endpoint(text, bind=True)


def connect_address(text: str) -> str:
    """A ZeroMQ endpoint to connect to."""
    return _endpoint(text, bind=False)


def output_file(text: str) -> str:
    """A file to write, in a directory that exists."""
    problem = directory_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {problem}")
    return text


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser whose ValueError says what is wrong."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def listed(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """Comma-separated values, each of ``kind``: ``1,2,4``."""

    def parse(text: str) -> list[T]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            return [kind(part) for part in parts]
        except argparse.ArgumentTypeError as error:
            if len(parts) == 1:
                raise
            raise argparse.ArgumentTypeError(f"{error} (in {text})") from None

    return parse

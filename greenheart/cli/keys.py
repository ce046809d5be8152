"""CURVE from the command line: ``greenheart keys``, and the key options of the other commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from greenheart.core.errors import UsageError
from greenheart.green.curve import (
    ClientCurve,
    KeyPair,
    ServerCurve,
    load_allowed_keys,
    load_public_key,
    write_key_pair,
)

T = TypeVar("T")


def _read(what: str, load: Callable[[str], T], path: str) -> T:
    try:
        return load(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {what} {path}: {error}") from error


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-key", metavar="FILE", help="CURVE: the monitor's .key file")
    parser.add_argument("--curve-secret", metavar="FILE", help="CURVE: this side's .key_secret")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--curve-secret", metavar="FILE", help="CURVE: the monitor's .key_secret file"
    )
    parser.add_argument(
        "--allow", metavar="DIR", help="CURVE: let in only hearts whose .key files are in DIR"
    )
    parser.add_argument(
        "--allow-any", action="store_true", help="CURVE: let in any key (encryption only)"
    )


def server_curve(args: argparse.Namespace) -> ServerCurve | None:
    if args.curve_secret is None:
        if args.allow or args.allow_any:
            raise UsageError("--allow and --allow-any need --curve-secret")
        return None
    if bool(args.allow) == args.allow_any:
        raise UsageError("with --curve-secret, say who may connect: --allow DIR or --allow-any")
    allowed = None if args.allow_any else _read("allowed keys", load_allowed_keys, args.allow)
    return ServerCurve(_read("key pair", KeyPair.load, args.curve_secret), allowed)


def client_curve(args: argparse.Namespace) -> ClientCurve | None:
    if (args.server_key is None) != (args.curve_secret is None):
        raise UsageError("CURVE needs both --server-key and --curve-secret")
    if args.server_key is None:
        return None
    return ClientCurve(
        _read("server key", load_public_key, args.server_key),
        _read("key pair", KeyPair.load, args.curve_secret),
    )


def add_keys_command(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser(
        "keys", help="write a CURVE key pair: NAME.key (public) and NAME.key_secret"
    )
    keys.add_argument("directory", metavar="DIR")
    keys.add_argument("--name", default="greenheart", help="file name (default: greenheart)")
    keys.set_defaults(run=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    try:
        public, secret = write_key_pair(args.directory, args.name)
    except OSError as error:
        raise UsageError(f"cannot write keys into {args.directory}: {error}") from error
    print(f"public key: {public}\nkey pair:   {secret} (keep it secret)", file=sys.stdout)
    return 0

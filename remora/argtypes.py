"""Argument types shared by the subcommands, so a bad value is refused by argparse with the
option's name (`argument --http-port: 99999 is not a port (0-65535)`) before anything starts."""

from __future__ import annotations

import argparse


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def port_list(text: str) -> list[int]:
    """`18081,18082` -> [18081, 18082]."""
    return [port(part.strip()) for part in text.split(",") if part.strip()]

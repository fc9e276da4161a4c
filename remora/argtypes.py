"""Argument types shared by the subcommands, so a bad value is refused by argparse with the
option's name (`argument --http-port: 99999 is not a port (0-65535)`) before anything starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer argument within [low, high] (no upper bound when `high` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < 0 <= low:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        if value < low or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is not {bounds}")
        return value

    return parse

"""Argument types of the ``occsim`` command line: a bad value stops the parser with a
message that names the option and what it takes, before anything loads."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def numbers(kind: type, minimum: float) -> Callable[[str], list]:
    """An argparse ``type``: comma-separated numbers of ``kind``, each ``>= minimum``."""

    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated numbers, got {text!r}"
            ) from None
        if not values or any(value < minimum for value in values):
            raise argparse.ArgumentTypeError(
                f"must be one or more numbers >= {minimum}, got {text!r}"
            )
        return values

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def choices_list(allowed: tuple[str, ...]) -> Callable[[str], list]:
    """An argparse ``type``: comma-separated names, each one of ``allowed``."""

    def parse(text: str) -> list:
        values = [part.strip() for part in text.split(",") if part.strip()]
        wrong = [value for value in values if value not in allowed]
        if not values or wrong:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated names from {', '.join(allowed)}, got {text!r}"
            )
        return values

    parse.__name__ = "list of names"
    return parse

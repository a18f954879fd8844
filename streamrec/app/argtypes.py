"""argparse type functions shared by every subcommand: one wording for one mistake.

Each raises ``argparse.ArgumentTypeError``, which the CLI turns into a one-line
``streamrec: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from typing import Collection


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def speed(text: str) -> float | None:
    """``max`` (as fast as possible) or a positive event-time multiplier like ``60``."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: use 'max' or a positive number (event time x N)") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"speed must be a positive number, got {text!r}")
    return value


def setting(name: str):  # type: ignore[no-untyped-def]
    """The type of a flag that sets ``Settings.<name>``: parsed and checked by that field's
    rule (``streamrec.setting_rules``), so a flag and its variable accept the same values
    and are refused in the same words, range included."""
    def parse(text: str) -> object:
        from streamrec.setting_rules import RULES
        from streamrec.settings_sources import parse_value
        try:
            value = parse_value(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None
        problem = RULES[name].problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value
    parse.__name__ = name  # argparse names the type in some messages
    return parse


def known_names(text: str, known: Collection[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of ``known`` (``what`` names them)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}")
    return names

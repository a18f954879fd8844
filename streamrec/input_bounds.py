"""The border every byte from Kafka crosses: the typed bad-input error and the bounds.

Each message kind has one decoder (``streamrec.events.decode_click``, the scorer's request
decoder, ``streamrec.online_models.user_state.decode_state``, the forget key below). They all go
through ``guarded_decode``, which turns *every* failure of the JSON decoder — recursion,
Unicode, memory and overflow errors included — into ``BadInput`` with a short ``reason``,
and then check the bounds here: ids short and printable, event time in a window, the
reserved user-id namespace after Unicode normalisation.

>>> check_id("u1", "user_id", 256)
>>> check_id("u\\n1", "user_id", 256)
Traceback (most recent call last):
...
streamrec.input_bounds.BadInput: bad_id: user_id contains a control character
>>> is_reserved_user_id("\\uff3f\\uff3fSTREAMREC_snapshot")  # full-width underscores
True
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from typing import Any

import msgspec

# Keys streamrec itself writes to user-state (snapshots) and clicks (control messages).
RESERVED_USER_PREFIX = "__streamrec_"
# 9999-12-31T23:59:59Z: no event time is later, whatever the broker timestamp says (a
# record without one, as in replay or tests, is still bounded).
MAX_EVENT_TS = 253402300799.0

# C0/C1 controls, DEL, line/paragraph separators, and the bidi and zero-width format
# characters that make two ids look alike in a log or a dashboard.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                      "\u2066-\u2069\ufeff]")


class BadInput(ValueError):
    """A record (or part of one) that is not a valid input of its kind.

    ``reason`` is short and machine-readable (``bad_json``, ``schema``, ``too_deep``,
    ``oversized``, ``empty``, ``bad_id``, ``bad_key``, ``missing_key``, ``key_mismatch``,
    ``reserved_user_id``, ``ts_out_of_range``, ``out_of_bounds`` ...): the dead-letter
    header ``streamrec.error.reason`` or the ``reason`` label of the skipped counter.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def guarded_decode(decoder: Any, payload: bytes) -> Any:
    """``decoder.decode(payload)``; any failure at all becomes ``BadInput``.

    msgspec skips unknown fields recursively, so a 2 KB value nesting 1,000 arrays raises
    ``RecursionError``; a huge number may raise ``OverflowError``; a value that decodes may
    still fail later checks. Nothing but ``BadInput`` leaves this function.
    """
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise BadInput("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadInput("bad_json", str(exc)) from None
    except RecursionError:
        raise BadInput("too_deep", "value nests deeper than the decoder allows") from None
    except MemoryError:
        raise BadInput("oversized", "value does not fit in memory when decoded") from None
    except (ValueError, TypeError, OverflowError, UnicodeError) as exc:
        raise BadInput("bad_json", f"{type(exc).__name__}: {exc}") from None


def check_id(value: str, field: str, max_bytes: int) -> None:
    """An id must be 1..``max_bytes`` UTF-8 bytes and free of control characters."""
    if not value:
        raise BadInput("bad_id", f"{field} is empty")
    if len(value) > max_bytes:  # cheap first: a char is at least one byte
        raise BadInput("bad_id", f"{field} is longer than {max_bytes} bytes")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadInput("bad_id", f"{field} is not valid Unicode (a lone surrogate)") from None
    if size > max_bytes:
        raise BadInput("bad_id", f"{field} is {size} UTF-8 bytes > limit {max_bytes}")
    if _CONTROL.search(value):
        raise BadInput("bad_id", f"{field} contains a control character")


def is_reserved_user_id(user_id: str) -> bool:
    """Whether ``user_id`` falls in streamrec's own namespace, after NFKC + case folding.

    ``__STREAMREC_x`` or full-width underscores would not collide with our keys byte for
    byte, but they would in any tool that normalises, and they fool a human reading logs.
    """
    folded = unicodedata.normalize("NFKC", user_id).casefold()
    return folded.startswith(RESERVED_USER_PREFIX)


def check_user_id(user_id: str, field: str, max_bytes: int) -> None:
    check_id(user_id, field, max_bytes)
    if is_reserved_user_id(user_id):
        raise BadInput("reserved_user_id", f"{field} {user_id[:64]!r} is in the reserved "
                                           f"namespace {RESERVED_USER_PREFIX!r}")


def decode_user_key(key: bytes | None, max_bytes: int) -> str:
    """A message key that names a user (a forget request, a user-state record)."""
    if key is None:
        raise BadInput("missing_key", "message has no key")
    if len(key) > max_bytes:
        raise BadInput("bad_id", f"key is {len(key)} bytes > limit {max_bytes}")
    try:
        user_id = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput("bad_key", f"key is not UTF-8: {exc.reason}") from None
    check_id(user_id, "key", max_bytes)
    return user_id


def check_event_time(ts: float, broker_ms: int, max_ahead_s: float, field: str = "ts") -> None:
    """Event time: finite, not negative, and at most ``max_ahead_s`` after the broker's.

    Only the future is bounded: a replay of a 1997 log produced today is in the past and
    fine. ``broker_ms`` 0 (unknown) leaves the absolute ceiling ``MAX_EVENT_TS``.
    """
    if not math.isfinite(ts) or ts < 0.0 or ts > MAX_EVENT_TS:
        raise BadInput("ts_out_of_range", f"`{field}` {ts!r} is not a time between 0 and "
                                          f"{MAX_EVENT_TS:.0f}")
    if broker_ms > 0 and ts > broker_ms / 1000.0 + max_ahead_s:
        raise BadInput("ts_out_of_range", f"`{field}` {ts!r} is more than {max_ahead_s:g} s "
                                          f"after the record's timestamp {broker_ms} ms")


def count_skip(skipped: Counter[tuple[str, str]], topic: str, error: BadInput,
               logger: logging.Logger) -> None:
    """Count a skipped record by (topic, reason); log the first of each kind, then debug.

    A flood of bad records must not flood the log too: the counter is the signal.
    """
    key = (topic, error.reason)
    first = skipped[key] == 0
    skipped[key] += 1
    logger.log(logging.WARNING if first else logging.DEBUG,
               "skipped a record on %s: %s: %s%s", topic, error.reason, error.detail[:200],
               " (further ones of this reason at debug level)" if first else "")

"""What each setting accepts: one rule per ``Settings`` field, worded for a one-line error.

``Settings.validate`` checks every field against its rule here, then the rules that tie
fields together (``streamrec.config``). A rule answers ``problem(value)`` with None (fine)
or the words that follow the setting's name in the error, always ending in what is
accepted, so a user never has to open the code to learn the range::

    STREAMREC_ONLINE_WEIGHT=-3: must be >= 0 (accepted: 0 ... inf, finite)
    --metrics-port 99999: is out of range (accepted: 0 ... 65535; 0 = off)

A contract module: stdlib only, no import from the rest of streamrec.

>>> RULES["metrics_port"].problem(99999)
'is out of range (accepted: 0 ... 65535; 0 = off)'
>>> RULES["online_weight"].problem(0.5) is None
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

INF = math.inf
# Kafka's legal topic characters (kafka.common.internals.Topic); a topic name is at most
# 249 characters, and the longest name we put behind the prefix is "recommendations".
TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
LONGEST_TOPIC = len("recommendations")
MAX_TOPIC_LENGTH = 249
# Visible ASCII, no space: group and transactional ids are free-form for Kafka, but a space
# or a control character in one is a typo that would silently create a second group.
VISIBLE_ASCII = re.compile(r"[!-~]+")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# host:port, host or [v6]:port, comma-separated (Kafka's bootstrap.servers list).
_SERVER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:(\d{1,5}))?")


def _number(value: float) -> str:
    if value in (INF, -INF):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Rule:
    """Base: ``problem`` says what is wrong with a value, or None; ``accepted`` for docs."""

    note: str = ""  # what a special value means ("0 = off"), shown with the range

    def problem(self, value: object) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def accepted(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _words(self, what: str) -> str:
        return f"{what} (accepted: {self.accepted()})"


@dataclass(frozen=True)
class IntRange(Rule):
    """A whole number in ``low ... high`` (both included)."""

    low: int = 0
    high: float = INF

    def accepted(self) -> str:
        span = f"{_number(self.low)} ... {_number(self.high)}"
        return f"{span}; {self.note}" if self.note else span

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return self._words("must be a whole number")
        if self.low <= value <= self.high:
            return None
        if self.high == INF:
            return self._words(f"must be >= {_number(self.low)}")
        return self._words("is out of range")


@dataclass(frozen=True)
class FloatRange(Rule):
    """A finite number between ``low`` and ``high``; ``open_low`` excludes ``low``."""

    low: float = 0.0
    high: float = INF
    open_low: bool = False
    open_high: bool = False

    def accepted(self) -> str:
        low = f"{_number(self.low)} (excluded)" if self.open_low else _number(self.low)
        high = f"{_number(self.high)} (excluded)" if self.open_high else _number(self.high)
        return f"{low} ... {high}" + (", finite" if self.high == INF else "")

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._words("must be a number")
        if not math.isfinite(value):
            return self._words("must be a finite number")
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        if above and below:
            return None
        if self.high == INF:
            return self._words(f"must be {'>' if self.open_low else '>='} {_number(self.low)}")
        return self._words("is out of range")


@dataclass(frozen=True)
class Choice(Rule):
    """One of a few values (compared after ``str().lower()`` for text)."""

    choices: tuple[object, ...] = ()

    def accepted(self) -> str:
        listed = " | ".join(str(c) for c in self.choices)
        return f"{listed} ({self.note})" if self.note else listed

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or value not in self.choices:
            return self._words("is not one of the choices")
        return None


@dataclass(frozen=True)
class Text(Rule):
    """Text of at most ``max_length`` characters matching ``pattern`` (``describe`` says it)."""

    pattern: re.Pattern[str] = VISIBLE_ASCII
    describe: str = "visible ASCII, no spaces"
    max_length: int = 1000
    empty_ok: bool = False

    def accepted(self) -> str:
        empty = ", or empty" if self.empty_ok else ""
        return f"{self.describe}, 1 ... {self.max_length} characters{empty}"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return self._words("must be text")
        if value == "":
            return None if self.empty_ok else self._words("must not be empty")
        if len(value) > self.max_length:
            return self._words(f"is {len(value)} characters long")
        if not self.pattern.fullmatch(value):
            return self._words("holds a character that is not allowed")
        return None


@dataclass(frozen=True)
class BootstrapServers(Rule):
    """``host:port[,host:port...]``; a port, when given, in 1 ... 65535."""

    def accepted(self) -> str:
        return "host:port[,host:port...], port 1 ... 65535"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return self._words("must not be empty")
        for server in value.split(","):
            match = _SERVER.fullmatch(server.strip())
            if match is None:
                return self._words(f"{server.strip()!r} is not host:port")
            if match.group(3) is not None and not 1 <= int(match.group(3)) <= 65535:
                return self._words(f"port {match.group(3)} of {server.strip()!r} is out of range")
        return None


@dataclass(frozen=True)
class Secret(Rule):
    """A key that is off when empty and otherwise long enough to resist guessing."""

    min_length: int = 16

    def accepted(self) -> str:
        return f"empty (off) or at least {self.min_length} characters"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return self._words("must be text")
        if value and len(value) < self.min_length:
            return self._words(f"is shorter than {self.min_length} characters")
        return None


MIB = 1024 * 1024
# Kafka's largest message.max.bytes (an int32); a limit above it no broker can honour.
KAFKA_MAX_MESSAGE_BYTES = 2**31 - 1

# One rule per Settings field (kafka_security: KafkaSecurity.validate); a unit test fails
# when a field has none.
RULES: Mapping[str, Rule] = {
    "bootstrap_servers": BootstrapServers(),
    "topic_prefix": Text(pattern=TOPIC_CHARS, describe="letters, digits, '.', '_', '-' (Kafka "
                         "topic characters)", max_length=MAX_TOPIC_LENGTH - LONGEST_TOPIC,
                         empty_ok=True),
    "partitions": IntRange(low=1, high=100_000),
    "replication_factor": IntRange(low=1, high=32_767),
    "max_event_bytes": IntRange(low=64, high=KAFKA_MAX_MESSAGE_BYTES),
    "recent_items": IntRange(low=1, high=100_000),
    "max_seen_items": IntRange(low=1, high=10_000_000),
    "top_k": IntRange(low=1, high=100_000),
    "online_weight": FloatRange(),
    "deep_weight": FloatRange(),
    "covisit_weight": FloatRange(),
    "covisit_window": IntRange(low=1, high=10_000),
    "covisit_recent": IntRange(low=1, high=10_000),
    "transition_weight": FloatRange(),
    "transition_order": IntRange(low=1, high=3),
    "fusion_depth": IntRange(low=1, high=100_000),
    "fusion": Choice(choices=("fixed", "learned")),
    "fusion_half_life": FloatRange(open_low=True),
    "fusion_pending_users": IntRange(low=1, high=100_000_000),
    "popularity_half_life_s": FloatRange(open_low=True),
    "drift_delta": FloatRange(high=1.0, open_low=True, open_high=True),
    "batch_size": IntRange(low=1, high=1_000_000),
    "learn_every": IntRange(low=1, high=10_000_000),
    "snapshot_every": IntRange(low=1),
    "online_learning": Choice(choices=(0, 1), note="0 turns the online models off"),
    "seed": IntRange(low=0, high=2**32 - 1),
    "poll_timeout_ms": IntRange(low=1, high=600_000),
    "event_time_idle_ms": IntRange(low=0, high=3_600_000),
    "metrics_port": IntRange(low=0, high=65535, note="0 = off"),
    "metrics_host": Text(pattern=re.compile(r"[A-Za-z0-9.:_\[\]-]+"),
                         describe="a host name or an IP address", max_length=255),
    "ingest_group": Text(),
    "score_group": Text(),
    "transactional_id_prefix": Text(),
    # The broker refuses sessions outside group.{min,max}.session.timeout.ms (6 s, 30 min).
    "session_timeout_s": FloatRange(low=6.0, high=1800.0),
    "stall_after_s": FloatRange(open_low=True),
    "broker_silence_s": FloatRange(open_low=True),
    # Each chunk must fit a user-state message (32 MiB) with its key and headers.
    "snapshot_chunk_bytes": IntRange(low=1024, high=31 * MIB),
    "snapshot_max_chunks": IntRange(low=1, high=1_000_000),
    "snapshot_max_bytes": IntRange(low=1024, high=2**40),
    "model_store": Text(pattern=re.compile(r"[^\x00-\x1f\x7f]+"), describe="a folder path",
                        max_length=4096),
    "control_secret": Secret(),
    "max_event_ahead_s": FloatRange(),
    "max_id_bytes": IntRange(low=1, high=65_536),
    "max_context_entries": IntRange(low=1, high=10_000),
    "max_exclude_items": IntRange(low=1, high=1_000_000),
    "max_k": IntRange(low=1, high=100_000),
    "max_message_bytes": IntRange(low=1024, high=KAFKA_MAX_MESSAGE_BYTES),
    "max_embedding_dim": IntRange(low=1, high=65_536),
    # How long a command waits for a first broker answer before it gives up (one line).
    "connect_timeout_s": FloatRange(low=0.1, high=600.0),
    "log_level": Choice(choices=LOG_LEVELS),
}
# Fields whose value is never shown in a message: the origin is named, the value is not.
SECRET_SETTINGS = frozenset({"control_secret"})

"""Per-user state: the recent item sequence, the seen set, counters and the source offset.

``UserState`` is what ingest keeps for every user and what it writes, whole, to the
compacted ``user-state`` topic after each batch that touched the user, so the state can be
rebuilt from that topic alone. ``source_offset`` is the offset of the last click applied:
an event at or below it is a replay and is not applied twice.

>>> state = UserState(user_id="u1")
>>> state.apply("i1", ts=10.0, event_id="e1", event_type="click", offset=0)
True
>>> state.apply("i1", ts=10.0, event_id="e1", event_type="click", offset=0)  # replayed
False
>>> state.recent_items, state.event_count
(['i1'], 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import msgspec

from streamrec.input_bounds import MAX_EVENT_TS, BadInput, check_event_time, guarded_decode

STATE_SCHEMA_VERSION = 1


class UserState(msgspec.Struct, kw_only=True):
    """Everything streamrec knows about one user, as written to ``user-state``."""

    user_id: str
    recent_items: list[str] = []
    # Event time of each of ``recent_items`` (same length, trimmed with it): item-side recency
    # is learned from the latest state alone. Empty in states written before it existed.
    recent_ts: list[float] = []
    seen_items: list[str] = []
    event_count: int = 0
    type_counts: dict[str, int] = {}
    last_ts: float = 0.0
    last_event_id: str = ""
    source_partition: int = -1
    source_offset: int = -1
    # The user's online embedding as of the last micro-batch that included the user.
    embedding: list[float] | None = None
    # Items appended by the batch that produced this message, with their event time: the
    # scorer's online hit-rate judges what it published against these. (Item-side
    # statistics do not use them: compaction loses deltas, it keeps the latest state.)
    new_events: list[tuple[str, float]] = []
    # Wall-clock ms when the triggering click was produced (Kafka record timestamp), so the
    # scorer can report end-to-end latency. Not part of the learned state.
    trigger_produced_ms: int = 0
    version: int = STATE_SCHEMA_VERSION

    def apply(self, item_id: str, *, ts: float, event_id: str, event_type: str, offset: int,
              partition: int = -1, recent_limit: int = 50, seen_limit: int = 5000) -> bool:
        """Apply one event; return False (and change nothing) if it was already applied."""
        if offset <= self.source_offset and offset >= 0:
            return False
        if len(self.recent_ts) != len(self.recent_items):
            # A state written before ``recent_ts`` existed: the only time it knows for its
            # older events is the latest one (they happened at or before it).
            self.recent_ts = [self.last_ts] * len(self.recent_items)
        self.recent_items.append(item_id)
        self.recent_ts.append(ts)
        if len(self.recent_items) > recent_limit:
            del self.recent_items[: len(self.recent_items) - recent_limit]
            del self.recent_ts[: len(self.recent_ts) - recent_limit]
        self._remember_seen(item_id, seen_limit)
        self.event_count += 1
        self.type_counts[event_type] = self.type_counts.get(event_type, 0) + 1
        self.last_ts = max(self.last_ts, ts)
        self.last_event_id = event_id
        if offset >= 0:
            self.source_offset = offset
            self.source_partition = partition
        self.new_events.append((item_id, ts))
        return True

    def _remember_seen(self, item_id: str, seen_limit: int) -> None:
        # A linear scan is fine below a few thousand items and keeps the message a plain
        # list; the oldest item falls off when the limit is reached.
        if item_id in self.seen_items:
            return
        self.seen_items.append(item_id)
        if len(self.seen_items) > seen_limit:
            del self.seen_items[0]

    def learned_view(self) -> dict:
        """The state without per-message delivery fields, for equality across runs."""
        data = msgspec.structs.asdict(self)
        for transient in ("new_events", "trigger_produced_ms"):
            data.pop(transient)
        return data


@dataclass(frozen=True)
class StateBounds:
    """What a decoded state may hold; defaults follow ``Settings``' defaults.

    Ingest and the scorer build theirs from the same settings, so a state ingest wrote is
    always within the scorer's bounds. Id lengths are checked in characters here (cheap on
    the scorer's hot path); ingest wrote them from clicks checked in UTF-8 bytes.
    """

    max_recent: int = 50
    max_seen: int = 5000
    max_new_events: int = 5550
    max_id_chars: int = 256
    max_embedding_dim: int = 1024
    max_event_ahead_s: float = 86400.0

    @classmethod
    def from_settings(cls, settings: Any) -> "StateBounds":
        return cls(settings.recent_items, settings.max_seen_items,
                   settings.recent_items + settings.max_seen_items + settings.batch_size,
                   settings.max_id_bytes, settings.max_embedding_dim, settings.max_event_ahead_s)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserState)
_DEFAULT_BOUNDS = StateBounds()
_MAX_TYPE_COUNTS = 16
_INT64 = 2**63
_first = itemgetter(0)  # a new event's item id


def encode_state(state: UserState) -> bytes:
    return _encoder.encode(state)


class _EventTimeOnly(msgspec.Struct):
    last_ts: float = 0.0


_event_time_decoder = msgspec.json.Decoder(_EventTimeOnly)


def state_event_time(payload: bytes | None, bounds: StateBounds = _DEFAULT_BOUNDS,
                     produced_ms: int = 0) -> float | None:
    """The event time of a ``user-state`` value (its ``last_ts``) without decoding the rest;
    None if it has none that ``decode_state`` would accept (a tombstone, bad data).

    >>> state_event_time(b'{"user_id": "u", "last_ts": 12.5, "seen_items": ["a"]}')
    12.5
    >>> state_event_time(b'{"last_ts": -1}'), state_event_time(b"[[["), state_event_time(None)
    (None, None, None)
    """
    if not payload:
        return None
    try:
        ts = guarded_decode(_event_time_decoder, payload).last_ts
        check_event_time(ts, produced_ms, bounds.max_event_ahead_s, "last_ts")
    except BadInput:
        return None
    return float(ts)


def decode_state(payload: bytes | None, bounds: StateBounds = _DEFAULT_BOUNDS,
                 produced_ms: int = 0) -> UserState:
    """Decode one ``user-state`` value; ``BadInput`` if malformed or out of bounds.

    ``produced_ms`` is the record's broker timestamp: event times in the state may not be
    later than it by more than ``bounds.max_event_ahead_s`` (as for clicks).
    """
    if not payload:
        raise BadInput("empty", "state has no value")
    state: UserState = guarded_decode(_decoder, payload)
    _check_bounds(state, bounds, produced_ms)
    return state


def _check_bounds(state: UserState, bounds: StateBounds, produced_ms: int) -> None:
    for name, size, limit in (("recent_items", len(state.recent_items), bounds.max_recent),
                              ("recent_ts", len(state.recent_ts), bounds.max_recent),
                              ("seen_items", len(state.seen_items), bounds.max_seen),
                              ("new_events", len(state.new_events), bounds.max_new_events),
                              ("type_counts", len(state.type_counts), _MAX_TYPE_COUNTS)):
        if size > limit:
            raise BadInput("out_of_bounds", f"{name} has {size} entries > limit {limit}")
    longest = max(map(len, chain((state.user_id, state.last_event_id), state.recent_items,
                                 state.seen_items, map(_first, state.new_events),
                                 state.type_counts)))
    if longest > bounds.max_id_chars:
        raise BadInput("bad_id", f"an id of {longest} characters > limit {bounds.max_id_chars}")
    if not state.user_id:
        raise BadInput("bad_id", "user_id is empty")
    if state.recent_ts and len(state.recent_ts) != len(state.recent_items):
        raise BadInput("out_of_bounds", f"recent_ts has {len(state.recent_ts)} times for "
                                        f"{len(state.recent_items)} recent_items")
    if len(set(state.seen_items)) != len(state.seen_items):
        # Item-side statistics count a user once per item: a repeat would weigh it twice.
        raise BadInput("out_of_bounds", "seen_items repeats an item")
    if state.embedding is not None:
        if len(state.embedding) > bounds.max_embedding_dim:
            raise BadInput("out_of_bounds", f"embedding of {len(state.embedding)} values "
                                            f"(limit {bounds.max_embedding_dim})")
        # A finite sum means every value is finite; only a non-finite one needs the scan.
        if (not math.isfinite(sum(state.embedding))
                and not all(map(math.isfinite, state.embedding))):
            raise BadInput("out_of_bounds", "embedding holds a NaN or infinite value")
    # JSON integers are unbounded in msgspec: a counter of 10**30 would decode, then break
    # whatever stores it in an int64 (Kafka offsets, numpy, metrics).
    counters = (state.event_count, state.source_partition, state.source_offset,
                state.trigger_produced_ms, state.version, *state.type_counts.values())
    if min(counters) < -_INT64 or max(counters) >= _INT64:
        raise BadInput("out_of_bounds", "a counter is outside the 64-bit range")
    if not _times_in_range(state, produced_ms, bounds.max_event_ahead_s):
        # Some time is out of range: the per-value checks name the first, as they always did.
        check_event_time(state.last_ts, produced_ms, bounds.max_event_ahead_s, "last_ts")
        for _, ts in state.new_events:
            check_event_time(ts, produced_ms, bounds.max_event_ahead_s, "new_events ts")
        for ts in state.recent_ts:
            check_event_time(ts, produced_ms, bounds.max_event_ahead_s, "recent_ts")


def _times_in_range(state: UserState, produced_ms: int, max_ahead_s: float) -> bool:
    """Whether every event time would pass ``check_event_time`` (the hot path: one check of
    the whole state in C-level passes instead of a Python call per value).

    A sum is finite only if every term is (an infinity or a NaN stays non-finite), so once it
    is, ``min`` and ``max`` are exact; a finite sum overflowing is only a false alarm (the
    per-value checks then run and pass).
    """
    times = [state.last_ts, *state.recent_ts]
    times.extend([ts for _, ts in state.new_events])
    if not math.isfinite(sum(times)):
        return False
    ceiling = MAX_EVENT_TS
    if produced_ms > 0:
        ceiling = min(ceiling, produced_ms / 1000.0 + max_ahead_s)
    return min(times) >= 0.0 and max(times) <= ceiling

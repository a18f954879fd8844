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

import msgspec

STATE_SCHEMA_VERSION = 1


class UserState(msgspec.Struct, kw_only=True):
    """Everything streamrec knows about one user, as written to ``user-state``."""

    user_id: str
    recent_items: list[str] = []
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
    # scorer learns popularity from these deltas instead of re-reading ``clicks``.
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
        self.recent_items.append(item_id)
        if len(self.recent_items) > recent_limit:
            del self.recent_items[: len(self.recent_items) - recent_limit]
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


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    return _encoder.encode(state)


def decode_state(payload: bytes) -> UserState:
    return _decoder.decode(payload)

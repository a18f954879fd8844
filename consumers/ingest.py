"""Ingest: validate clicks, update per-user state, emit it to the ``user-state`` changelog.

State is scoped by partition of ``clicks``: ``user-state`` is co-partitioned (same key, same
partition count, and every state message is pinned to its source partition), so restoring a
partition's users means reading one changelog partition. Each state records the offset of
the last click applied, so a click delivered again after a crash is not applied twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from online_models.user_state import UserState, decode_state, encode_state
from streamrec.config import Settings
from streamrec.events import BadEvent, ClickEvent, dead_letter, decode_click
from streamrec.records import Output, ProcessResult, Record

log = logging.getLogger(__name__)

# Header that marks a control message on ``clicks`` (for example a forget request); such a
# message travels the user's partition in order with the user's events.
CONTROL_HEADER = "streamrec.control"
FORGET = b"forget"


class IngestProcessor:
    """Pure ingest logic: ``process(batch)`` returns the changelog and dead-letter outputs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.changelog_topic = self.topics.user_state
        self._states: dict[int, dict[str, UserState]] = {}
        self.rejected_by_reason: Counter[str] = Counter()

    # -- state lifecycle, driven by the runtime on rebalance ---------------------------
    def restore(self, partition: int, changelog: Iterable[Record]) -> int:
        """Rebuild one partition's users from its changelog records; return how many."""
        users: dict[str, UserState] = {}
        for record in changelog:
            if record.key is None:
                continue
            user_id = record.key.decode()
            if record.value is None:  # tombstone: the user was forgotten
                users.pop(user_id, None)
                continue
            state = decode_state(record.value)
            state.new_events = []
            users[user_id] = state
        self._states[partition] = users
        return len(users)

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._states.pop(partition, None)

    def users(self, partition: int) -> dict[str, UserState]:
        return self._states.setdefault(partition, {})

    def all_states(self) -> dict[str, UserState]:
        merged: dict[str, UserState] = {}
        for users in self._states.values():
            merged.update(users)
        return merged

    # -- the work -----------------------------------------------------------------------
    def process(self, batch: list[Record]) -> ProcessResult:
        result = ProcessResult()
        touched: dict[str, tuple[int, UserState]] = {}
        forgotten: dict[str, int] = {}
        for record in batch:
            if _is_forget(record):
                user_id = record.key.decode() if record.key else ""
                self.users(record.partition).pop(user_id, None)
                touched.pop(user_id, None)
                forgotten[user_id] = record.partition
                continue
            try:
                event = decode_click(record.value, self.settings.max_event_bytes)
            except BadEvent as error:
                result.rejected += 1
                self.rejected_by_reason[error.reason] += 1
                result.outputs.append(dead_letter(record, error, self.topics.dlq))
                continue
            state = self.apply(event, record.partition, record.offset, record.timestamp_ms)
            if state is None:
                result.skipped_duplicates += 1
                continue
            forgotten.pop(event.user_id, None)
            touched[event.user_id] = (record.partition, state)
            result.processed += 1
        for user_id, partition in forgotten.items():
            result.outputs.append(Output(self.changelog_topic, user_id.encode(), None,
                                         partition=partition))
        for user_id, (partition, state) in touched.items():
            result.outputs.append(Output(self.changelog_topic, user_id.encode(),
                                         encode_state(state), partition=partition))
            # The delta has been published; the next message carries only newer events.
            state.new_events = []
        return result

    def apply(self, event: ClickEvent, partition: int, offset: int,
              produced_ms: int = 0) -> UserState | None:
        """Apply one valid event; return the user's state, or None if already applied."""
        users = self.users(partition)
        state = users.get(event.user_id)
        if state is None:
            state = users[event.user_id] = UserState(user_id=event.user_id)
        applied = state.apply(event.item_id, ts=event.ts, event_id=event.event_id,
                              event_type=event.type, offset=offset, partition=partition,
                              recent_limit=self.settings.recent_items,
                              seen_limit=self.settings.max_seen_items)
        if not applied:
            return None
        state.trigger_produced_ms = produced_ms
        return state


def _is_forget(record: Record) -> bool:
    return any(k == CONTROL_HEADER and v == FORGET for k, v in record.headers)

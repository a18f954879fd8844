"""Ingest: validate clicks, update per-user state and online models, emit the changelog.

State is scoped by partition of ``clicks``: ``user-state`` is co-partitioned (same key, same
partition count, and every state message is pinned to its source partition), so restoring a
partition's users means reading one changelog partition. Each state records the offset of
the last click applied, so a click delivered again after a crash is not applied twice.
The online models of a partition (``PartitionModels``) are snapshotted into the same
changelog and re-learn the committed events since their snapshot on restore.

Control messages on ``clicks`` (``streamrec.control``) are applied at their position in
partition order: ``forget`` erases a user; ``adopt-model`` moves the partition's online
embeddings into a newly published deep model's item space (``streamrec.consumers.model_adoption``),
re-emits every user whose vector moved, and writes a snapshot ahead of those states.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from streamrec.consumers.model_adoption import ItemTableLoader, ModelAdopter
from streamrec.consumers.partition_models import PartitionModels, is_snapshot_key
from streamrec.consumers.snapshot_chunks import SnapshotLimits, SnapshotReader
from streamrec.online_models.blend import OnlineBlend
from streamrec.online_models.user_state import StateBounds, UserState, decode_state, encode_state
from streamrec.config import Settings
from streamrec.control import (ADOPT_MODEL, CONTROL_HEADER, CONTROL_KINDS, FORGET, BadControl,
                               kind_of, verify_control)
from streamrec.events import BadEvent, ClickBounds, ClickEvent, dead_letter, decode_click_record
from streamrec.input_bounds import (
    RESERVED_USER_PREFIX,
    BadInput,
    check_user_id,
    count_skip,
    decode_user_key,
)
from streamrec.processor import ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record

log = logging.getLogger(__name__)

__all__ = ["CONTROL_HEADER", "FORGET", "ADOPT_MODEL", "IngestProcessor", "RESERVED_USER_PREFIX"]


class IngestProcessor(ProcessorDefaults):
    """Pure ingest logic: ``process(batch)`` returns the changelog and dead-letter outputs.

    ``load_item_table`` reads the item table an adopt-model message names (default: from
    the model store folder, checksums verified); tests pass a fake.
    """

    def __init__(self, settings: Settings, load_item_table: ItemTableLoader | None = None
                 ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.changelog_topic = self.topics.user_state
        self._states: dict[int, dict[str, UserState]] = {}
        self._models: dict[int, PartitionModels] = {}
        self.rejected_by_reason: Counter[str] = Counter()
        self.adopter = ModelAdopter(load_item_table, store_root=settings.model_store)
        # Records skipped on input topics, by (topic, reason): read by the runtime as
        # streamrec_inputs_skipped_total{topic,reason}.
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()
        self.snapshot_limits = SnapshotLimits.from_settings(settings)
        self.snapshots = SnapshotReader(self.changelog_topic, self.snapshot_limits,
                                        self.skipped_by_reason)
        self.click_bounds = ClickBounds.from_settings(settings)
        self.state_bounds = StateBounds.from_settings(settings)

    @property
    def adoptions_by_outcome(self) -> Counter[str]:
        """adopt-model messages handled per partition, by outcome (``adopted``, reasons)."""
        return self.adopter.outcomes

    # -- state lifecycle, driven by the runtime on rebalance ---------------------------
    def restore(self, partition: int, changelog: Iterable[Record]) -> int:
        """Rebuild one partition's users (and models) from its changelog records."""
        users: dict[str, UserState] = {}
        models = self._new_models(partition)
        self.snapshots.drop(partition)
        for record in changelog:
            if record.key is None:
                count_skip(self.skipped_by_reason, record.topic,
                           BadInput("missing_key", "user-state record without a key"), log)
                continue
            if is_snapshot_key(record.key):
                # Only a complete, verified set decodes; anything else is a counted skip,
                # and without any valid snapshot the models re-learn from offset 0.
                snapshot = self.snapshots.offer(record)
                if models is not None and snapshot is not None:
                    models.load(snapshot)
                continue
            try:
                user_id = decode_user_key(record.key, self.settings.max_id_bytes)
                if record.value is None:  # tombstone: the user was forgotten
                    users.pop(user_id, None)
                    continue
                state = decode_state(record.value, self.state_bounds, record.timestamp_ms)
                if state.user_id != user_id:
                    raise BadInput("key_mismatch", "state's user_id is not its key")
            except BadInput as error:
                # The user keeps the state restored so far (if any): a bad record is skipped.
                count_skip(self.skipped_by_reason, record.topic, error, log)
                continue
            state.new_events = []
            users[user_id] = state
        self.snapshots.discard(partition)  # the whole log was read: no manifest is coming
        self._states[partition] = users
        if models is not None:
            models.chunks_on_topic = self.snapshots.chunks_on_topic(partition)
            self._models[partition] = models
        return len(users)

    def rewarm_from(self, partition: int) -> int | None:
        """First input offset the partition's models have not learned (None: no models)."""
        models = self._models.get(partition)
        return None if models is None else models.snapshot_offset + 1

    def rewarm(self, partition: int, records: Iterable[Record]) -> None:
        """Re-learn committed inputs after the snapshot; user states are not touched."""
        models = self._models[partition]
        for record in records:
            kind = kind_of(record.headers)
            if kind in CONTROL_KINDS and not self._signed(record):
                continue  # process dead-lettered it: it changed nothing then either
            if kind == FORGET:
                try:
                    user_id = self._forgotten_user(record)
                except BadInput:
                    continue  # dead-lettered by process: it changed nothing then either
                models.forget(user_id)
                # The offset of the forget request is where a snapshot taken now stands.
                models.pending_last_offset = record.offset
                continue
            if kind == ADOPT_MODEL:
                # Unreachable after a commit in practice: an adoption writes a snapshot in
                # its own transaction, so restores start at or after it. Kept so a rewarm
                # from an older snapshot still changes space at the same point.
                self.adopter.adopt(models, record.value)
                models.pending_last_offset = record.offset
                continue
            if kind is not None:
                continue  # an unknown control kind: dead-lettered by process
            try:
                event = decode_click_record(record, self.click_bounds)
            except BadInput:
                continue
            models.add(event, record.offset)

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._states.pop(partition, None)
            self._models.pop(partition, None)
            self.snapshots.drop(partition)

    def users(self, partition: int) -> dict[str, UserState]:
        return self._states.setdefault(partition, {})

    def models(self, partition: int) -> PartitionModels | None:
        if partition not in self._models:
            models = self._new_models(partition)
            if models is None:
                return None
            self._models[partition] = models
        return self._models[partition]

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
        snapshots: dict[int, bytes] = {}
        adopted: set[int] = set()  # partitions that met an adopt-model message in this batch
        for record in batch:
            kind = kind_of(record.headers)
            if kind in CONTROL_KINDS and not self._signed(record, result):
                continue
            if kind == ADOPT_MODEL:
                # Handled before any key check: the key is not a user (never dead-lettered).
                for moved in self.adopt_model(record):
                    touched[moved] = (record.partition, self.users(record.partition)[moved])
                adopted.add(record.partition)
                models = self._models.get(record.partition)
                if models is not None and models.snapshot_due():  # always due after adopt
                    _take_snapshot(models, snapshots)
                continue
            if kind == FORGET:
                try:
                    user_id = self._forgotten_user(record)
                except BadInput as error:
                    self._reject(result, record, error)
                    continue
                touched.pop(user_id, None)
                for moved in self.forget(user_id, record.partition, record.offset):
                    touched[moved] = (record.partition, self.users(record.partition)[moved])
                forgotten[user_id] = record.partition
                models = self._models.get(record.partition)
                if models is not None and models.snapshot_due():
                    _take_snapshot(models, snapshots)
                continue
            try:
                if kind is not None:
                    raise BadEvent("unknown_control", f"control kind {kind!r:.64} is not known")
                event = decode_click_record(record, self.click_bounds)
            except BadInput as error:
                self._reject(result, record, error)
                continue
            state = self.apply(event, record.partition, record.offset, record.timestamp_ms)
            if state is None:
                result.skipped_duplicates += 1
                continue
            forgotten.pop(event.user_id, None)
            touched[event.user_id] = (record.partition, state)
            result.processed += 1
            for user_id in self._learn(event, record.partition, record.offset):
                # A micro-batch moved these users' vectors: their states go out again.
                touched[user_id] = (record.partition, self.users(record.partition)[user_id])
            models = self._models.get(record.partition)
            if models is not None and models.snapshot_due():
                _take_snapshot(models, snapshots)
        for user_id, partition in forgotten.items():
            result.outputs.append(Output(self.changelog_topic, user_id.encode(), None,
                                         partition=partition))
        for partition in sorted(adopted & snapshots.keys()):
            # Before the states, after an adoption only: every state of this partition in
            # the batch carries a vector of the new size, and a scorer reading the topic in
            # order should hold the new blend before it meets one. Ingest's own restore
            # reads whole committed transactions (up to the last stable offset), so the
            # order inside one does not matter to it. (The snapshot is its chunks, the
            # record naming them, then tombstones: a scorer decodes it at the naming one.)
            result.outputs.extend(self._models[partition].snapshot_records(
                self.changelog_topic, snapshots.pop(partition)))
        for user_id, (partition, state) in touched.items():
            result.outputs.append(Output(self.changelog_topic, user_id.encode(),
                                         encode_state(state), partition=partition))
            # The delta has been published; the next message carries only newer events.
            state.new_events = []
        for partition, payload in snapshots.items():
            # After the states: a restore that sees the snapshot has the states before it.
            result.outputs.extend(self._models[partition].snapshot_records(
                self.changelog_topic, payload))
        return result

    def _signed(self, record: Record, result: ProcessResult | None = None) -> bool:
        """Whether a control record may apply; a refused one is dead-lettered into
        ``result`` (``bad_signature``) when given. Always True without a control secret."""
        try:
            verify_control(record.headers, record.key, record.value,
                           self.settings.control_secret)
        except BadControl as error:
            if result is not None:
                self._reject(result, record, BadInput(error.reason, error.detail))
            return False
        return True

    def _reject(self, result: ProcessResult, record: Record, error: BadInput) -> None:
        result.rejected += 1
        self.rejected_by_reason[error.reason] += 1
        result.outputs.append(dead_letter(record, error, self.topics.dlq,
                                          self.settings.max_message_bytes))

    def _forgotten_user(self, record: Record) -> str:
        """The user a forget request names: its key, a valid user id (else ``BadInput``).

        A reserved id is refused too: its tombstone would erase a partition snapshot.
        """
        user_id = decode_user_key(record.key, self.settings.max_id_bytes)
        check_user_id(user_id, "key", self.settings.max_id_bytes)
        return user_id

    def apply(self, event: ClickEvent, partition: int, offset: int,
              produced_ms: int = 0) -> UserState | None:
        """Apply one valid event to the user's state; None if it was already applied."""
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

    def forget(self, user_id: str, partition: int, offset: int = -1) -> list[str]:
        """Erase a user's state and model traces; return users whose vectors moved."""
        self.users(partition).pop(user_id, None)
        models = self.models(partition)
        if models is None:
            return []
        learned = models.forget(user_id)
        models.pending_last_offset = max(models.pending_last_offset, offset)
        return self._refresh_embeddings(partition, models, learned)

    def adopt_model(self, record: Record) -> list[str]:
        """Apply an adopt-model control message; return users whose states must go out.

        After an adoption every user vector of the partition is in the new space: each
        state whose ``embedding`` changed is re-emitted (also to None, for a user the
        embeddings no longer hold), so no state of an old size stays behind.
        """
        models = self.models(record.partition)
        if models is None:
            return []  # online learning is off: there are no embeddings to move
        learned, adopted = self.adopter.adopt(models, record.value)
        # The offset of the control message is where a snapshot taken now stands.
        models.pending_last_offset = record.offset
        if not adopted:
            return self._refresh_embeddings(record.partition, models, learned)
        everyone = list(self.users(record.partition))
        return self._refresh_embeddings(record.partition, models, everyone, only_changed=True)

    def _learn(self, event: ClickEvent, partition: int, offset: int) -> list[str]:
        models = self.models(partition)
        if models is None:
            return []
        learned_users = models.add(event, offset)
        if not learned_users:
            return []
        return self._refresh_embeddings(partition, models, learned_users)

    def _refresh_embeddings(self, partition: int, models: PartitionModels,
                            learned_users: list[str], only_changed: bool = False) -> list[str]:
        users = self.users(partition)
        moved = []
        for user_id in dict.fromkeys(learned_users):
            state = users.get(user_id)
            if state is None:
                continue
            vector = models.blend.user_vector(user_id)
            if only_changed and vector == state.embedding:
                continue
            state.embedding = vector
            moved.append(user_id)
        return moved

    def _new_models(self, partition: int) -> PartitionModels | None:
        if not self.settings.online_learning:
            return None
        seed = self.settings.seed * 1_000 + partition
        return PartitionModels(partition, lambda p: OnlineBlend(
            half_life_s=self.settings.popularity_half_life_s, seed=seed),
            self.settings.learn_every, self.settings.snapshot_every, self.snapshot_limits)

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        """The ``clicks.dlq`` message for a record the runtime gave up on (its processing
        kept raising: ``streamrec.transport.poison_pill``); counted like any rejected click."""
        self.rejected_by_reason[reason] += 1
        return dead_letter(record, BadEvent(reason, detail), self.topics.dlq)


def _take_snapshot(models: PartitionModels, snapshots: dict[int, bytes]) -> None:
    # The latest snapshot of a partition in a batch is the one published.
    payload = models.snapshot()
    if payload is not None:
        snapshots[models.partition] = payload


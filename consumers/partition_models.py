"""The online models of one ``clicks`` partition, learned in fixed micro-batches.

Ingest keeps one ``OnlineBlend`` (user embeddings + FM + recency) per partition. Events are
buffered and learned ``learn_every`` at a time, counted in the partition's own event order,
so the models are a pure function of the partition's event sequence — not of how Kafka
happened to cut poll batches. That is what lets a restarted instance reach bit-identical
models: it loads the latest snapshot and re-learns the events committed since.

A snapshot is written to ``user-state`` (pinned to the partition) inside the same
transaction as the states, right after a micro-batch: the buffer is empty then, so the
snapshot plus the offset of its last event is the whole model state. It is plain data
(``streamrec.consumers.snapshot_codec``, never pickle), in chunks named by a record under
``SNAPSHOT_KEY`` (``streamrec.consumers.snapshot_chunks``).

Control messages (forget, adopt-model) first ``flush`` the pending events as a shorter
micro-batch, so what they change happens at their own position in the partition's order,
and make a snapshot due, so a restore never has to apply them again.
"""

from __future__ import annotations

import logging
from typing import Callable

from streamrec.consumers.snapshot_chunks import (SNAPSHOT_KEY, SnapshotLimits, chunk_count,
                                       is_snapshot_key, snapshot_records)
from streamrec.consumers.snapshot_codec import PartitionSnapshot, encode_snapshot
from streamrec.online_models.blend import OnlineBlend
from streamrec.events import ClickEvent
from streamrec.records import Output

log = logging.getLogger(__name__)

__all__ = ["SNAPSHOT_KEY", "PartitionModels", "is_snapshot_key"]


class PartitionModels:
    """One partition's blend, its pending micro-batch and its snapshot bookkeeping."""

    def __init__(self, partition: int, factory: Callable[[int], OnlineBlend],
                 learn_every: int, snapshot_every: int,
                 limits: SnapshotLimits = SnapshotLimits()) -> None:
        self.partition = partition
        self.blend = factory(partition)
        self.learn_every = learn_every
        self.snapshot_every = snapshot_every
        self.pending: list[ClickEvent] = []
        self.pending_last_offset = -1
        # Offset of the last event the last snapshot includes (-1: none; re-learn from 0).
        self.snapshot_offset = -1
        self.learned_since_snapshot = 0
        # Version of the deep model whose item table the embeddings adopted last (if any).
        self.adopted_version: str | None = None
        self.limits = limits
        # Chunk keys the partition's snapshots left on user-state (tombstoned when unused).
        self.chunks_on_topic = 0

    def add(self, event: ClickEvent, offset: int) -> list[str] | None:
        """Buffer one event; learn the micro-batch when full and return its users."""
        self.pending.append(event)
        self.pending_last_offset = offset
        if len(self.pending) < self.learn_every:
            return None
        batch, self.pending = self.pending, []
        self.blend.learn_many(batch)
        self.learned_since_snapshot += len(batch)
        return [e.user_id for e in batch]

    def flush(self) -> list[str]:
        """Learn the pending events now, as a shorter micro-batch; return their users."""
        batch, self.pending = self.pending, []
        if batch:
            self.blend.learn_many(batch)
            self.learned_since_snapshot += len(batch)
        return [e.user_id for e in batch]

    def make_snapshot_due(self) -> None:
        """The next ``snapshot_due`` (buffer empty) says yes, whatever was learned since."""
        self.learned_since_snapshot = max(self.learned_since_snapshot, self.snapshot_every)

    def snapshot_due(self) -> bool:
        # Only right after a micro-batch (empty buffer): the snapshot is then complete.
        return not self.pending and self.learned_since_snapshot >= self.snapshot_every

    def snapshot(self) -> bytes | None:
        """The encoded snapshot of the models now (``snapshot_records`` publishes it).

        None if it would be larger than readers accept: restores then start from the
        previous snapshot and re-learn more, which is slow but exact.
        """
        self.snapshot_offset = self.pending_last_offset
        self.learned_since_snapshot = 0
        payload = encode_snapshot(self.partition, self.snapshot_offset, self.adopted_version,
                                  self.blend)
        limits = self.limits
        if (len(payload) > limits.max_bytes
                or chunk_count(len(payload), limits.chunk_bytes) > limits.max_chunks):
            log.error("partition %d: the model snapshot at offset %d is %d bytes, more than "
                      "readers accept (snapshot_max_bytes, snapshot_max_chunks); not written",
                      self.partition, self.snapshot_offset, len(payload))
            return None
        return payload

    def snapshot_records(self, topic: str, payload: bytes) -> list[Output]:
        """The records that publish ``payload``: call it only for what is sent.

        Chunks left by the partition's previous, longer set are tombstoned.
        """
        outputs = snapshot_records(topic, self.partition, payload, self.snapshot_offset,
                                   self.limits.chunk_bytes, self.chunks_on_topic)
        self.chunks_on_topic = chunk_count(len(payload), self.limits.chunk_bytes)
        return outputs

    def load(self, snapshot: PartitionSnapshot) -> None:
        """Take a decoded, validated snapshot (``SnapshotReader``) as the models."""
        self.blend = snapshot.blend
        self.snapshot_offset = snapshot.offset
        self.adopted_version = snapshot.adopted_version
        self.pending = []
        self.learned_since_snapshot = 0

    def forget(self, user_id: str) -> list[str]:
        """Erase a user from the models; return the users a flushed micro-batch moved.

        The pending micro-batch (without the user's events) is learned first and a new
        snapshot is made due, so the next snapshot, which replaces the older ones under
        compaction, holds nothing of the user. Forget requests travel the partition in
        order, so this stays a pure function of the partition's message sequence.
        """
        self.pending = [e for e in self.pending if e.user_id != user_id]
        learned = self.flush()
        self.blend.forget_user(user_id)
        self.make_snapshot_due()
        return learned


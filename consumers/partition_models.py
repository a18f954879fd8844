"""The online models of one ``clicks`` partition, learned in fixed micro-batches.

Ingest keeps one ``OnlineBlend`` (user embeddings + FM + recency) per partition. Events are
buffered and learned ``learn_every`` at a time, counted in the partition's own event order,
so the models are a pure function of the partition's event sequence — not of how Kafka
happened to cut poll batches. That is what lets a restarted instance reach bit-identical
models: it loads the latest snapshot and re-learns the events committed since.

A snapshot is written to ``user-state`` under ``SNAPSHOT_KEY`` (pinned to the partition),
inside the same transaction as the states, right after a micro-batch: the buffer is empty
then, so the snapshot plus the offset of its last event is the whole model state.

Control messages (forget, adopt-model) first ``flush`` the pending events as a shorter
micro-batch, so what they change happens at their own position in the partition's order,
and make a snapshot due, so a restore never has to apply them again.
"""

from __future__ import annotations

import pickle
from typing import Callable

from online_models.blend import OnlineBlend
from streamrec.events import ClickEvent

SNAPSHOT_KEY = b"__streamrec_snapshot__"
_SNAPSHOT_FORMAT = 1


class PartitionModels:
    """One partition's blend, its pending micro-batch and its snapshot bookkeeping."""

    def __init__(self, partition: int, factory: Callable[[int], OnlineBlend],
                 learn_every: int, snapshot_every: int) -> None:
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

    def snapshot(self) -> bytes:
        self.snapshot_offset = self.pending_last_offset
        self.learned_since_snapshot = 0
        return pickle.dumps({"format": _SNAPSHOT_FORMAT, "partition": self.partition,
                             "offset": self.snapshot_offset, "blend": self.blend,
                             "adopted_version": self.adopted_version},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, payload: bytes) -> None:
        # user-state is written only by ingest (restrict it with ACLs in production):
        # a snapshot is trusted like the code that wrote it.
        data = load_snapshot(payload)
        self.blend = data["blend"]
        self.snapshot_offset = int(data["offset"])
        self.adopted_version = data.get("adopted_version")  # absent from older snapshots
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


def load_snapshot(payload: bytes) -> dict:
    data = pickle.loads(payload)
    if not isinstance(data, dict) or data.get("format") != _SNAPSHOT_FORMAT:
        raise ValueError("not a streamrec model snapshot of a known format")
    return data

"""Which partitions a member holds state for, and what a rebalance changes about that.

kafka-python's rebalance protocol is eager: every rebalance first revokes all of a member's
partitions, then assigns the new set, even when most of them stay. Dropping and restoring
every partition on every rebalance re-reads whole changelogs (seconds per partition), so
the loop keeps the state of partitions it still owns and only

- drops partitions it no longer owns,
- restores partitions it did not hold, and
- drops and restores partitions it kept but whose state it can no longer vouch for: they
  were reported lost (another member may have owned them meanwhile), or their committed
  offsets moved away from what this member last committed or restored (someone else
  committed them during the rebalance).

The callbacks run inside ``poll`` on the client's loop, so they only record; the loop
reconciles after ``poll`` (``PartitionOwnership.reconcile``), where restores may block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from kafka import ConsumerRebalanceListener
from kafka import TopicPartition as KafkaTopicPartition


@dataclass(frozen=True)
class Reconciled:
    """What the loop must do after a rebalance: drop, then restore; ``kept`` stays as is."""

    drop: list[int]
    restore: list[int]
    kept: list[int]


@dataclass
class PartitionOwnership(ConsumerRebalanceListener):
    """Partitions this member holds state for, and the offsets it vouches for on each."""

    input_topics: list[str]
    # False rebuilds every partition on every rebalance, as before this module: the
    # reference the rebalance benchmark measures against.
    keep: bool = True
    held: set[int] = field(default_factory=set)
    # (topic, partition) -> the committed offset this member's state reflects.
    vouched: dict[tuple[str, int], int | None] = field(default_factory=dict)
    _changed: bool = False
    _lost: set[int] = field(default_factory=set)

    # -- consumer callbacks: record only -----------------------------------------------------
    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        # Every polled batch's offsets are in its transaction before the next poll, and the
        # loop settles that transaction before it reconciles: nothing is pending here.
        self._changed = True

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        self._changed = True

    def on_partitions_lost(self, lost):  # type: ignore[no-untyped-def]
        # Lost (not revoked): another member may own them already, so their state is stale.
        self._changed = True
        self._lost.update(tp.partition for tp in lost)

    # -- the loop's side ------------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        return self._changed

    def reconcile(self, assignment: Iterable[KafkaTopicPartition],
                  committed: Callable[[str, int], int | None]) -> Reconciled:
        """Compare the new assignment with what is held; ``committed(topic, p)`` asks the group."""
        owned = {tp.partition for tp in assignment}
        stale = set(self._lost) if self.keep else set(self.held)
        for p in owned & self.held - stale:
            if any(committed(topic, p) != self.vouched.get((topic, p))
                   for topic in self.input_topics):
                stale.add(p)
        drop = (self.held - owned) | (self.held & stale)
        restore = (owned - self.held) | (owned & stale)
        kept = self.held & owned - stale
        self.held = set(kept)
        for topic in self.input_topics:
            for p in drop:
                self.vouched.pop((topic, p), None)
        self._lost.clear()
        self._changed = False
        return Reconciled(sorted(drop), sorted(restore), sorted(kept))

    def restored(self, partition: int, committed: dict[str, int | None]) -> None:
        """The state of ``partition`` now reflects these committed offsets (one per topic)."""
        self.held.add(partition)
        for topic, offset in committed.items():
            self.vouched[(topic, partition)] = offset

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        """A transaction committed these next-offsets-to-read."""
        self.vouched.update(offsets)

    def forget(self, partitions: Iterable[int]) -> None:
        """The state of these partitions was dropped (a failed batch, a failed session)."""
        for p in partitions:
            self.held.discard(p)
            for topic in self.input_topics:
                self.vouched.pop((topic, p), None)

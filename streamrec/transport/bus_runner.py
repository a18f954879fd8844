"""The consumer loop over the in-process bus, with the lifecycle of the Kafka runtime.

``InProcessRunner`` drives a processor through exactly the members and the order that
``streamrec.transport.runtime.ProcessorService`` uses on Kafka, so the demo, replay and tests measure
what a deployment runs:

1. an assigned partition is restored from the changelog before its first batch (the
   scorer, whose changelog is its input, only up to its committed position) and its models
   re-learn the committed inputs since their snapshot (``rewarm_from`` / ``rewarm``);
2. a poll returns at most ``batch_size`` records in all, taken partition by partition from
   the committed positions, as ``max_poll_records`` does;
3. the batch's outputs and the new positions are committed together: appended to the bus
   and the positions moved in one step, so a failure before it leaves nothing behind;
4. a failed commit (``before_commit`` raising, the fault-injection hook) fails the session:
   every partition's state is dropped and restored from what is committed, and the batch
   is read again;
5. a batch whose processing raises is re-processed record by record under the poison-pill
   policy (``streamrec.transport.poison_pill``), exactly as on Kafka;
6. ``revoke`` drops partitions; ``assign`` restores only the ones not held (a rebalance
   keeps the state of kept partitions); ``crash`` is a failed session;
7. a processor with ``global_topics`` is fed every partition of them, owned or not, before
   each owned batch: up to ``poll_limit`` records (``streamrec.transport.global_reader``) taken
   partition by partition from the runner's global positions to ``learn_global``, which
   advance once it returned. Dropping a partition (revoke, crash, a poisoned batch's
   restore) moves its global position back to its committed position if beyond it: the
   processor ignored its global records while it owned it. If ``learn_global`` raises, the
   session fails (``crash``) and the error propagates; the records are fed again next step.

Runners given the same ``positions`` dict are members of one group: each commits the
partitions it holds, and a partition handed from one to the other resumes where it was
committed.
"""

from __future__ import annotations

from typing import Callable, Iterable

from streamrec.transport.bus import InProcessBus
from streamrec.transport.global_reader import poll_limit
from streamrec.transport.poison_pill import PoisonPillPolicy, process_in_isolation
from streamrec.processor import Processor, rewarm_each
from streamrec.records import ProcessResult, Record


class _FailedCommit(Exception):
    """The injected commit failure: the session ends, as on Kafka."""


class InProcessRunner:
    """One processor on the bus: assigned partitions, committed positions, one poll at a time."""

    def __init__(self, bus: InProcessBus, processor: Processor, input_topics: list[str],
                 batch_size: int = 500, *, restore_to_committed: bool = False,
                 partitions: Iterable[int] | None = None,
                 poison_pill: PoisonPillPolicy | None = None,
                 before_commit: Callable[[list[Record]], None] | None = None,
                 positions: dict[tuple[str, int], int] | None = None) -> None:
        self.bus = bus
        self.processor = processor
        self.input_topics = input_topics
        self.batch_size = batch_size
        self.restore_to_committed = restore_to_committed
        self.poison_pill = poison_pill if poison_pill is not None else PoisonPillPolicy()
        self.before_commit = before_commit
        # (topic, partition) -> the next offset to read, as committed (shared by a group).
        self.positions: dict[tuple[str, int], int] = {} if positions is None else positions
        # (topic, partition) of the global topics -> the next offset to hand to learn_global.
        self.global_positions: dict[tuple[str, int], int] = {}
        self.held: list[int] = []
        self.batches_committed = 0
        self.failed_sessions = 0
        self.records_dead_lettered = 0
        self._next_partition = 0  # where the next poll starts, so no partition starves
        self._next_global = 0  # the same for the global reads
        self.assign(range(bus.partitions) if partitions is None else partitions)

    # -- assignment ------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> list[int]:
        """Own these partitions from now on; restore the ones not held. Returns those restored."""
        wanted = sorted(set(partitions))
        new = [p for p in wanted if p not in self.held]
        dropped = [p for p in self.held if p not in wanted]
        if dropped:
            self._drop(dropped)
        self.held = wanted
        self._restore(new)
        return new

    def revoke(self, partitions: Iterable[int]) -> None:
        self.assign([p for p in self.held if p not in set(partitions)])

    def crash(self) -> None:
        """A failed session: forget every partition's state, restore it from what is committed."""
        self.failed_sessions += 1
        held, self.held = self.held, []
        self._drop(held)
        self.assign(held)

    def _drop(self, partitions: list[int]) -> None:
        """Forget these partitions' state; the global reads go back to their committed positions."""
        self.processor.drop(partitions)
        for topic in self.processor.global_topics:
            for p in partitions:
                position = self.global_positions.get((topic, p))
                committed = self.positions.get((topic, p), 0)
                if position is not None and position > committed:
                    self.global_positions[(topic, p)] = committed

    def _restore(self, partitions: list[int]) -> None:
        changelog = self.processor.changelog_topic
        for p in partitions:
            stop = self.positions.get((changelog, p), 0) if self.restore_to_committed else None
            records = self.bus.topic(changelog)[p][:stop]
            self.processor.restore(p, records)
            self._rewarm(p)

    def _rewarm(self, partition: int) -> None:
        start = self.processor.rewarm_from(partition)
        topic = self.input_topics[0]
        committed = self.positions.get((topic, partition), 0)
        if start is None or start >= committed:
            return
        rewarm_each(self.processor, partition, self.bus.topic(topic)[partition][start:committed])

    # -- the loop --------------------------------------------------------------------------------
    def poll(self) -> list[Record]:
        """At most ``batch_size`` records from the committed positions of held partitions."""
        batch: list[Record] = []
        owned = [(t, p) for t in self.input_topics for p in self.held]
        if not owned:
            return batch
        start = self._next_partition % len(owned)
        self._next_partition += 1
        for topic, partition in owned[start:] + owned[:start]:
            room = self.batch_size - len(batch)
            if room <= 0:
                break
            batch.extend(self.bus.read(topic, partition, self.positions.get((topic, partition), 0),
                                       room))
        return batch

    def poll_global(self) -> list[Record]:
        """The next records of every partition of the global topics, from the global positions."""
        parts = [(t, p) for t in self.processor.global_topics
                 for p in range(len(self.bus.topic(t)))]
        if not parts:
            return []
        owned = len(self.held) * len(set(self.processor.global_topics) & set(self.input_topics))
        limit = poll_limit(self.batch_size, len(parts), owned)
        start = self._next_global % len(parts)
        self._next_global += 1
        records: list[Record] = []
        for topic, partition in parts[start:] + parts[:start]:
            room = limit - len(records)
            if room <= 0:
                break
            records.extend(self.bus.read(topic, partition,
                                         self.global_positions.get((topic, partition), 0), room))
        return records

    def learn_global(self) -> int:
        """Feed the next global records to ``learn_global``; return how many."""
        records = self.poll_global()
        if not records:
            return 0
        try:
            self.processor.learn_global(records)
        except Exception:
            self.crash()  # as on Kafka: a failed session; the positions did not move
            raise
        for record in records:
            self.global_positions[(record.topic, record.partition)] = record.offset + 1
        return len(records)

    def step(self, timestamp_ms: int = 0) -> int:
        """Feed the global records, then poll, process and commit one batch; return how many
        records were read (global ones included)."""
        learned = self.learn_global()
        batch = self.poll()
        if not batch:
            return learned
        try:
            self._process_and_commit(batch, timestamp_ms)
        except _FailedCommit:
            self.crash()  # the next poll reads the batch again from the committed positions
        return learned + len(batch)

    def _process_and_commit(self, batch: list[Record], timestamp_ms: int) -> None:
        try:
            result = self.processor.process(batch)
        except Exception:  # noqa: BLE001 - processors are pure: a bug or a poisoned record
            outcome = process_in_isolation(
                batch, self.processor, self.poison_pill,
                restore=self._rebuild, commit=lambda rs, r: self._commit(rs, r, timestamp_ms))
            self.records_dead_lettered += len(outcome.dead_lettered)
            return
        self._commit(batch, result, timestamp_ms)

    def drain(self, timestamp_ms: int = 0) -> int:
        total = 0
        while (n := self.step(timestamp_ms)) > 0:
            total += n
        return total

    def _rebuild(self, partitions: list[int]) -> None:
        self._drop(partitions)
        self._restore(partitions)

    def _commit(self, batch: list[Record], result: ProcessResult, timestamp_ms: int) -> None:
        if self.before_commit is not None:
            try:
                self.before_commit(batch)
            except Exception as error:  # noqa: BLE001 - the injected failure
                raise _FailedCommit() from error  # nothing of the batch was committed
        for output in result.outputs:
            self.bus.produce(output, timestamp_ms)
        for record in batch:
            self.positions[(record.topic, record.partition)] = record.offset + 1
        self.batches_committed += 1

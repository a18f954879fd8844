"""The consumer loop over the in-process bus, with the lifecycle of the Kafka runtime.

``InProcessRunner`` drives a processor through exactly the members and the order that
``streamrec.runtime.ProcessorService`` uses on Kafka, so the demo, replay and tests measure
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
   policy (``streamrec.poison_pill``), exactly as on Kafka;
6. ``revoke`` drops partitions; ``assign`` restores only the ones not held (a rebalance
   keeps the state of kept partitions); ``crash`` is a failed session.
"""

from __future__ import annotations

from typing import Callable, Iterable

from streamrec.bus import InProcessBus
from streamrec.poison_pill import PoisonPillPolicy, process_in_isolation
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
                 before_commit: Callable[[list[Record]], None] | None = None) -> None:
        self.bus = bus
        self.processor = processor
        self.input_topics = input_topics
        self.batch_size = batch_size
        self.restore_to_committed = restore_to_committed
        self.poison_pill = poison_pill if poison_pill is not None else PoisonPillPolicy()
        self.before_commit = before_commit
        # (topic, partition) -> the next offset to read, as committed.
        self.positions: dict[tuple[str, int], int] = {}
        self.held: list[int] = []
        self.batches_committed = 0
        self.failed_sessions = 0
        self.records_dead_lettered = 0
        self._next_partition = 0  # where the next poll starts, so no partition starves
        self.assign(range(bus.partitions) if partitions is None else partitions)

    # -- assignment ------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> list[int]:
        """Own these partitions from now on; restore the ones not held. Returns those restored."""
        wanted = sorted(set(partitions))
        new = [p for p in wanted if p not in self.held]
        dropped = [p for p in self.held if p not in wanted]
        if dropped:
            self.processor.drop(dropped)
        self.held = wanted
        self._restore(new)
        return new

    def revoke(self, partitions: Iterable[int]) -> None:
        self.assign([p for p in self.held if p not in set(partitions)])

    def crash(self) -> None:
        """A failed session: forget every partition's state, restore it from what is committed."""
        self.failed_sessions += 1
        held, self.held = self.held, []
        self.processor.drop(held)
        self.assign(held)

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

    def step(self, timestamp_ms: int = 0) -> int:
        """Poll, process and commit one batch; return how many records were read."""
        batch = self.poll()
        if not batch:
            return 0
        try:
            self._process_and_commit(batch, timestamp_ms)
        except _FailedCommit:
            self.crash()  # the next poll reads the batch again from the committed positions
        return len(batch)

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
        self.processor.drop(partitions)
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

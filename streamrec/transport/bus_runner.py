"""The consumer loop over the in-process bus, with the lifecycle of the Kafka runtime.

``InProcessRunner`` drives a processor through exactly the members and the order that
``streamrec.transport.runtime.ProcessorService`` uses on Kafka, so the demo, replay and tests measure
what a deployment runs:

1. an assigned partition is restored before its first batch: first the processor's own
   ``state_topic`` partition, whole (``restore_state``), then the changelog (the scorer,
   whose changelog is its input, only up to its committed position), and its models
   re-learn the committed inputs since their snapshot (``rewarm_from`` / ``rewarm``);
2. a poll returns at most ``batch_size`` records in all, taken partition by partition from
   the committed positions, as ``max_poll_records`` does;
3. the batch's outputs and the new positions are committed together: appended to the bus
   and the positions moved in one step, so a failure before it leaves nothing behind (an
   output to a partition its topic lacks is refused before anything is appended);
4. a failed commit (``before_commit`` raising, the fault-injection hook) fails the session:
   every partition's state is dropped and restored from what is committed, and the batch
   is read again;
5. a batch whose processing raises is re-processed record by record under the poison-pill
   policy (``streamrec.transport.poison_pill``), exactly as on Kafka;
6. ``revoke`` drops partitions; ``assign`` restores only the ones not held (a rebalance
   keeps the state of kept partitions); ``crash`` is a failed session;
7. a processor with ``global_topics`` also reads every partition of them it does not own,
   from the runner's global positions, up to ``poll_limit`` records per step
   (``streamrec.transport.global_reader``), marked ``Record.owned = False``; the owned and global
   records of those topics are handed over merged in event-time order
   (``streamrec.transport.event_time``), a partition counting as caught up when its next offset is
   the end of its log. Records read but not yet handed over are not committed, and a
   failed session reads them again (the global ones from the positions ``process``
   returned for). A dropped partition is read globally from its committed position: while
   held, its records came through the owned path.

Runners given the same ``positions`` dict are members of one group: each commits the
partitions it holds, and a partition handed from one to the other resumes where it was
committed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from streamrec.transport.bus import InProcessBus
from streamrec.transport.event_time import PAUSE_AT, EventTimeMerge
from streamrec.transport.global_reader import poll_limit
from streamrec.transport.poison_pill import PoisonPillPolicy, process_in_isolation
from streamrec.processor import Processor, check_state_topic, rewarm_each
from streamrec.records import ProcessResult, Record, TopicPartition


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
        check_state_topic(processor, input_topics)
        self.bus = bus
        self.processor = processor
        self.input_topics = input_topics
        self.batch_size = batch_size
        self.restore_to_committed = restore_to_committed
        self.poison_pill = poison_pill if poison_pill is not None else PoisonPillPolicy()
        self.before_commit = before_commit
        # (topic, partition) -> the next offset to read, as committed (shared by a group).
        self.positions: dict[tuple[str, int], int] = {} if positions is None else positions
        # (topic, partition) of the global topics not owned -> the next offset to hand over
        # again after a failed session (past what ``process`` returned for).
        self.global_positions: dict[tuple[str, int], int] = {}
        # The session's read-ahead: next offset to read per owned and per global partition.
        self._read: dict[tuple[str, int], int] = {}
        self._global_read: dict[tuple[str, int], int] = {}
        # Processors without global topics get their batches as polled, as before.
        self.merge = (EventTimeMerge(processor.event_time, idle_s=float("inf"))
                      if processor.global_topics else None)
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
        # The session's read-ahead is gone: global records are read again from what was
        # handed over (the processor keeps item-side knowledge across a failed session).
        self._global_read.clear()
        if self.merge is not None:
            self.merge.discard(list(self.merge.first_offsets()))
        self.assign(held)

    def _drop(self, partitions: list[int]) -> None:
        """Forget these partitions' state and what was read ahead of their commits; the
        global reads go back to their committed positions."""
        self.processor.drop(partitions)
        for topic in self.input_topics:
            for p in partitions:
                self._read.pop((topic, p), None)  # the next read starts from the commit
        if self.merge is not None:
            self.merge.discard([TopicPartition(t, p) for t in self.input_topics
                                for p in partitions])
        for topic in self.processor.global_topics:
            for p in partitions:
                # While held it was read by the owned path, up to its commit.
                self.global_positions[(topic, p)] = self.positions.get((topic, p), 0)
                self._global_read.pop((topic, p), None)

    def _restore(self, partitions: list[int]) -> None:
        changelog = self.processor.changelog_topic
        if self.merge is not None:  # read globally until now: from now on the owned path's
            self.merge.discard([TopicPartition(t, p) for t in self.processor.global_topics
                                for p in partitions])
            for topic in self.processor.global_topics:
                for p in partitions:
                    self._global_read.pop((topic, p), None)
        state_topic = self.processor.state_topic
        for p in partitions:
            if state_topic is not None:
                # Whole, unlike the changelog below: a batch's outputs reach the bus only in
                # ``_commit``, in the step that moves its positions; a batch whose commit
                # failed appends nothing, and one whose processing raised nothing either (its
                # records are committed again one by one, each with its own outputs). So
                # every record of the state topic is of a committed batch and its end is the
                # committed position, as the end of the Kafka topic read read_committed is.
                # Its own state first, as on Kafka: the changelog's restore may build on it.
                self.processor.restore_state(p, list(self.bus.topic(state_topic)[p]))
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
        """At most ``batch_size`` records read ahead from the held partitions."""
        batch: list[Record] = []
        owned = [(t, p) for t in self.input_topics for p in self.held
                 if self.merge is None or self.merge.buffered(TopicPartition(t, p)) < PAUSE_AT]
        if not owned:
            return batch
        start = self._next_partition % len(owned)
        self._next_partition += 1
        for topic, partition in owned[start:] + owned[:start]:
            room = self.batch_size - len(batch)
            if room <= 0:
                break
            batch.extend(self.bus.read(topic, partition, self._read_position(topic, partition),
                                       room))
        for record in batch:
            self._read[(record.topic, record.partition)] = record.offset + 1
        return batch

    def _read_position(self, topic: str, partition: int) -> int:
        return self._read.get((topic, partition), self.positions.get((topic, partition), 0))

    def poll_global(self) -> list[Record]:
        """The next records of every partition of the global topics not held, marked
        ``owned=False``, from where the session's global reads are."""
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
            if topic in self.input_topics and partition in self.held:
                continue  # owned: read by the owned path
            assert self.merge is not None
            if self.merge.buffered(TopicPartition(topic, partition)) >= PAUSE_AT:
                continue
            read = self.bus.read(topic, partition, self._global_position(topic, partition), room)
            if read:
                self._global_read[(topic, partition)] = read[-1].offset + 1
            records.extend(replace(record, owned=False) for record in read)
        return records

    def _global_position(self, topic: str, partition: int) -> int:
        return self._global_read.get((topic, partition),
                                     self.global_positions.get((topic, partition), 0))

    def _caught_up(self, tp: TopicPartition) -> bool:
        end = len(self.bus.topic(tp.topic)[tp.partition])
        if tp.topic in self.input_topics and tp.partition in self.held:
            return self._read_position(tp.topic, tp.partition) >= end
        return self._global_position(tp.topic, tp.partition) >= end

    def step(self, timestamp_ms: int = 0) -> int:
        """Read ahead, then hand over, process and commit one batch; return how many records
        were read or handed over (0: nothing left to do now)."""
        if self._idle():
            self._idle_step()
            return 0
        polled = self.poll()
        if self.merge is None:
            batch, moved = polled, len(polled)
        else:
            merged = set(self.processor.global_topics)
            self.merge.track(TopicPartition(t, p) for t in merged
                             for p in range(len(self.bus.topic(t))))
            read = self.poll_global()
            self.merge.add(record for record in polled if record.topic in merged)
            self.merge.add(read)
            aside = [record for record in polled if record.topic not in merged]
            batch = self.merge.take(self._caught_up, self.batch_size,
                                    counts=lambda record: record.owned) + aside
            moved = len(polled) + len(read) + len(batch)
        if not batch:
            return moved
        try:
            self._process_and_commit(batch, timestamp_ms)
        except _FailedCommit:
            self.crash()  # the next poll reads the batch again from the committed positions
        return moved

    def _idle(self) -> bool:
        """Nothing new to read on any partition a step reads, and nothing buffered: the
        step would hand nothing over (``drain`` ends on such a step, every time)."""
        bus = self.bus
        for topic in self.input_topics:
            logs = bus.topic(topic)
            for partition in self.held:
                if self._read_position(topic, partition) < len(logs[partition]):
                    return False
        if self.merge is None:
            return True
        if len(self.merge):
            return False
        for topic in self.processor.global_topics:
            logs = bus.topic(topic)
            owned = topic in self.input_topics
            for partition in range(len(logs)):
                if owned and partition in self.held:
                    continue  # read by the owned path, checked above
                if self._global_position(topic, partition) < len(logs[partition]):
                    return False
        return True

    def _idle_step(self) -> None:
        """What ``step`` changes when ``_idle``: the round-robin starts move as ``poll`` and
        ``poll_global`` move them, and the merge sees every partition caught up."""
        if self.input_topics and self.held:
            self._next_partition += 1  # every held partition is below PAUSE_AT: none buffered
        if self.merge is None:
            return
        merged = self.processor.global_topics
        self.merge.track(TopicPartition(t, p) for t in merged
                         for p in range(len(self.bus.topic(t))))
        if any(len(self.bus.topic(t)) for t in merged):
            self._next_global += 1
        if self.merge.waiting():
            self.merge.take(self._caught_up, self.batch_size)  # ends the waits; hands nothing

    def _process_and_commit(self, batch: list[Record], timestamp_ms: int) -> None:
        try:
            result = self.processor.process(batch)
        except Exception:  # noqa: BLE001 - processors are pure: a bug or a poisoned record
            # The global records learned again on their own (their learning is idempotent),
            # then the owned ones one at a time; a raise here is a bug: the session fails.
            try:
                self.processor.process([record for record in batch if not record.owned])
            except Exception:
                self.crash()  # as on Kafka: a failed session; nothing of the batch committed
                raise
            owned = self._handed_over(batch)
            outcome = process_in_isolation(
                owned, self.processor, self.poison_pill,
                restore=self._rebuild, commit=lambda rs, r: self._commit(rs, r, timestamp_ms))
            self.records_dead_lettered += len(outcome.dead_lettered)
            return
        self._handed_over(batch)
        self._commit(batch, result, timestamp_ms)

    def _handed_over(self, batch: list[Record]) -> list[Record]:
        """Keep the global positions past the batch's global records; return the owned ones
        (the poison-pill policy restores and commits owned partitions only)."""
        owned = []
        for record in batch:
            if record.owned:
                owned.append(record)
            else:
                self.global_positions[(record.topic, record.partition)] = record.offset + 1
        return owned

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
            # All checked before any is appended: a refused output (a processor's bug, as a
            # failed send is on Kafka) must not leave half the batch committed.
            self.bus.check(output)
        for output in result.outputs:
            self.bus.produce(output, timestamp_ms)
        for record in batch:
            if record.owned:  # another member commits the global ones
                self.positions[(record.topic, record.partition)] = record.offset + 1
        self.batches_committed += 1

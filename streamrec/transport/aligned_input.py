"""The Kafka runtime's input for a processor with global topics: owned and global, merged.

``ProcessorService`` polls its group's consumer; ``AlignedInput`` adds the global reader's
records of the partitions the member does not own, and hands the records of the global
topics over in event-time order (``streamrec.transport.event_time``), the same order the bus runner
hands over. Records of other input topics (``requests``) pass straight through.

What it holds across polls is read but not handed over, so never committed: a failed
session, a revoke or a rebalance throws it away and it is read again, from the committed
offset (owned) or from the global reader's kept positions. A partition holding
``PAUSE_AT`` records is not fetched until the merge has taken some.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.transport.event_time import PAUSE_AT, EventTimeMerge
from streamrec.transport.global_reader import GlobalReader, caught_up

log = logging.getLogger(__name__)

# What one poll of either consumer may return: everything already fetched, never a part.
# kafka-python parses a partition's fetched data, and only then learns its high watermark,
# when a poll drains it; a poll stopping at a batch's worth leaves other partitions' fetches
# unparsed, with stale high watermarks that make them look caught up. Worse, kafka-python
# 3.0.12 parks the parsed rest of a fetch when its partition is paused, and restores it only
# while no other partition's (even drained) records sit in its in-line slot; a parked
# partition is never fetched again either, so pausing a partition with records left over
# stopped it for good (the via-Kafka replay stalled with its states committed and
# unanswered; tests/integration/test_aligned_pause.py). A poll that drains every fetch
# leaves nothing to park. What it returns is bounded by the fetch sizes
# (``max_partition_fetch_bytes``); the merge cuts the batches and ``PAUSE_AT`` stops the
# fetching of a partition that holds enough.
POLL_RECORDS = 1_000_000
from streamrec.processor import Processor
from streamrec.records import Record, TopicPartition


class AlignedInput:
    """One session's merge of owned and global records, over one kept ``GlobalReader``."""

    def __init__(self, processor: Processor, reader: GlobalReader, input_topics: list[str],
                 batch_size: int, idle_s: float) -> None:
        self.reader = reader
        self.global_topics = tuple(processor.global_topics)
        self.input_topics = input_topics
        self.batch_size = batch_size
        self._event_time = processor.event_time
        self._idle_s = idle_s
        self.merge = EventTimeMerge(self._event_time, idle_s=idle_s)

    def open(self) -> None:
        """A new session: nothing read ahead survives the previous one."""
        self.merge = EventTimeMerge(self._event_time, idle_s=self._idle_s)
        self.reader.open()

    def close(self) -> None:
        self.reader.close()

    def next_batch(self, consumer: KafkaConsumer, held: Iterable[int],
                   polled: list[Record]) -> tuple[list[Record], bool]:
        """The records to process now, and whether more is waiting (poll again at once)."""
        owned = {TopicPartition(t, p) for t in self.global_topics if t in self.input_topics
                 for p in held}
        every = self.reader.topic_partitions
        self.merge.track(every)
        self.merge.track(owned)
        merged = set(self.global_topics)
        self.merge.add(record for record in polled if record.topic in merged)
        full = {tp for tp in every if self.merge.buffered(tp) >= PAUSE_AT}
        read = self.reader.poll(POLL_RECORDS, held=owned, paused=owned | full)
        self.merge.add(read)
        self._pause_full(consumer, owned)
        assigned = consumer.assignment()

        def at_end(tp: TopicPartition) -> bool:
            return (caught_up(consumer, tp, assigned) if tp in owned
                    else self.reader.caught_up(tp))

        passes = self.merge.idle_passes
        batch = self.merge.take(at_end, self.batch_size, counts=lambda record: record.owned)
        if self.merge.idle_passes > passes:
            # The order is the arrival's until the partition brings a record or catches up.
            log.warning("event-time merge passed over a partition with nothing fetched after "
                        "event_time_idle_ms", extra={"idle_passes": self.merge.idle_passes})
        batch.extend(record for record in polled if record.topic not in merged)
        waiting = bool(read) or (len(self.merge) > 0 and not batch)
        return batch, waiting

    def _pause_full(self, consumer: KafkaConsumer, owned: set[TopicPartition]) -> None:
        """Stop fetching owned partitions holding ``PAUSE_AT`` records; resume the others."""
        full = {KafkaTopicPartition(*tp) for tp in owned if self.merge.buffered(tp) >= PAUSE_AT}
        paused = consumer.paused()
        if full != paused:
            if paused - full:
                consumer.resume(*(paused - full))
            if full - paused:
                consumer.pause(*(full - paused))

    def handed_over(self, batch: list[Record]) -> None:
        """The batch reached the processor: its global records need not be read again."""
        self.reader.handed_over(batch)

    def rebalanced(self, consumer: KafkaConsumer, held: Iterable[int]) -> None:
        """After a rebalance: throw away what was read ahead of the owned partitions.

        The consumer may resume a kept partition from its committed offset (kafka-python's
        eager protocol assigns it anew), which would hand the read-ahead over twice. Every
        record handed over is committed, so the first one read ahead is where to resume.
        """
        owned = [TopicPartition(t, p) for t in self.global_topics if t in self.input_topics
                 for p in held]
        assigned = consumer.assignment()
        for tp, offset in self.merge.discard(owned).items():
            ktp = KafkaTopicPartition(tp.topic, tp.partition)
            if ktp in assigned:
                consumer.seek(ktp, offset)

    def restoring(self, partitions: Iterable[int]) -> None:
        """These partitions are now owned: what the global reader read of them is not used."""
        self.merge.discard(TopicPartition(t, p) for t in self.global_topics for p in partitions)

    def dropped(self, partitions: list[int],
                vouched: Mapping[tuple[str, int], int | None]) -> None:
        """No longer owned: forget their read-ahead; the global reader reads them from the
        committed offset the dropped state reflected (``vouched``)."""
        self.merge.discard(TopicPartition(t, p) for t in self.global_topics for p in partitions)
        self.reader.rewind({
            (topic, p): vouched[(topic, p)] or 0  # None: nothing committed yet
            for topic in self.global_topics for p in partitions
            if (topic, p) in vouched})  # not held (never restored): nothing was owned


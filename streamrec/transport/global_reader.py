"""The global reader: every partition of a processor's ``global_topics``, beside the owned ones.

Item-side knowledge (popularity, co-visitation) must be the same whether one or N members
run, so each member learns it from every partition, while it owns (mirrors users, answers
triggers, commits) only what its group assigns it. ``GlobalReader`` is a second consumer with
no group: it is assigned every partition of the global topics, reads them ``read_committed``
from the beginning, and never commits. The loop polls it without blocking; its records of
partitions the member does not own are marked ``Record.owned = False`` and merged with the
owned ones in event-time order (``streamrec.transport.aligned_input``).

Its positions (the next offset to hand over, per partition):

- advance only for records handed to the processor (``handed_over``): records read ahead
  and still waiting in the merge, or whose processing raised, are read again by the next
  session instead of being lost;
- are kept across the failed sessions of one process (each session rebuilds its clients;
  re-reading whole topics every time would be wasteful), and start from the beginning in a
  new process, whose processor has learned nothing (its state is in memory only);
- are set to the committed offset on ``rewind`` when the member stops owning a partition;
- cover partitions added later: the reader looks for them every ``refresh_s``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Mapping

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.records import Record, TopicPartition

log = logging.getLogger(__name__)

REFRESH_S = 5.0
# As the owned consumer's: model snapshots on user-state can be several MB.
MAX_PARTITION_FETCH_BYTES = 32 * 1024 * 1024


def poll_limit(batch_size: int, partitions: int, owned: int) -> int:
    """The most records one global poll hands over: the owned path's pace per partition.

    An owned batch holds up to ``batch_size`` records of ``owned`` partitions, the global
    reader reads all ``partitions``: with only ``batch_size`` per poll it would fall behind
    by the number of members at full load. A member owning nothing reads
    ``batch_size`` per partition.

    >>> poll_limit(500, 4, 4), poll_limit(500, 4, 1), poll_limit(500, 4, 3), poll_limit(500, 4, 0)
    (500, 2000, 1000, 2000)
    """
    return batch_size * max(1, -(-partitions // max(1, owned)))


def caught_up(consumer: KafkaConsumer, tp: TopicPartition,
              assigned: set[KafkaTopicPartition]) -> bool:
    """``consumer`` has nothing more of ``tp`` to hand over now: its position is at the end
    of the last fetch (a partition not in ``assigned`` has nothing either)."""
    ktp = KafkaTopicPartition(tp.topic, tp.partition)
    if ktp not in assigned:
        return True
    highwater = consumer.highwater(ktp)  # from the last fetch response: no round trip
    position = consumer.position(ktp, timeout_ms=0)
    return highwater is not None and position is not None and position >= highwater


class GlobalReader:
    """A group-less ``read_committed`` consumer over every partition of ``topics``.

    ``open`` builds the consumer for a session and seeks it to the kept positions, ``poll``
    returns records without blocking, ``handed_over`` keeps the positions of what reached
    the processor, ``rewind`` moves a partition back, ``close`` ends the session's consumer.
    """

    def __init__(self, settings: Settings, topics: Iterable[str], *, client_id: str,
                 refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.client_id = client_id
        self.refresh_s = refresh_s
        self._clock = clock
        # (topic, partition) -> next offset to hand over; absent: from the beginning.
        self.positions: dict[tuple[str, int], int] = {}
        self.records_read = 0
        self.rewinds = 0  # partitions moved by ``rewind``
        self._consumer: KafkaConsumer | None = None
        self._assigned: set[KafkaTopicPartition] = set()
        self._next_refresh = 0.0

    @property
    def partitions(self) -> int:
        """How many partitions of the global topics the reader reads."""
        return len(self._assigned)

    # -- one session ------------------------------------------------------------------------
    def open(self) -> None:
        # The global topics are transactional outputs of another service: never aborts.
        self._consumer = kafka_clients.committed_reader(
            self.settings, client_id=self.client_id, auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            # partitions_for_topic answers from metadata at most this old: partitions added
            # later are found within about twice ``refresh_s``.
            metadata_max_age_ms=max(1000, int(self.refresh_s * 1000)),
            reconnect_backoff_max_ms=1_000)
        self._assigned = set()
        self._refresh()

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._assigned = set()
        if consumer is not None:
            consumer.close()

    def _refresh(self) -> None:
        """Assign partitions not assigned yet: at their kept position, else the beginning."""
        consumer = self._live()
        self._next_refresh = self._clock() + self.refresh_s
        found = {KafkaTopicPartition(topic, p) for topic in self.topics
                 for p in consumer.partitions_for_topic(topic)}
        new = found - self._assigned
        if not new:
            return
        # assign replaces the assignment but keeps the positions of partitions in both.
        consumer.assign(sorted(found))
        for tp in sorted(new):
            kept = self.positions.get((tp.topic, tp.partition))
            if kept is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, kept)
        if self._assigned:
            log.info("global reader found new partitions",
                     extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in sorted(new)]})
        self._assigned = found

    # -- the loop's side --------------------------------------------------------------------
    @property
    def topic_partitions(self) -> list[TopicPartition]:
        """Every partition the reader reads (as the merge tracks them)."""
        return sorted(TopicPartition(tp.topic, tp.partition) for tp in self._assigned)

    def poll(self, max_records: int, held: Iterable[TopicPartition] = (),
             paused: Iterable[TopicPartition] = ()) -> list[Record]:
        """Up to ``max_records`` records already fetched (never waits), marked
        ``owned=False``; those of ``held`` partitions (the owned path reads them) are left
        out. ``paused`` partitions are not fetched until they are no longer given."""
        consumer = self._live()
        if self._clock() >= self._next_refresh:
            self._refresh()
        stop = {KafkaTopicPartition(*tp) for tp in paused} & self._assigned
        if stop != consumer.paused():
            consumer.resume(*(consumer.paused() - stop))
            if stop:
                consumer.pause(*stop)
        polled = consumer.poll(timeout_ms=0, max_records=max_records)
        skip = {KafkaTopicPartition(*tp) for tp in held}
        records = kafka_clients.to_records(
            {tp: messages for tp, messages in polled.items() if tp not in skip}, owned=False)
        self.records_read += len(records)
        return records

    def caught_up(self, tp: TopicPartition) -> bool:
        """Nothing more to read on ``tp`` now (see ``caught_up``)."""
        return caught_up(self._live(), tp, self._assigned)

    def handed_over(self, records: Iterable[Record]) -> None:
        """These records (of one batch, in order) reached the processor: keep the positions."""
        for record in records:
            if not record.owned:
                self.positions[(record.topic, record.partition)] = record.offset + 1

    def rewind(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Read these partitions again from these offsets (the member stopped owning them).

        While it owned them, their records came through the owned path, up to the
        committed offset: from there the global reader must bring them.
        """
        for (topic, partition), offset in offsets.items():
            kept = self.positions.get((topic, partition))
            self.positions[(topic, partition)] = offset
            self.rewinds += kept != offset
            tp = KafkaTopicPartition(topic, partition)
            if self._consumer is not None and tp in self._assigned:
                self._consumer.seek(tp, offset)
            log.info("global reader reads a dropped partition from its committed offset",
                     extra={"topic": topic, "partition": partition, "to_offset": offset})

    def lag(self) -> int:
        """Records behind the end over every partition (the ends of the latest fetches)."""
        consumer = self._live()
        total = 0
        for tp in self._assigned:
            highwater = consumer.highwater(tp)  # from the last fetch response: no round trip
            if highwater is not None:
                total += max(0, highwater - self.positions.get((tp.topic, tp.partition), 0))
        return total

    def _live(self) -> KafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the global reader is not open")
        return self._consumer

"""The global reader: every partition of a processor's ``global_topics``, beside the owned ones.

Item-side knowledge (popularity, co-visitation) must be the same whether one or N members
run, so each member learns it from every partition, while it owns (mirrors users, answers
triggers, commits) only what its group assigns it. ``GlobalReader`` is a second consumer with
no group: it is assigned every partition of the global topics, reads them ``read_committed``
from the beginning, and never commits. The loop polls it without blocking before each owned
batch and hands the records to ``processor.learn_global``, which ignores the partitions the
processor owns (their records come through ``process``).

Its positions (the next offset to hand over, per partition):

- advance only once ``learn_global`` returned (``learned``), so records whose learning raised
  are read again by the next session instead of being lost;
- are kept across the failed sessions of one process (each session rebuilds its clients;
  re-reading whole topics every time would be wasteful), and start from the beginning in a
  new process, whose processor has learned nothing (its state is in memory only);
- move back on ``rewind`` when the member stops owning a partition (see ``rewind``);
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
from streamrec.transport.poison_pill import raised_at
from streamrec.records import Record

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


class GlobalReader:
    """A group-less ``read_committed`` consumer over every partition of ``topics``.

    ``open`` builds the consumer for a session and seeks it to the kept positions, ``poll``
    returns records without blocking, ``learned`` keeps the positions once they were learned,
    ``rewind`` moves a partition back, ``close`` ends the session's consumer.
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
        self.rewinds = 0  # partitions moved back by ``rewind``
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
    def poll(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` records already fetched (never waits); then ``learned``."""
        consumer = self._live()
        if self._clock() >= self._next_refresh:
            self._refresh()
        polled = consumer.poll(timeout_ms=0, max_records=max_records)
        records = kafka_clients.to_records(polled)
        self.records_read += len(records)
        return records

    def feed(self, learn: Callable[[list[Record]], None], max_records: int) -> int:
        """``poll``, hand the records to ``learn``, then ``learned``; return how many.

        ``learn`` (a processor's ``learn_global``) must count bad data, not raise: if it
        raises anyway, that is a bug, and it propagates to fail the session. The positions
        did not move, so the next session reads the records again (the recovery budget
        bounds the retries): nothing is lost silently.
        """
        records = self.poll(max_records)
        if records:
            try:
                learn(records)
            except Exception as error:
                log.error("learning from the global topics raised; failing the session",
                          extra={"error_type": type(error).__name__, "records": len(records),
                                 "raised_at": raised_at(error)})
                raise
        self.learned()
        return len(records)

    def learned(self) -> None:
        """The records of the last poll were learned: keep the consumer's positions.

        The consumer's position also moves past records it never hands over (transaction
        markers, aborted records), so it is kept, not the last record's offset.
        """
        consumer = self._live()
        for tp in self._assigned:
            position = consumer.position(tp, timeout_ms=0)  # local once known: no round trip
            if position is not None:
                self.positions[(tp.topic, tp.partition)] = position

    def rewind(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Move partitions back to these offsets if the kept position is beyond them.

        Called when the member stops owning a partition. While it owned it, the processor
        ignored the partition's global records (``process`` covered them), but only up to
        the partition's committed offset: the records between it and the global position
        were neither processed nor learned, and after the drop nothing else would bring them.
        """
        for (topic, partition), offset in offsets.items():
            kept = self.positions.get((topic, partition))
            if kept is None or kept <= offset:
                continue  # never read past it (a new process reads from the beginning)
            self.positions[(topic, partition)] = offset
            self.rewinds += 1
            tp = KafkaTopicPartition(topic, partition)
            if self._consumer is not None and tp in self._assigned:
                self._consumer.seek(tp, offset)
            log.info("global reader moved back to the committed offset of a dropped partition",
                     extra={"topic": topic, "partition": partition, "from_offset": kept,
                            "to_offset": offset})

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

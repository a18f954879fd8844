"""Event-time alignment: the partitions of the global topics handed over in one merged order.

A scorer ranks each trigger with the item-side knowledge (popularity, co-visitation) of the
records before it. Which records those are must not depend on how the records happened to
arrive: kafka-python drains one partition's fetch before the next, the bus reads partition by
partition, and a scorer owning two partitions reads the other two through a second consumer
at its own pace. So one scorer and three would rank differently, and a restarted one
differently again.

``EventTimeMerge`` buffers the records of every partition of the global topics (the owned
ones from the group's consumer, the others from the global reader) and hands them over in
one order: always the head with the smallest ``(event time, topic, partition)``, and only
while every other partition either has a buffered head to compare with or has nothing
more to read right now. That order is a function of the partitions' logs alone, the same
for every member of any group size; it is Kafka Streams' timestamp synchronisation of a
task's input partitions (``max.task.idle.ms``).

A partition that is empty but not caught up (its next records are in flight, or behind an
open transaction) holds the merge back for at most ``idle_s``; then it is passed over, so
a stuck producer delays the scorer and never stops it. A record's event time comes from
the processor; one without a readable time takes its partition's previous one. Buffers are
bounded by the transports, which stop fetching a partition holding ``pause_at`` records.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from typing import Callable, Iterable

from streamrec.records import Record, TopicPartition

UNKNOWN_TIME = float("-inf")
# Records a partition may hold before the transport stops reading it: the merge needs what
# arrives while it waits for the slowest partition, not a whole backlog.
PAUSE_AT = 1_000


class EventTimeMerge:
    """Per-partition FIFOs of records, released in merged event-time order.

    >>> merge = EventTimeMerge(lambda record: float(record.value), idle_s=1.0)
    >>> merge.track([TopicPartition("s", 0), TopicPartition("s", 1)])
    >>> merge.add([Record("s", 0, 0, b"u", b"5"), Record("s", 0, 1, b"u", b"9")])
    >>> [r.offset for r in merge.take(caught_up=lambda tp: False)]  # p1 may still bring t < 5
    []
    >>> merge.add([Record("s", 1, 0, b"v", b"7")])
    >>> [(r.partition, r.value) for r in merge.take(caught_up=lambda tp: True)]
    [(0, b'5'), (1, b'7'), (0, b'9')]
    """

    def __init__(self, event_time: Callable[[Record], float | None], *, idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._event_time = event_time
        self.idle_s = idle_s
        self._clock = clock
        self._buffers: dict[TopicPartition, deque[tuple[float, Record]]] = {}
        # The last event time stamped on each partition: a record without one takes it.
        self._last_time: dict[TopicPartition, float] = {}
        # Since when an empty, not caught-up partition has held the merge back.
        self._waiting_since: dict[TopicPartition, float] = {}
        # Waits that ended in passing a partition over after ``idle_s`` (the order is then
        # the arrival's, no longer guaranteed); and the partitions passed over now.
        self.idle_passes = 0
        self._passed_over: set[TopicPartition] = set()

    # -- what is merged ---------------------------------------------------------------------
    def track(self, partitions: Iterable[TopicPartition]) -> None:
        """Merge these partitions (others are added to as they come); keeps their buffers."""
        for tp in partitions:
            self._buffers.setdefault(tp, deque())

    def add(self, records: Iterable[Record]) -> None:
        """Append records, each to its partition's FIFO, in the order given."""
        for record in records:
            tp = record.topic_partition
            stamped = self._event_time(record)
            at = stamped if stamped is not None else self._last_time.get(tp, UNKNOWN_TIME)
            self._last_time[tp] = at
            self._buffers.setdefault(tp, deque()).append((at, record))
            self._end_wait(tp)

    def discard(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Empty these partitions' buffers; return the first offset each held (to read again)."""
        first: dict[TopicPartition, int] = {}
        for tp in partitions:
            buffer = self._buffers.get(tp)
            if buffer:
                first[tp] = buffer[0][1].offset
                buffer.clear()
            self._end_wait(tp)
            # Not stamped from the discarded records: they are read again and stamped anew.
            self._last_time.pop(tp, None)
        return first

    def untrack(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """``discard``, and stop merging these partitions."""
        partitions = list(partitions)
        first = self.discard(partitions)
        for tp in partitions:
            self._buffers.pop(tp, None)
        return first

    # -- what is buffered -------------------------------------------------------------------
    def waiting(self) -> bool:
        """Whether an empty partition is being waited for (or was passed over idle)."""
        return bool(self._waiting_since or self._passed_over)

    def buffered(self, tp: TopicPartition) -> int:
        return len(self._buffers.get(tp, ()))

    def first_offsets(self) -> dict[TopicPartition, int]:
        """The offset of the first record still buffered, per partition that holds one."""
        return {tp: buffer[0][1].offset for tp, buffer in self._buffers.items() if buffer}

    def __len__(self) -> int:
        return sum(map(len, self._buffers.values()))

    # -- handing over -----------------------------------------------------------------------
    def take(self, caught_up: Callable[[TopicPartition], bool],
             max_records: int | None = None,
             counts: Callable[[Record], bool] = lambda record: True) -> list[Record]:
        """Release records in merged order while the order is known.

        ``caught_up(tp)``: the partition has nothing more to read now. Stops when a
        partition runs empty and is neither caught up nor idle past ``idle_s``, or when
        ``max_records`` records for which ``counts`` holds were released.
        """
        now = self._clock()
        if any(self._holds_back(tp, caught_up, now) for tp, b in self._buffers.items() if not b):
            return []
        heads = [(buffer[0][0], tp, buffer) for tp, buffer in self._buffers.items() if buffer]
        heapq.heapify(heads)
        released: list[Record] = []
        counted = 0
        while heads and (max_records is None or counted < max_records):
            _, tp, buffer = heapq.heappop(heads)
            record = buffer.popleft()[1]
            released.append(record)
            counted += counts(record)
            if buffer:
                heapq.heappush(heads, (buffer[0][0], tp, buffer))
            elif self._holds_back(tp, caught_up, now):
                break
        return released

    def _holds_back(self, tp: TopicPartition, caught_up: Callable[[TopicPartition], bool],
                    now: float) -> bool:
        """An empty partition holds the merge back unless caught up or idle past ``idle_s``."""
        if caught_up(tp):
            self._end_wait(tp)
            return False
        since = self._waiting_since.setdefault(tp, now)
        if now - since < self.idle_s:
            return True
        # Passed over until it brings a record or catches up (``add`` ends the wait).
        if tp not in self._passed_over:
            self._passed_over.add(tp)
            self.idle_passes += 1
        return False

    def _end_wait(self, tp: TopicPartition) -> None:
        self._waiting_since.pop(tp, None)
        self._passed_over.discard(tp)

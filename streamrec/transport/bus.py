"""The in-process bus: Kafka's topic/partition/offset model in memory, for demo and tests.

Partitioning uses Kafka's own murmur2 key hash, so a user lands on the same partition
number here as on a real broker, and processors see exactly the records they would see
from a consumer. ``InProcessRunner`` plays the consumer loop: poll, process, produce,
advance the committed position, with the Kafka runtime's lifecycle
(``streamrec.transport.bus_runner``).
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2

from streamrec.records import Output, Record


def partition_for(key: bytes | None, partitions: int, round_robin: int = 0) -> int:
    """Kafka's default partitioner for keyed records (murmur2, positive, modulo)."""
    if key is None:
        return round_robin % partitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class InProcessBus:
    """Topics of partitioned, append-only record lists."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self._topics: dict[str, list[list[Record]]] = {}
        self._unkeyed = 0

    def topic(self, name: str, partitions: int | None = None) -> list[list[Record]]:
        if name not in self._topics:
            self._topics[name] = [[] for _ in range(partitions or self.partitions)]
        return self._topics[name]

    def check(self, output: Output) -> None:
        """Raise ``ValueError`` for an explicit partition the topic does not have (as Kafka
        refuses the send); a negative one would otherwise index from the end of the list."""
        partition, parts = output.partition, len(self.topic(output.topic))
        if partition is not None and not 0 <= partition < parts:
            raise ValueError(f"partition {partition} of topic {output.topic!r}, which has "
                             f"{parts} partitions")

    def produce(self, output: Output, timestamp_ms: int = 0) -> Record:
        self.check(output)
        parts = self.topic(output.topic)
        if output.partition is not None:
            partition = output.partition
        else:
            self._unkeyed += output.key is None
            partition = partition_for(output.key, len(parts), self._unkeyed)
        log = parts[partition]
        record = Record(output.topic, partition, len(log), output.key, output.value,
                        timestamp_ms, output.headers)
        log.append(record)
        return record

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> list[Record]:
        return self.topic(topic)[partition][offset: offset + max_records]

    def size(self, topic: str) -> int:
        return sum(len(p) for p in self.topic(topic))

    def records(self, topic: str) -> list[Record]:
        """Every record of a topic, partition by partition (for inspection in tests)."""
        return [r for part in self.topic(topic) for r in part]

"""Transport-neutral record types.

Processors see ``Record`` objects and return ``Output`` objects, whether the records come
from Kafka or from the in-process bus. Keeping these plain dataclasses is what lets the
same processor run in a consumer, in ``demo`` and in replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()
    # False: a record of a global topic's partition another member owns, read by this one's
    # global reader (``streamrec.transport.global_reader``) and merged into its batches in event-time
    # order (``streamrec.transport.event_time``): input to item-side knowledge only, never answered,
    # never committed by this member.
    owned: bool = True

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Output:
    """One message a processor wants produced.

    ``partition`` is normally left ``None`` so that the key decides it (Kafka's default
    partitioner; the bus uses the same hash). Changelog outputs, and every output to a
    processor's ``state_topic``, pin it to the source partition's number, so state stays
    co-partitioned with its input (a key such as a partition's ``__streamrec_fusion__``
    learner would hash elsewhere). Both transports honour it; the bus refuses a partition the topic lacks.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(slots=True)
class ProcessResult:
    """What one batch produced, plus counters the runtime turns into metrics."""

    outputs: list[Output] = field(default_factory=list)
    processed: int = 0
    rejected: int = 0
    skipped_duplicates: int = 0

"""Test helpers: a processor that keeps its own state on a ``state_topic``, for both transports.

``StateCounter`` counts inputs per key and partition, plus a per-partition total under one
key (``TOTAL``) present in every partition, as the scorer's ``__streamrec_fusion__`` learner is: that
key hashes to one partition, so only an output pinned to the input's partition
(``Output.partition``) puts each total where its partition's owner restores it. Every state
record's value names the input it came from (``count@offset``), so a test can tell which
batch wrote what was restored.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Iterable, Mapping

from streamrec.processor import ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record

TOTAL = b"__total__"
POISON = b"poison"  # an input value whose processing raises


def encode_count(count: int, source_offset: int) -> bytes:
    return b"%d@%d" % (count, source_offset)


def decode_count(value: bytes) -> tuple[int, int]:
    """(count, offset of the input that wrote it)."""
    count, offset = value.split(b"@")
    return int(count), int(offset)


class StateCounter(ProcessorDefaults):
    """Inputs per key and partition; each change goes to ``state_topic`` as the key's count.

    ``restored`` logs every ``restore_state`` (partition, counts rebuilt, source offsets of
    the records read); ``calls`` the order of ``restore_state`` / ``restore`` per partition.
    Thread-safe for reading while the Kafka runtime runs it.
    """

    def __init__(self, state_topic: str, changelog_topic: str) -> None:
        self.state_topic: str | None = state_topic
        self.changelog_topic = changelog_topic
        self.counts: dict[int, Counter[bytes]] = {}
        self.restored: list[tuple[int, dict[bytes, int], list[int]]] = []
        self.calls: list[tuple[str, int]] = []
        self.rejected_by_reason: Counter[str] = Counter()
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def restore_state(self, partition: int, records: list[Record]) -> int:
        counts: Counter[bytes] = Counter()
        for record in records:
            assert (record.topic, record.partition) == (self.state_topic, partition), record
            assert record.key is not None
            if record.value is None:
                counts.pop(record.key, None)
            else:
                counts[record.key] = decode_count(record.value)[0]
        with self._lock:
            self.counts[partition] = counts
            self.restored.append((partition, dict(counts),
                                  [decode_count(r.value)[1] for r in records if r.value]))
            self.calls.append(("state", partition))
        return len(counts)

    def restore(self, partition: int, changelog: list[Record]) -> int:
        with self._lock:
            # The contract: a partition's own state is restored before its changelog.
            assert partition in self.counts, f"restore({partition}) before restore_state"
            self.calls.append(("changelog", partition))
        return 0

    def drop(self, partitions: list[int]) -> None:
        with self._lock:
            for p in partitions:
                self.counts.pop(p, None)

    def process(self, batch: list[Record]) -> ProcessResult:
        outputs = []
        with self._lock:
            for record in batch:
                if record.value == POISON:
                    raise ValueError(f"poisoned input at offset {record.offset}")
                counts = self.counts[record.partition]  # KeyError: an unrestored partition
                for key in (record.key, TOTAL):
                    assert key is not None
                    counts[key] += 1
                    outputs.append(Output(self.state_topic or "", key,
                                          encode_count(counts[key], record.offset),
                                          partition=record.partition))
        return ProcessResult(outputs=outputs, processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        self.skipped_by_reason[(record.topic, reason)] += 1
        return None

    def snapshot(self) -> dict[int, dict[bytes, int]]:
        """The counts held now, per partition (a copy)."""
        with self._lock:
            return {p: dict(counts) for p, counts in self.counts.items()}


def expected_counts(inputs: Iterable[Record], committed: Mapping[int, int] | None = None,
                    partitions: Iterable[int] = ()) -> dict[int, dict[bytes, int]]:
    """The counts of ``inputs`` (poison left out) per partition, below the ``committed`` next
    offset of each partition if given (a partition missing there: none of it); every one of
    ``partitions`` is there, empty if it has no inputs."""
    counts: dict[int, Counter[bytes]] = {p: Counter() for p in partitions}
    for record in inputs:
        bucket = counts.setdefault(record.partition, Counter())
        if committed is not None and record.offset >= committed.get(record.partition, 0):
            continue
        if record.value == POISON:
            continue
        assert record.key is not None
        bucket[record.key] += 1
        bucket[TOTAL] += 1
    return {p: dict(c) for p, c in counts.items()}


def latest_counts(records: Iterable[Record]) -> dict[int, dict[bytes, int]]:
    """What a compacted state topic keeps: the latest count per key, per partition."""
    counts: dict[int, dict[bytes, int]] = {}
    for record in records:
        bucket = counts.setdefault(record.partition, {})
        assert record.key is not None
        if record.value is None:
            bucket.pop(record.key, None)
        else:
            bucket[record.key] = decode_count(record.value)[0]
    return counts

"""Reading a compacted changelog partition back, to restore state after a rebalance."""

from __future__ import annotations

import logging
import time

from kafka import TopicPartition as KafkaTopicPartition

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.records import Record

log = logging.getLogger(__name__)


def read_changelog(settings: Settings, topic: str, partitions: list[int],
                   stop_offsets: dict[int, int] | None = None,
                   timeout_s: float = 120.0,
                   start_offsets: dict[int, int] | None = None) -> dict[int, list[Record]]:
    """Read ``topic`` partitions from the beginning (or ``start_offsets``) up to their end
    (or ``stop_offsets``).

    Reads ``read_committed``: an aborted or still-open transaction's state must never be
    restored, or a crashed batch would be applied twice.
    """
    result: dict[int, list[Record]] = {p: [] for p in partitions}
    if not partitions:
        return result
    consumer = kafka_clients.committed_reader(settings,
                                              max_partition_fetch_bytes=32 * 1024 * 1024)
    try:
        tps = [KafkaTopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for tp in tps:
            if start_offsets and tp.partition in start_offsets:
                consumer.seek(tp, start_offsets[tp.partition])
        # With read_committed, end_offsets is the last stable offset: open transactions of
        # a dead producer are not waited for here (they are aborted by the broker later).
        ends = consumer.end_offsets(tps)
        targets = {tp: (stop_offsets or {}).get(tp.partition, ends[tp]) for tp in tps}
        pending = {tp for tp in tps if consumer.position(tp) < targets[tp]}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restoring {topic} partitions {sorted(tp.partition for tp in pending)} "
                                   f"took longer than {timeout_s:.0f} s")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=10_000).items():
                target = targets[tp]
                bucket = result[tp.partition]
                for m in messages:
                    if m.offset >= target:
                        break
                    bucket.append(kafka_clients.to_record(m))
            # Transaction markers take offsets but yield no record, so progress is judged
            # by position, not by the last record seen.
            pending = {tp for tp in pending if consumer.position(tp) < targets[tp]}
    finally:
        consumer.close()
    return result

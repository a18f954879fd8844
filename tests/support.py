"""Helpers shared by the Kafka-facing tests: run services, produce raw bytes, read topics."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Iterable, Iterator

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from consumers.ingest import IngestProcessor
from consumers.score import ScoreProcessor
from streamrec.config import Settings
from streamrec.records import Record
from streamrec.runtime import ProcessorService


def produce_raw(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]],
                headers: list[tuple[str, bytes]] | None = None) -> int:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                             batch_size=256 * 1024)
    count = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value, headers=headers)
        count += 1
    producer.flush(timeout=60)
    producer.close()
    return count


def read_topic(settings: Settings, topic: str, *, expect: int | None = None,
               until: Callable[[list[Record]], bool] | None = None, timeout_s: float = 90.0,
               idle_s: float = 3.0) -> list[Record]:
    """Read a topic from the beginning with ``read_committed``.

    Stops when ``expect`` records arrived or ``until`` says so (then waits ``idle_s`` more
    to catch anything extra, such as duplicates), or fails after ``timeout_s``.
    """
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed")
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    done_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=250).values():
                records.extend(Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp,
                                      tuple(m.headers or ())) for m in messages)
            finished = ((expect is not None and len(records) >= expect)
                        or (until is not None and until(records)))
            if finished and done_at is None:
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= idle_s:
                return records
        if expect is None and until is None:
            return records
        raise AssertionError(f"{topic}: got {len(records)} records in {timeout_s:.0f} s"
                             + (f", expected {expect}" if expect is not None else ""))
    finally:
        consumer.close()


def latest_by_key(records: Iterable[Record]) -> dict[bytes, Record]:
    latest: dict[bytes, Record] = {}
    for record in records:
        if record.key is not None:
            latest[record.key] = record
    return latest


@contextlib.contextmanager
def running_service(service: ProcessorService) -> Iterator[ProcessorService]:
    """Run a ProcessorService in a thread; stop it gracefully on exit and surface errors."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True, name=f"svc-{service.group_id}")
    thread.start()
    try:
        assert service.ready.wait(60), "service did not join its group within 60 s"
        yield service
    finally:
        service.stop()
        thread.join(60)
        if errors:
            raise errors[0]


def ingest_service(settings: Settings, instance: str = "test-0", **kwargs: object) -> ProcessorService:
    return ProcessorService(IngestProcessor(settings), settings, input_topics=[settings.topics.clicks],
                            group_id=settings.ingest_group, instance_id=instance, **kwargs)  # type: ignore[arg-type]


def score_service(settings: Settings, instance: str = "test-0", **kwargs: object) -> ProcessorService:
    return ProcessorService(ScoreProcessor(settings), settings,
                            input_topics=[settings.topics.user_state, settings.topics.requests],
                            group_id=settings.score_group, instance_id=instance,
                            restore_to_committed=True, **kwargs)  # type: ignore[arg-type]


def start_ingest_process(settings: Settings, instance: str, batch_size: int = 200) -> subprocess.Popen:
    """`streamrec ingest` as its own process, as an operator would run it."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
               STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
               STREAMREC_INGEST_GROUP=settings.ingest_group,
               STREAMREC_TRANSACTIONAL_ID_PREFIX=settings.transactional_id_prefix,
               STREAMREC_PARTITIONS=str(settings.partitions), STREAMREC_BATCH_SIZE=str(batch_size))
    return subprocess.Popen([sys.executable, "-m", "streamrec.cli", "ingest", "--instance-id",
                             instance, "--log-format", "text"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def reference_states(settings: Settings, events: list) -> dict[str, dict]:
    """Final user states of one uninterrupted run: the processor fed every event once."""
    from streamrec.bus import partition_for

    reference = IngestProcessor(settings)
    offsets: dict[int, int] = {}
    for event in events:
        partition = partition_for(event.user_id.encode(), settings.partitions)
        reference.apply(event, partition, offsets.get(partition, 0))
        offsets[partition] = offsets.get(partition, 0) + 1
    return {u: s.learned_view() for u, s in reference.all_states().items()}


def assert_offsets_applied_once(records: list[Record]) -> None:
    """Per user, the source offsets in the changelog only grow: nothing applied twice."""
    from online_models.user_state import decode_state

    last_offset: dict[bytes, int] = {}
    for record in records:
        if record.value is None or record.key is None:
            continue
        offset = decode_state(record.value).source_offset
        assert offset > last_offset.get(record.key, -1), (
            f"user {record.key!r}: source offset {offset} applied again")
        last_offset[record.key] = offset


def applied_events(records: list[Record]) -> int:
    """How many clicks the latest user states account for (tombstones count nothing)."""
    from online_models.user_state import decode_state

    return sum(decode_state(r.value).event_count for r in latest_by_key(records).values()
               if r.value is not None)

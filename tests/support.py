"""Helpers shared by the Kafka-facing tests: run services, produce raw bytes, read topics."""

from __future__ import annotations

import contextlib
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

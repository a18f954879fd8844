"""A backlog on every partition reaches the processor whole, however the merge pauses them.

The event-time merge (``streamrec.transport.aligned_input``) stops fetching a partition that
holds ``PAUSE_AT`` records and resumes it once the merge has taken some. kafka-python 3.0.12
parks the parsed rest of a fetch when its partition is paused and, when another partition's
drained records sit in its in-line slot, never restores it, nor fetches the partition again:
a poll that returned only part of a fetch, followed by a pause, stopped that partition for
good. The via-Kafka replay showed it as a scorer whose partitions stayed unanswered with their
states committed. The runtime's polls now drain every fetch; this test holds it to that on a
real broker: a consumer's poll-pause-resume cycle as the runtime drives it (which lost or
stranded records with a poll of 1,000), and a member's whole owned path with a backlog on every partition.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.config import Settings
from streamrec.transport import kafka_clients
from streamrec.transport.aligned_input import POLL_RECORDS
from streamrec.transport.event_time import PAUSE_AT
from streamrec.transport.runtime import ProcessorService
from support import new_topic, running_service
from test_global_reader_kafka import GlobalLearner, wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
PER_PARTITION = 3 * PAUSE_AT  # each partition fills the merge's buffer, is paused, resumed


def _produce_backlog(settings: Settings, topic: str, total: int) -> None:
    producer = kafka_clients.producer(settings)
    # Event time n on partition n % 4: the merge takes the partitions in turn, so each one's
    # fetched records wait in the merge while the others are taken.
    for n in range(total):
        producer.send(topic, key=b"u", value=b"%d" % n, partition=n % PARTITIONS)
    producer.flush(30)
    producer.close()


def test_a_consumer_pausing_what_it_just_polled_loses_and_strands_nothing(
        kafka_settings, kafka_bootstrap, kafka_admin):
    """The runtime's consumers, polled ``POLL_RECORDS`` at a time, paused and resumed.

    With polls of 1,000 this lost records (positions moved past records never returned)
    and stranded partitions (never fetched again) on kafka-python 3.0.12.
    """
    settings: Settings = kafka_settings
    topic = new_topic(kafka_bootstrap, partitions=PARTITIONS,
                      prefix=f"{settings.topic_prefix}paused-consumer")
    total = PARTITIONS * PER_PARTITION
    _produce_backlog(settings, topic, total)
    consumer = kafka_clients.committed_reader(settings)
    partitions = [KafkaTopicPartition(topic, p) for p in range(PARTITIONS)]
    read: list[tuple[int, int]] = []
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 30
        while len(read) < total and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=POLL_RECORDS)
            read.extend((m.partition, m.offset) for messages in polled.values()
                        for m in messages)
            if polled:  # as the merge pauses a partition whose buffer filled, then resumes it
                consumer.pause(*polled)
                consumer.poll(timeout_ms=0)
                consumer.resume(*polled)
    finally:
        consumer.close()
        kafka_admin.delete_topics([topic])
    assert Counter(read) == Counter((n % PARTITIONS, n // PARTITIONS) for n in range(total)), (
        f"read {len(read):,} of {total:,}; per partition {Counter(p for p, _ in read)}")


def test_a_backlog_on_every_partition_is_processed_whole_through_pauses(
        kafka_settings, kafka_bootstrap, kafka_admin):
    settings: Settings = kafka_settings.replace(batch_size=500)
    topic = new_topic(kafka_bootstrap, partitions=PARTITIONS,
                      prefix=f"{settings.topic_prefix}paused")
    total = PARTITIONS * PER_PARTITION
    _produce_backlog(settings, topic, total)
    learner = GlobalLearner(topic)
    service = ProcessorService(learner, settings, input_topics=[topic],
                               group_id=f"{settings.topic_prefix}paused", instance_id="only",
                               restore_to_committed=True)
    try:
        with running_service(service):
            wait_for(lambda: len(learner.seen()) >= total, 90,
                     f"all {total:,} records (stalled at {len(learner.seen()):,})")
            time.sleep(1.0)  # anything extra (a duplicate) would arrive now
    finally:
        kafka_admin.delete_topics([topic])

    assert learner.seen() == Counter((n % PARTITIONS, n // PARTITIONS) for n in range(total))
    # One member owns every partition: everything came through the owned path, in event-time
    # order across the partitions.
    assert learner.learned_globally == []
    assert learner.processed == [(n % PARTITIONS, n // PARTITIONS) for n in range(total)]

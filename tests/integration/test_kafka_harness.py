"""The broker harness itself: topics get the layout DESIGN.md gives them, and the broker
does what the services rely on (transactions, read_committed reads, idempotent creation)."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.structs import TopicPartition

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.transport.topics import TopicLayoutError, create_topics, topic_specs

pytestmark = pytest.mark.kafka


def _cleanup_policy(admin: KafkaAdminClient, topic: str) -> str:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["cleanup.policy"])
    result = admin.describe_configs([resource], config_filter="all")
    entry = result["topic"][topic]["cleanup.policy"]
    return entry["value"] if isinstance(entry, dict) else entry


def test_topics_have_the_designed_layout(kafka_settings: Settings,
                                         kafka_admin: KafkaAdminClient) -> None:
    names = kafka_settings.topics
    described = {t["name"]: t for t in kafka_admin.describe_topics(list(names.all().values()))}
    partitions = {name: len(t["partitions"]) for name, t in described.items()}
    n = kafka_settings.partitions
    assert partitions == {names.clicks: n, names.dlq: n, names.user_state: n,
                          names.requests: n, names.recommendations: n, names.models: 1,
                          names.scorer_state: n}
    assert _cleanup_policy(kafka_admin, names.user_state) == "compact"
    assert _cleanup_policy(kafka_admin, names.models) == "compact"
    assert _cleanup_policy(kafka_admin, names.scorer_state) == "compact"
    assert _cleanup_policy(kafka_admin, names.clicks) == "delete"


def test_create_topics_is_idempotent(kafka_settings: Settings,
                                     kafka_admin: KafkaAdminClient) -> None:
    expected = [s.name for s in topic_specs(kafka_settings)]
    assert create_topics(kafka_settings, admin=kafka_admin) == expected
    assert create_topics(kafka_settings) == expected  # with its own admin client too


def test_conflicting_partition_count_is_refused(kafka_settings: Settings,
                                                kafka_admin: KafkaAdminClient) -> None:
    with pytest.raises(TopicLayoutError, match="co-partitioned"):
        create_topics(kafka_settings, admin=kafka_admin,
                      partitions=kafka_settings.partitions + 2)


def test_transactional_write_is_read_committed(kafka_settings: Settings) -> None:
    topic = kafka_settings.topics.clicks
    producer = kafka_clients.producer(kafka_settings,
                                      transactional_id=f"harness-{uuid.uuid4().hex[:8]}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, key=b"user-1", value=b"aborted")
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, key=b"user-1", value=b"committed")
    producer.commit_transaction()
    producer.close()

    consumer = kafka_clients.consumer(kafka_settings, isolation_level="read_committed",
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      consumer_timeout_ms=10_000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    values = []
    for record in consumer:
        values.append((record.key, record.value))
        break  # the committed record is the only one a read_committed reader may see
    consumer.close()
    assert values == [(b"user-1", b"committed")]

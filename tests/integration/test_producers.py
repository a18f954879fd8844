"""ClickPublisher against a real broker: every event arrives once, keyed by its user."""

from __future__ import annotations


import pytest

from streamrec.producers.publisher import ClickPublisher, PublishError
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.events import decode_click
from support import new_topic

pytestmark = pytest.mark.kafka


def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 60.0) -> list:
    consumer = kafka_clients.consumer(Settings(bootstrap_servers=bootstrap), topic,
                                      auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000))
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


def test_publish_1000_events_and_read_them_back(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, prefix="test-producers")
    events = list(SyntheticStream(50, 200, 1_000, seed=11).events())
    with ClickPublisher(kafka_bootstrap, topic) as publisher:
        for event in events:
            publisher.publish(event)
    assert publisher.published == 1_000 and publisher.failed == 0

    records = read_all(kafka_bootstrap, topic, expect=1_000)
    decoded = {}
    partitions_of_user: dict[str, set[int]] = {}
    for record in records:
        event = decode_click(record.value)
        assert record.key == event.user_id.encode()
        decoded[event.event_id] = event
        partitions_of_user.setdefault(event.user_id, set()).add(record.partition)
    assert len(records) == 1_000
    assert decoded == {e.event_id: e for e in events}
    assert all(len(parts) == 1 for parts in partitions_of_user.values())  # keyed by user
    assert len({p for parts in partitions_of_user.values() for p in parts}) > 1


def test_raw_payloads_and_send_failure(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, partitions=1, prefix="test-producers")
    with ClickPublisher(kafka_bootstrap, topic) as publisher:
        publisher.publish_raw(b"u1", b"{not json")
        publisher.publish_raw(None, b'{"user_id": 3}')
    assert [r.value for r in read_all(kafka_bootstrap, topic, expect=2)] == [
        b"{not json", b'{"user_id": 3}']

    publisher = ClickPublisher(kafka_bootstrap, topic)
    with pytest.raises(PublishError, match="failed"):
        publisher.publish_raw(b"u1", b"x" * (2 * 1024 * 1024))  # over max_request_size
        publisher.flush(timeout=30)
    with pytest.raises(PublishError):  # later calls keep reporting the loss
        publisher.publish_raw(b"u1", b"{}")
    with pytest.raises(PublishError):
        publisher.close(timeout=5)  # ...and close still releases the connection

"""A transaction whose sends the broker refuses is not committed, on a real broker.

The fault: the user-state topic's ``max.message.bytes`` is lowered below the size of a user
state, so the broker refuses every state ingest writes (MESSAGE_TOO_LARGE), while the dead
letter written to the dead-letter topic in the same transaction is accepted. The runtime
must see the failed sends, count a failed commit with cause ``send_failed``, fail the
session (the transaction aborted, the state dropped and restored), and once the topic is
repaired apply every click exactly once, with the dead letter visible once.
"""

from __future__ import annotations

import time

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from streamrec.metrics.registry import MetricsRegistry
from streamrec.metrics.service import service_metrics
from streamrec.transport.topics import MAX_MESSAGE_BYTES
from streamrec.transport.verified_commit import SEND_FAILED
from support import (applied_events, assert_offsets_applied_once, ingest_service, latest_by_key,
                     produce_raw, read_topic, reference_states, running_service)

pytestmark = pytest.mark.kafka

BAD_EVENT = b"{not json"
# Below every user state, above a transaction marker (~80 bytes): a limit under the markers
# would leave the aborted transaction unable to complete on the broker.
REFUSING_LIMIT = 256


def _set_max_message_bytes(admin, topic: str, limit: int) -> None:  # type: ignore[no-untyped-def]
    # Incremental (the client's default on a broker that has it): the topic's other
    # configs (compaction) stay as they are.
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                        configs={"max.message.bytes": str(limit)})])


def _wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_refused_sends_fail_the_batch_and_every_click_counts_once(kafka_settings, kafka_admin):
    # One poll can hold all of the second phase, so a failing session reaches the bad event.
    settings = kafka_settings.replace(batch_size=2_000)
    events = list(SyntheticStream(n_users=200, n_items=100, n_events=2_000, seed=11).events())
    first, second = events[:1_000], events[1_000:]
    expected = reference_states(settings, events)
    metrics = service_metrics(MetricsRegistry(), "ingest")
    refused = metrics.commit_failures.labels(cause=SEND_FAILED)
    service = ingest_service(settings, "refused-sends", metrics=metrics, send_timeout_s=2.0,
                             backoff_s=0.2)
    failures_when_bad_event_processed: list[float] = []
    process = service.processor.process

    def watching_process(batch):  # type: ignore[no-untyped-def]
        if any(record.value == BAD_EVENT for record in batch):
            failures_when_bad_event_processed.append(refused.value)
        return process(batch)

    service.processor.process = watching_process  # type: ignore[method-assign]

    produce_raw(settings, settings.topics.clicks, ((e.user_id.encode(), encode_click(e)) for e in first))
    with running_service(service):
        read_topic(settings, settings.topics.user_state, idle_s=0.0, timeout_s=60,
                   until=lambda rs: applied_events(rs) >= len(first))
        committed_before = service.batches_committed
        _set_max_message_bytes(kafka_admin, settings.topics.user_state, REFUSING_LIMIT)
        # A bad event rides in the same transactions as the refused user states: its dead
        # letter is accepted by the broker, so only the aborts keep it invisible. It comes
        # last, so it shifts no user's source offset against the reference run.
        produce_raw(settings, settings.topics.clicks,
                    [(e.user_id.encode(), encode_click(e)) for e in second]
                    + [(b"u-bad", BAD_EVENT)])
        _wait_for(lambda: bool(failures_when_bad_event_processed)
                  and refused.value > failures_when_bad_event_processed[0], 60,
                  "a failed commit, cause send_failed, of a batch holding the bad event")
        assert service.batches_committed == committed_before  # nothing counted as committed
        _set_max_message_bytes(kafka_admin, settings.topics.user_state, MAX_MESSAGE_BYTES)
        records = read_topic(settings, settings.topics.user_state, timeout_s=90,
                             until=lambda rs: applied_events(rs) >= len(events))
        dead_letters = read_topic(settings, settings.topics.dlq, expect=1, timeout_s=30)

    assert service.batches_committed > committed_before
    # The dead letter of the failed transactions is visible once: theirs were aborted.
    assert [r.value for r in dead_letters] == [BAD_EVENT]
    assert {r.key.decode(): decode_state(r.value).learned_view()
            for r in latest_by_key(records).values() if r.value is not None} == expected
    assert_offsets_applied_once(records)

"""Walking skeleton on a real broker: clicks -> ingest -> user-state -> score -> recommendations."""

from __future__ import annotations

import pytest

from streamrec.consumers.score import recommendation_decoder
from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, decode_click, encode_click, headers_dict
from support import trigger_ids, ingest_service, latest_by_key, produce_raw, read_topic, running_service, score_service

pytestmark = pytest.mark.kafka


def test_every_active_user_gets_recommendations_that_exclude_seen_items(kafka_settings):
    settings = kafka_settings
    stream = SyntheticStream(n_users=300, n_items=400, n_events=10_000, seed=11)
    events = list(stream.events())
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))

    with running_service(ingest_service(settings)), running_service(score_service(settings)):
        states = read_topic(settings, settings.topics.user_state,
                            until=lambda rs: sum(decode_state(r.value).event_count
                                                 for r in latest_by_key(rs).values()) >= len(events))
        triggers = trigger_ids(states)
        recommendations = read_topic(settings, settings.topics.recommendations, expect=len(triggers))

    assert len(recommendations) == len(triggers), "one recommendation per trigger"
    # What each user had clicked strictly before each of their events, by event id.
    seen_before: dict[str, set[str]] = {}
    clicked: dict[str, set[str]] = {}
    for e in events:
        clicked.setdefault(e.user_id, set())
        seen_before[e.event_id] = set(clicked[e.user_id])
        clicked[e.user_id].add(e.item_id)
    trigger_item = {e.event_id: e.item_id for e in events}

    users_with_recommendation = set()
    short_lists = 0
    for record in recommendations:
        message = recommendation_decoder.decode(record.value)
        assert message.model_version in ("popularity", "online-blend")
        assert record.key == message.user_id.encode()
        assert len(message.items) <= settings.top_k
        # Only the very first triggers may find fewer unseen items than K in the catalogue.
        short_lists += len(message.items) < settings.top_k
        users_with_recommendation.add(message.user_id)
        # Recommended after the trigger: neither the trigger's item nor anything before it.
        already = seen_before[message.trigger_id] | {trigger_item[message.trigger_id]}
        assert not already & {item.item_id for item in message.items}, message
        assert message.score_ms >= 0 and message.end_to_end_ms is not None
    assert users_with_recommendation == set(clicked)
    assert short_lists < 0.01 * len(recommendations)


def test_malformed_events_go_to_the_dead_letter_topic_and_counts_add_up(kafka_settings):
    settings = kafka_settings
    stream = SyntheticStream(n_users=100, n_items=200, n_events=4_000, seed=5, malformed_rate=0.05)
    payloads = list(stream.raw_payloads())
    valid = [(k, v) for k, v, ok in payloads if ok]
    malformed = [(k, v) for k, v, ok in payloads if not ok]
    assert 0.04 < len(malformed) / len(payloads) < 0.06
    produce_raw(settings, settings.topics.clicks, ((k, v) for k, v, _ in payloads))

    with running_service(ingest_service(settings)) as service:
        dead = read_topic(settings, settings.topics.dlq, expect=len(malformed))
        states = read_topic(settings, settings.topics.user_state,
                            until=lambda rs: sum(decode_state(r.value).event_count
                                                 for r in latest_by_key(rs).values()) >= len(valid))
        processor = service.processor

    assert sorted(r.value for r in dead) == sorted(v for _, v in malformed)
    for record in dead:
        headers = headers_dict(record.headers)
        assert headers[DLQ_REASON] in {"bad_json", "schema", "oversized", "empty"}
        assert int(headers[DLQ_PARTITION]) >= 0 and int(headers[DLQ_OFFSET]) >= 0
    final = {r.key: decode_state(r.value) for r in latest_by_key(states).values()}
    assert sum(s.event_count for s in final.values()) == len(valid)
    assert sum(processor.rejected_by_reason.values()) == len(malformed)  # type: ignore[attr-defined]
    valid_by_user: dict[str, int] = {}
    for _, value in valid:
        event = decode_click(value)
        valid_by_user[event.user_id] = valid_by_user.get(event.user_id, 0) + 1
    assert {s.user_id: s.event_count for s in final.values()} == valid_by_user
